"""Delta keys and ids (``format/keys.py``): ULID minting, order and time; collection-name
rules; ``parse_delta_key`` on good and hostile keys; completion markers.

Not covered here: listing or reading deltas from a bucket (``delta/reader.py``, tested
against a server elsewhere)."""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format.keys import (ARCHIVE_PREFIX, DELTA_PREFIX, DeltaRef, InvalidDeltaError,
                                         check_collection_name, delta_id_time, delta_key_for,
                                         is_completion_marker, new_delta_id, parse_delta_key)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_MS = int((datetime(9999, 12, 31, tzinfo=timezone.utc) - EPOCH).total_seconds() * 1000)
millis = st.integers(min_value=0, max_value=MAX_MS)
collection_names = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,20}[a-zA-Z0-9]", fullmatch=True).filter(
    lambda name: ".." not in name)
# A fixed id minted at 1_700_000_000_000 ms: parameter ids must be the same in every collection
# (the suite runs on several workers, which must each collect the same tests).
ID = "01HF7YAT00P6JZ57F8MFCFP8VN"


def test_a_delta_id_is_26_crockford_characters():
    delta_id = new_delta_id()
    assert len(delta_id) == 26
    assert set(delta_id) <= set(CROCKFORD)


def test_ids_minted_in_the_same_millisecond_differ():
    assert len({new_delta_id(now_ms=1_700_000_000_000) for _ in range(200)}) == 200


@settings(max_examples=60, deadline=None)
@given(millis, millis)
def test_sorting_ids_sorts_them_by_creation_time(first, second):
    a, b = new_delta_id(now_ms=first), new_delta_id(now_ms=second)
    if first < second:
        assert a < b
    elif first > second:
        assert a > b


@settings(max_examples=60, deadline=None)
@given(millis)
def test_delta_id_time_is_the_millisecond_it_was_minted_at(ms):
    assert delta_id_time(new_delta_id(now_ms=ms)) == EPOCH + timedelta(milliseconds=ms)


def test_a_new_id_carries_the_current_time():
    before = datetime.now(timezone.utc)
    minted = delta_id_time(new_delta_id())
    after = datetime.now(timezone.utc)
    assert before - timedelta(milliseconds=1) <= minted <= after


@pytest.mark.parametrize("name", ["abc", "a" * 63, "My-Docs_2.0", "0x1", "a.b"])
def test_valid_collection_names_are_accepted(name):
    assert check_collection_name(name) == name


@pytest.mark.parametrize("name", [
    "ab",  # too short
    "a" * 64,  # too long
    "-abc", "abc-", ".abc", "abc.",  # must start and end with a letter or digit
    "a..b",  # no '..'
    "a/b/c", "a b", "abc!", "ümlaut",  # outside the alphabet
    "abc\n",  # a trailing newline must not pass (``$`` would let it)
    "\nabc", "",
    None, 123, b"abc",  # not a str
])
def test_invalid_collection_names_are_refused_with_the_rule(name):
    with pytest.raises(ValueError, match="invalid collection name.*3-63 characters"):
        check_collection_name(name)


def test_a_refs_keys_place_it_under_delta_and_archive():
    ref = DeltaRef("docs", ID)
    assert ref.key == f"delta/docs/{ID}/" == delta_key_for("docs", ID)
    assert ref.archive_key == f"archive/docs/{ID}/"
    assert ref.partition_key == f"docs.{ID}"


@pytest.mark.parametrize("suffix", ["", "/", "/delta.tar", "/manifest.json"])
def test_a_delta_key_parses_with_or_without_its_completion_marker(suffix):
    assert parse_delta_key(f"delta/docs/{ID}{suffix}") == DeltaRef("docs", ID)


def test_an_archive_key_parses_only_when_archive_is_allowed():
    key = delta_key_for("docs", ID, ARCHIVE_PREFIX)
    assert parse_delta_key(key, prefixes=(DELTA_PREFIX, ARCHIVE_PREFIX)) == DeltaRef("docs", ID)
    with pytest.raises(InvalidDeltaError, match="key outside delta/"):
        parse_delta_key(key)


