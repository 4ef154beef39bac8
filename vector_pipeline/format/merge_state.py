"""The merge state as a log of immutable parts, read by replay.

Invariant: a version's merge state is the replay, in order, of the state parts its manifest
lists (``state_parts``; a version written before parts existed has one, ``state.json.gz``).
A part is never modified once written, and a version reuses its parent's parts by reference,
as it reuses segments. A part holds only what one compaction decided — the winning delta of
each id its deltas touched, where the live ones now are, the deltas it applied — so what a
compaction writes follows its deltas, not the snapshot. A fold consolidates: FOLD_ALL (and a
collection's first version) writes one whole part; FOLD_RECENT, or a log grown past
``MAX_STATE_PARTS``, rewrites the parts after the first into one, whose size the fold policy
bounds (it holds what changed since the base segment was written).

Replayed states are cached in-process, keyed by (bucket, collection, the parts' sha256s):
equal keys, equal states (the newest per collection, so memory follows one state each). A cached state is never mutated — a merge works on ``copy()`` — and
a merge's result enters the cache only once its version is published.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from .manifest import FileEntry
from .version_manifest import VersionManifest

STATE_FILE = "state.json.gz"  # the one whole state of a version written before parts existed
STATE_PARTS_DIR = "state"
MAX_STATE_PARTS = 12  # past this, an append consolidates the parts after the first
_CACHED_COLLECTIONS = 8


@dataclass
class MergeState:
    """Who won each id: the ``delta_id`` of its last upsert or delete, and applied deltas.

    Kept with every version so a delta that arrives after a later one was applied still
    obeys last-writer-wins per id, and a re-delivered delta is recognised as applied. The
    same shape is a part of the log: the entries one compaction set (``apply``).
    """

    applied_delta_ids: set[str] = field(default_factory=set)
    upsert_winner: dict[str, str] = field(default_factory=dict)
    delete_winner: dict[str, str] = field(default_factory=dict)
    # The segment holding each live id (format/segments.py): where an update or delete must mask it.
    location: dict[str, str] = field(default_factory=dict)

    def winner(self, record_id: str) -> str:
        return max(self.upsert_winner.get(record_id, ""), self.delete_winner.get(record_id, ""))

    def copy(self) -> "MergeState":
        return MergeState(set(self.applied_delta_ids), dict(self.upsert_winner), dict(self.delete_winner),
                          dict(self.location))

    def apply(self, part: "MergeState") -> "MergeState":
        """Replay one later part onto this state (or compose two parts): an upsert winner
        replaces a delete winner, a delete winner an upsert winner and the id's location."""
        if not (self.applied_delta_ids or self.upsert_winner or self.delete_winner or self.location):
            self.applied_delta_ids, self.upsert_winner = set(part.applied_delta_ids), dict(part.upsert_winner)
            self.delete_winner, self.location = dict(part.delete_winner), dict(part.location)
            return self
        self.applied_delta_ids |= part.applied_delta_ids
        for record_id, delta_id in part.upsert_winner.items():
            self.upsert_winner[record_id] = delta_id
            self.delete_winner.pop(record_id, None)
        for record_id, delta_id in part.delete_winner.items():
            self.delete_winner[record_id] = delta_id
            self.upsert_winner.pop(record_id, None)
            self.location.pop(record_id, None)
        self.location.update(part.location)
        return self

    def to_bytes(self) -> bytes:
        deltas = sorted(self.applied_delta_ids | set(self.upsert_winner.values())
                        | set(self.delete_winner.values()))
        index = {delta_id: position for position, delta_id in enumerate(deltas)}
        segments = sorted(set(self.location.values()))
        segment_index = {name: position for position, name in enumerate(segments)}
        document = {
            "deltas": deltas,
            "applied": sorted(index[d] for d in self.applied_delta_ids),
            "upserts": {i: index[d] for i, d in self.upsert_winner.items()},
            "deletes": {i: index[d] for i, d in self.delete_winner.items()},
            "segments": segments,
            "located": {i: segment_index[name] for i, name in self.location.items()},
        }
        return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=5)

    @classmethod
    def from_bytes(cls, body: bytes) -> "MergeState":
        document = json.loads(gzip.decompress(body))
        deltas = document["deltas"]
        return cls(
            applied_delta_ids={deltas[i] for i in document["applied"]},
            upsert_winner={i: deltas[d] for i, d in document["upserts"].items()},
            delete_winner={i: deltas[d] for i, d in document["deletes"].items()},
            location={i: document["segments"][s] for i, s in document.get("located", {}).items()},
        )


def part_path(version: str) -> str:
    """Where the version's own part lives inside it (named for its version number)."""
    return f"{STATE_PARTS_DIR}/{version.split('-', 1)[0]}.json.gz"


