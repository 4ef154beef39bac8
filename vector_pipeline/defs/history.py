"""Each collection's own history, in its partition's metadata.

Dagster 1.13 plots an asset's numeric metadata two ways (asset Overview → Metadata → Plots,
and the asset sidebar). By partition, the default for a partitioned asset: one point per
collection, its latest materialization's value — collections side by side, never mixed. By
time: every materialization of every collection on one line, whatever its collection. Neither
draws one collection's history, and a partition's own page shows its latest metadata but no
plot. So each materialization of ``snapshot_candidate`` and ``snapshot`` also carries its
collection's recent versions, read from the instance's events of that partition alone:
``history`` (a table, this version first) and ``trend`` (the same figures as sparklines).

A run that wrote no version (nothing pending, or every delta quarantined) records no size
figure at all: the plots show a gap, never a zero, and the history lists versions only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import dagster as dg

HISTORY_ROWS = 10
_SCANNED = 5 * HISTORY_ROWS  # runs that wrote nothing are skipped, so read a few more events
_SPARKS = "▁▂▃▄▅▆▇█"


def collection_history(instance: dg.DagsterInstance, asset_key: str, collection: str, current: dict[str, Any],
                       columns: list[str], wrote: str) -> dict[str, dg.MetadataValue]:
    """``history`` and ``trend`` of ``collection``'s versions: ``current`` (this run's metadata)
    first when its ``wrote`` entry is true, then earlier materializations of the partition whose
    ``wrote`` entry is true; ``columns`` are the metadata entries shown (``version`` first)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset_key), asset_partitions=[collection]), limit=_SCANNED).records
    earlier = [(datetime.fromtimestamp(r.timestamp, timezone.utc), _plain(r.asset_materialization.metadata or {}))
               for r in records if r.asset_materialization is not None]
    now = [(datetime.now(timezone.utc), _plain(current))]
    rows = [(at, values) for at, values in now + earlier if values.get(wrote)][:HISTORY_ROWS]
    if not rows:
        return {}
    table = [dg.TableRecord({"at (UTC)": at.strftime("%Y-%m-%d %H:%M:%S"), **{c: values.get(c) for c in columns}})
             for at, values in rows]
    schema = dg.TableSchema(columns=[dg.TableColumn("at (UTC)", "string"), *[
        dg.TableColumn(c, _column_type([values.get(c) for _at, values in rows])) for c in columns]])
    return {"history": dg.MetadataValue.table(table, schema=schema),
            "trend": dg.MetadataValue.text(trend(columns, [values for _at, values in reversed(rows)]))}


def trend(columns: list[str], oldest_first: list[dict[str, Any]]) -> str:
    """One sparkline per numeric column over the versions, with the first and last value:
    ``vector_count ▁▄█ 3 → 9 · bytes ...``."""
    parts = []
    for column in columns:
        series = [v for v in (row.get(column) for row in oldest_first) if isinstance(v, (int, float))
                  and not isinstance(v, bool)]
        if series:
            parts.append(f"{column} {sparkline(series)} {series[0]:g} → {series[-1]:g}")
    count = len(oldest_first)
    return f"last {count} version{'s' if count > 1 else ''}: " + " · ".join(parts)


def sparkline(values: list[float]) -> str:
    low, high = min(values), max(values)
    if high == low:
        return _SPARKS[len(_SPARKS) // 2] * len(values)
    return "".join(_SPARKS[round((v - low) / (high - low) * (len(_SPARKS) - 1))] for v in values)


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata entries as plain values (a ``MetadataValue`` or a raw value, as given)."""
    return {k: v.value if isinstance(v, dg.MetadataValue) else v for k, v in metadata.items()}


def _column_type(values: list[Any]) -> str:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    return "string"