@settings(max_examples=60, deadline=None)
@given(collection_names, millis)
def test_a_refs_key_parses_back_to_the_ref(collection, ms):
    ref = DeltaRef(collection, new_delta_id(now_ms=ms))
    assert parse_delta_key(ref.key) == ref
    assert parse_delta_key(ref.key + "delta.tar") == ref


@pytest.mark.parametrize(("key", "reason"), [
    (f"delta\\docs\\{ID}\\", "not a plain string"),
    (f"delta/docs/{ID}\x00/", "not a plain string"),
    (f"quarantine/docs/{ID}/", "key outside delta/"),
    (f"/delta/docs/{ID}/", "key outside delta/"),
    (f"delta/../docs/{ID}/", "expected <prefix><collection>/<delta_id>/"),
    (f"delta/docs/../{ID}/", "expected <prefix><collection>/<delta_id>/"),
    (f"delta/docs/x/{ID}/", "expected <prefix><collection>/<delta_id>/"),
    ("delta/docs/", "expected <prefix><collection>/<delta_id>/"),
    (f"delta/docs/{ID}/chroma.sqlite3", "expected <prefix><collection>/<delta_id>/"),
    (f"delta/a..b/{ID}/", "invalid collection name"),
    (f"delta/ab/{ID}/", "invalid collection name"),
    (f"delta/docs\n/{ID}/", "invalid collection name"),
    (f"delta/docs/{ID.lower()}/", "is not a ULID"),
    (f"delta/docs/{ID[:-1]}/", "is not a ULID"),
    (f"delta/docs/{ID[:-1]}U/", "is not a ULID"),  # U, I, L, O are not Crockford digits
    (f"delta/docs/{ID}\n/", "is not a ULID"),
    (f"delta/docs/{ID}delta.tar", "is not a ULID"),  # the marker is a path segment, not a tail
])
def test_hostile_keys_are_refused_naming_the_key_and_reason(key, reason):
    with pytest.raises(InvalidDeltaError) as refused:
        parse_delta_key(key)
    assert reason in refused.value.reason
    assert refused.value.delta_key == key


@pytest.mark.parametrize("key", [None, 42, b"delta/docs/x/"])
def test_a_key_that_is_not_a_str_is_refused(key):
    with pytest.raises(InvalidDeltaError, match="not a plain string"):
        parse_delta_key(key)


@settings(max_examples=150, deadline=None)
@given(st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, b: f"delta/{a}/{b}", st.text(string.printable, max_size=12),
              st.sampled_from([ID, ID + "/", ID + "/delta.tar", ID[:25], ID + "\n"])),
))
def test_any_key_either_is_refused_or_names_one_checked_collection_and_ulid(key):
    try:
        ref = parse_delta_key(key)
    except InvalidDeltaError as refused:
        assert refused.delta_key == key
        return
    assert check_collection_name(ref.collection) == ref.collection
    assert "/" not in ref.delta_id and len(ref.delta_id) == 26
    assert parse_delta_key(ref.key) == ref


@pytest.mark.parametrize(("key", "complete"), [
    (f"delta/docs/{ID}/delta.tar", True),
    (f"delta/docs/{ID}/manifest.json", True),
    (f"delta/docs/{ID}/chroma.sqlite3", False),
    (f"delta/docs/{ID}/", False),
    (f"delta/docs/{ID}delta.tar", False),
])
def test_only_a_pack_or_a_format_1_manifest_marks_a_delta_complete(key, complete):
    assert is_completion_marker(key) is complete


def test_invalid_delta_error_prefixes_the_key_to_its_reason():
    error = InvalidDeltaError("bad", "delta/docs/x/")
    assert str(error) == "delta/docs/x/: bad"
    assert str(InvalidDeltaError("bad")) == "bad"
