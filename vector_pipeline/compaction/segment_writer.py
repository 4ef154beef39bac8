"""The one segment a merge writes: the version writer's only chroma work.

Invariant: the segment written holds exactly the live records the fold plan gives it — a
move of ``plan.copy_from`` (or nothing) minus the ids the merge made dead in it, plus the
live records of ``plan.read_from`` (each folded segment removed once carried), plus the
deltas' upserts — and always its chroma collection, even empty; a folded segment that holds fewer of its
live ids than the merge state places there is refused. The writer checks the count
of the whole version against the merge state's before anything is uploaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

from ..chroma.client import ChromaDBClient
from ..config import HnswSettings, Settings
from ..faults import checkpoint
from ..format import merge
from ..format.merge_state import MergeState
from ..format.segments import SEGMENTS_DIR, FoldPlan, Segment


def write_segment(settings: Settings, collection: str, workdir: Path, plan: FoldPlan, masks: Mapping[str, set[str]],
                  state: MergeState, effect: merge.NetEffect, hnsw: HnswSettings, name: str) -> Segment:
    """The one segment this run writes: a move of ``plan.copy_from`` (or empty), plus the
    live records of ``plan.read_from``, plus the deltas' upserts, minus what is gone."""
    target = workdir / SEGMENTS_DIR / name
    target.parent.mkdir(parents=True, exist_ok=True)
    doomed = merge.doomed_in_copied_segment(plan, masks, effect, state)
    if plan.copy_from is not None:
        (workdir / plan.copy_from.path).rename(target)
    with ChromaDBClient(target, mode="snapshot", settings=settings, hnsw=hnsw) as db:
        if plan.copy_from is not None:  # a copy keeps its old breadth unless told
            db.set_search_ef(collection, hnsw.search_ef)
        if doomed:
            db.delete_vectors(collection, sorted(doomed))
        for source in plan.read_from:
            _carry_live_records(settings, db, collection, workdir / source.path,
                                merge.live_ids_carried_from(state, source, effect))
            shutil.rmtree(workdir / source.path)
        if effect.upserts:
            rows = merge.upsert_rows(effect)
            db.upsert_vectors(collection, rows["ids"], rows["embeddings"], documents=rows["documents"],
                              metadatas=rows["metadatas"])
        else:
            db.ensure_collection(collection)  # a version always holds its collection
        checkpoint(settings, "mid_merge")
        return Segment(name, db.count(collection), tier=plan.tier)


def _carry_live_records(settings: Settings, db: ChromaDBClient, collection: str, source_dir: Path,
                        ids: list[str]) -> None:
    if not ids:
        return
    with ChromaDBClient(source_dir, mode="read", settings=settings) as source:
        records = source.read_records(collection, ids=ids)
    if len(records["ids"]) != len(ids):
        raise RuntimeError(f"segment {source_dir.name} holds {len(records['ids'])} of its {len(ids)} live ids")
    db.upsert_vectors(collection, records["ids"], records["embeddings"],
                      documents=records["documents"], metadatas=records["metadatas"])
