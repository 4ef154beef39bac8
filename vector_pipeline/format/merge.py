"""The last-writer-wins merge, as pure functions of the deltas and the merge state.

Invariant: for every id the delta with the greatest ``delta_id`` wins, whatever order the
deltas arrive in (a late delta cannot overwrite a newer one); inside one delta a delete
wins over its own upsert; a delta the state lists as applied changes nothing. Nothing here
does I/O: the version writer applies what these functions decide, and checks the count
they predict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .loaded_delta import LoadedDelta
from .segments import FoldPlan, Segment
from .merge_state import MergeState


@dataclass
class NetEffect:
    """What a batch of deltas changes: the winning row of each upserted id, and deleted ids."""

    upserts: dict[str, tuple[LoadedDelta, int]] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)

    @property
    def touched(self) -> list[str]:
        return [*self.upserts, *self.deletes]


def net_effect(deltas: list[LoadedDelta], state: MergeState) -> NetEffect:
    """Upserts and deletes of ``deltas`` (ascending ``delta_id``) that beat what ``state``
    holds; the winners are recorded in ``state``."""
    effect = NetEffect()
    upserts, deletes = effect.upserts, effect.deletes
    for delta in deltas:  # later deltas overwrite earlier ones
        dropped = set(delta.delete_ids)
        for position, record_id in enumerate(delta.ids):
            if record_id in dropped or state.winner(record_id) > delta.ref.delta_id:
                continue
            upserts[record_id] = (delta, position)
            deletes.discard(record_id)
            state.upsert_winner[record_id] = delta.ref.delta_id
            state.delete_winner.pop(record_id, None)
        for record_id in delta.delete_ids:
            if state.winner(record_id) > delta.ref.delta_id:
                continue
            upserts.pop(record_id, None)
            deletes.add(record_id)
            state.delete_winner[record_id] = delta.ref.delta_id
            state.upsert_winner.pop(record_id, None)
    return effect


def expected_vector_count(base_count: int, effect: NetEffect, state: MergeState) -> int:
    """The live count after ``effect``: new ids add, deleted live ids subtract."""
    return (base_count + sum(1 for i in effect.upserts if i not in state.location)
            - sum(1 for i in effect.deletes if i in state.location))


def doomed_in_copied_segment(plan: FoldPlan, masks: Mapping[str, set[str]], effect: NetEffect,
                             state: MergeState) -> set[str]:
    """Ids to delete from the segment the new one is a copy of: its masked ids and the
    deletes located in it, except ids upserted again (they are overwritten in place)."""
    if plan.copy_from is None:
        return set()
    name = plan.copy_from.name
    return (set(masks.get(name, ())) | {i for i in effect.deletes if state.location.get(i) == name}) - set(effect.upserts)


def live_ids_carried_from(state: MergeState, segment: Segment, effect: NetEffect) -> list[str]:
    """The ids a folded segment still holds live, and that this merge does not replace."""
    return [i for i, where in state.location.items()
            if where == segment.name and i not in effect.upserts and i not in effect.deletes]


def masks_after(plan: FoldPlan, masks: Mapping[str, set[str]], effect: NetEffect,
                state: MergeState) -> dict[str, set[str]]:
    """The masks of the segments kept as they are: an older copy of an id this merge
    replaces or deletes is masked where it stays."""
    kept = {s.name: set(masks.get(s.name, ())) for s in plan.keep}
    for record_id in effect.touched:
        if state.location.get(record_id) in kept:
            kept[state.location[record_id]].add(record_id)
    return kept


def relocate(state: MergeState, plan: FoldPlan, new_segment: Segment | None, effect: NetEffect) -> list[str]:
    """Record where each live id is after the merge; the new segment must hold exactly the
    ids located in it. Returns the ids a fold moved (from the folded segments into the new one)."""
    for record_id in effect.deletes:
        state.location.pop(record_id, None)
    if new_segment is None:
        return []
    folded = plan.folded
    moved = []
    if folded:  # an append folds nothing: no need to walk every live id
        for record_id, where in state.location.items():
            if where in folded:
                state.location[record_id] = new_segment.name
                moved.append(record_id)
    for record_id in effect.upserts:
        state.location[record_id] = new_segment.name
    held = sum(1 for where in state.location.values() if where == new_segment.name)
    if held != new_segment.stored:
        raise RuntimeError(f"segment {new_segment.name} holds {new_segment.stored} records, "
                           f"the merge state places {held} there")
    return moved


def upsert_rows(effect: NetEffect) -> dict[str, list[Any]]:
    """The winning rows as chroma's upsert takes them."""
    ids = list(effect.upserts)
    picks = [effect.upserts[i] for i in ids]
    return {"ids": ids, "embeddings": np.asarray([d.embeddings[p] for d, p in picks], dtype=np.float32),
            "documents": [d.documents[p] for d, p in picks], "metadatas": [d.metadatas[p] for d, p in picks]}
