"""A collection's quiet window for base folds: a cron expression for when it opens, and how long.

The expression has cron's five fields, in UTC: ``minute hour day-of-month month day-of-week``
(day-of-week 0–6, Sunday 0; 7 is Sunday too). A field is ``*``, a number, a range ``a-b``,
a list ``a,b,c``, or any of these with a step ``/n`` (``*/15``, ``0-30/10``). As in cron, when
both day fields are restricted a day matching either one matches. The window is open from each
minute the expression matches for ``minutes`` minutes: ``"0 2 * * *"`` with 120 is 02:00–04:00
UTC every day; ``"30 1 * * 6,0"`` with 240 is 01:30–05:30 on weekends. A bad expression is
refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if span == "*":
                start, end = low, high
            elif "-" in span:
                start, end = (int(v) for v in span.split("-", 1))
            else:
                start = end = int(span)
        except ValueError:
            raise ValueError(f"quiet window: {name} field {text!r} is not a cron field (*, n, a-b, a,b, */n)") from None
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"quiet window: {name} field {text!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if name == "day-of-week":
        values = {0 if v == 7 else v for v in values}
    return frozenset(values)


@dataclass(frozen=True)
class QuietWindow:
    expression: str
    minutes: int
    fields: tuple[frozenset[int], ...]
    restricted_days: tuple[bool, bool]  # day-of-month, day-of-week not "*"

    @classmethod
    def parse(cls, expression: str, minutes: int) -> "QuietWindow":
        parts = expression.split()
        if len(parts) != 5:
            raise ValueError(f"quiet window {expression!r}: expected 5 cron fields (minute hour day-of-month "
                             "month day-of-week, UTC)")
        if not 1 <= minutes <= 7 * 24 * 60:
            raise ValueError(f"quiet window of {minutes} minutes: expected 1 to a week")
        fields = tuple(_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS))
        return cls(expression, minutes, fields, (parts[2] != "*", parts[4] != "*"))

    def opens_at(self, moment: datetime) -> bool:
        """Whether the expression matches ``moment``'s minute (UTC)."""
        minute, hour, mday, month, wday = self.fields
        moment = moment.astimezone(timezone.utc)
        day_of_week = (moment.weekday() + 1) % 7  # cron: Sunday 0
        days = [moment.day in mday, day_of_week in wday]
        day_ok = (days[0] or days[1]) if all(self.restricted_days) else (days[0] and days[1])
        return moment.minute in minute and moment.hour in hour and moment.month in month and day_ok

    def opened_at(self, now: datetime) -> datetime | None:
        """When the window open at ``now`` opened (the latest matching minute within the last
        ``minutes``), or None when it is closed."""
        start = now.astimezone(timezone.utc).replace(second=0, microsecond=0)
        return next((start - timedelta(minutes=back) for back in range(self.minutes)
                     if self.opens_at(start - timedelta(minutes=back))), None)

    def contains(self, now: datetime) -> bool:
        return self.opened_at(now) is not None