def state_part_paths(manifest: VersionManifest | None) -> list[str]:
    """The paths of the version's state parts, in replay order."""
    if manifest is None:
        return []
    if manifest.state_parts is not None:
        return list(manifest.state_parts)
    return [STATE_FILE] if manifest.has_file(STATE_FILE) else []


def state_part_entries(manifest: VersionManifest | None) -> list[FileEntry]:
    """The file entries (path, size, sha256, key) of the version's state parts, in order."""
    if manifest is None:
        return []
    by_path = {e.path: e for e in manifest.files}
    try:
        return [by_path[p] for p in state_part_paths(manifest)]
    except KeyError as exc:
        raise ValueError(f"version {manifest.version}: state part {exc} is not among its files") from None


def change_of(state: MergeState, applied: Iterable[str], touched: Iterable[str],
              relocated: Iterable[str] = ()) -> MergeState:
    """The part one merge writes: ``state`` (after the merge) restricted to the ids it
    touched or moved, and the deltas it applied."""
    part = MergeState(applied_delta_ids=set(applied))
    for record_id in touched:
        if record_id in state.upsert_winner:
            part.upsert_winner[record_id] = state.upsert_winner[record_id]
        elif record_id in state.delete_winner:
            part.delete_winner[record_id] = state.delete_winner[record_id]
    for record_id in [*touched, *relocated]:
        if record_id in state.location:
            part.location[record_id] = state.location[record_id]
    return part


def next_log(base_parts: Sequence[str], own: str, state: MergeState, change: MergeState, fold_all: bool,
             fold_recent: bool, read_part: Callable[[str], bytes]) -> tuple[list[str], bytes]:
    """The new version's parts (paths, in order) and the bytes of its own part ``own``: the
    whole state after a fold of everything (or for a first version); after a fold of the
    recent tier, or past ``MAX_STATE_PARTS``, the parts after the first consolidated with
    ``change`` (read by ``read_part(path)``); otherwise the base's parts and ``change``."""
    if not base_parts or fold_all:
        return [own], state.to_bytes()
    if fold_recent or len(base_parts) + 1 > MAX_STATE_PARTS:
        consolidated = MergeState()
        for path in base_parts[1:]:
            consolidated.apply(MergeState.from_bytes(read_part(path)))
        return [base_parts[0], own], consolidated.apply(change).to_bytes()
    return [*base_parts, own], change.to_bytes()


def replay(parts: Sequence[bytes]) -> MergeState:
    state = MergeState()
    for body in parts:
        state.apply(MergeState.from_bytes(body))
    return state


class _StateCache:
    """Replayed states by (bucket, collection, part sha256s): the newest one per collection
    (a state is as large as the collection's id set), for the last few collections used."""

    def __init__(self, collections: int) -> None:
        self.collections = collections
        self._states: OrderedDict[tuple[str, str], tuple[tuple[str, ...], MergeState]] = OrderedDict()
        self._lock = threading.Lock()
        self.replays = 0  # states built by replay (for tests and the benchmark)

    def get(self, key: tuple[str, ...]) -> MergeState | None:
        with self._lock:
            held = self._states.get((key[0], key[1]))
            if held is None or held[0] != key:
                return None
            self._states.move_to_end((key[0], key[1]))
            return held[1]

    def put(self, key: tuple[str, ...], state: MergeState) -> None:
        with self._lock:
            self._states[(key[0], key[1])] = (key, state)
            self._states.move_to_end((key[0], key[1]))
            while len(self._states) > self.collections:
                self._states.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


STATE_CACHE = _StateCache(_CACHED_COLLECTIONS)


def state_key(bucket: str, collection: str, manifest: VersionManifest | None) -> tuple[str, ...]:
    return (bucket, collection, *(e.sha256 for e in state_part_entries(manifest)))


def load_state(bucket: str, collection: str, manifest: VersionManifest | None,
               read_part: Callable[[FileEntry], bytes]) -> MergeState:
    """The version's merge state, shared and read-only (``copy()`` it to merge into):
    from the cache, or replayed from its parts (each read by ``read_part(entry)``)."""
    key = state_key(bucket, collection, manifest)
    cached = STATE_CACHE.get(key)
    if cached is not None:
        return cached
    state = replay([read_part(entry) for entry in state_part_entries(manifest)])
    STATE_CACHE.replays += 1
    STATE_CACHE.put(key, state)
    return state


def remember_state(bucket: str, collection: str, manifest: VersionManifest, state: MergeState) -> None:
    """A published version's state, as its merge left it (the caller no longer mutates it)."""
    STATE_CACHE.put(state_key(bucket, collection, manifest), state)
