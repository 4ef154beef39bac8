"""Rebasing a fold onto the versions published while it ran (the pure part): a base fold, or
a tier merge of recent segments.

Invariant: the rebased version holds exactly the live records of the version it rebases onto
(``current``), each held unmasked by exactly one segment (``segments.py``). The fold wrote one
new segment from a fixed version V0: it holds the records V0's segments ``folded`` held live
(all of them for a base fold; the merged tiers for a tier merge). It takes the place of the
first folded segment (the base's, for a base fold). Every other segment of ``current`` stays
as it is, with its masks. An id the current merge state still locates in a folded segment is
live in the new segment; every other id it holds (replaced by a later segment, or deleted,
since V0) is masked there. So no chroma
file is rewritten: the masks and the merge state say it all. The merge state of the rebased
version is the fold's parts (which replay to the fold's state), then one part of what changed
since (``change``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .merge_state import MergeState
from .segments import Segment


@dataclass
class Rebased:
    segments: list[Segment]  # the current segments, the folded ones replaced by the fold's
    masks: dict[str, set[str]]
    state: MergeState  # the rebased version's whole state
    change: MergeState  # its part after the fold's: what changed since the fold's version


def changed_since(before: MergeState, after: MergeState) -> MergeState:
    """The part that replays ``before`` into ``after`` (``before.copy().apply(part) == after``)."""
    part = MergeState(applied_delta_ids=after.applied_delta_ids - before.applied_delta_ids)
    for record_id, delta_id in after.upsert_winner.items():
        if before.upsert_winner.get(record_id) != delta_id:
            part.upsert_winner[record_id] = delta_id
    for record_id, delta_id in after.delete_winner.items():
        if before.delete_winner.get(record_id) != delta_id:
            part.delete_winner[record_id] = delta_id
    for record_id, where in after.location.items():
        if before.location.get(record_id) != where:
            part.location[record_id] = where
    return part


def rebase(fold: Segment, folded: Iterable[str], fold_state: MergeState, current: Sequence[Segment],
           current_masks: Mapping[str, set[str]], current_state: MergeState) -> Rebased:
    """The new segment ``fold`` (written from the version whose segments were ``folded``, with
    merge state ``fold_state``) in the place of the first of them in ``current``."""
    folded = set(folded)
    state = current_state.copy()
    for record_id, where in state.location.items():
        if where in folded:  # still where the folded version held it: live in the new base
            state.location[record_id] = fold.name
    mask = {i for i, where in fold_state.location.items() if where == fold.name and state.location.get(i) != fold.name}
    kept = [s for s in current if s.name not in folded]
    masks = {s.name: set(current_masks.get(s.name, ())) for s in kept}
    masks[fold.name] = mask
    held = sum(1 for where in state.location.values() if where == fold.name)
    if held != fold.stored - len(mask):
        raise RuntimeError(f"rebase: the new segment holds {fold.stored - len(mask)} live records, "
                           f"the merge state places {held} there")
    at = next((i for i, s in enumerate(current) if s.name in folded), 0)  # none before it is folded
    segments = [Segment(s.name, s.stored, len(masks[s.name]), s.tier) for s in kept]
    segments.insert(at, Segment(fold.name, fold.stored, len(mask), fold.tier))
    return Rebased(segments, masks, state, changed_since(fold_state, state))
