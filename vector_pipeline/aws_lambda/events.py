"""The Lambda functions' events, parsed into typed requests before anything runs.

Invariant: a handler acts only on an event that parsed completely; a missing field, a
wrong type or an unknown collection raises ``ValueError`` whose message names the field
(``items[3].embedding``), before any object is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..config import Settings
from ..format.keys import check_collection_name


@dataclass(frozen=True)
class ProduceRequest:
    collection: str
    ids: list[str]
    embeddings: list[list[float]] | None  # None: embed ``texts``
    texts: list[str] | None
    documents: list[str] | None
    metadatas: list[dict[str, Any] | None] | None
    delete_ids: list[str]


@dataclass(frozen=True)
class QueryRequest:
    collection: str
    query_text: str | None
    query_embedding: list[float] | None
    n_results: int
    where: dict[str, Any] | None


def _field(event: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    label = f"{where}{name}"
    if name not in event or event[name] is None:
        raise ValueError(f"event field '{label}' is missing")
    value = event[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ValueError(f"event field '{label}' has the wrong type (bool)")
    if not isinstance(value, kind):
        raise ValueError(f"event field '{label}' has the wrong type ({type(value).__name__})")
    return value


def _optional(event: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    return None if event.get(name) is None else _field(event, name, kind, where)


def _collection(event: Mapping[str, Any], settings: Settings) -> str:
    """A valid collection name, in the VECTOR_COLLECTIONS allow-list when there is one."""
    collection = _field(event, "collection", str)
    try:
        check_collection_name(collection)
    except ValueError as exc:
        raise ValueError(f"event field 'collection': {exc}") from None
    if settings.collections and collection not in settings.collections:
        raise ValueError(f"event field 'collection': unknown collection {collection!r} "
                         f"(VECTOR_COLLECTIONS: {', '.join(settings.collections)})")
    return collection


def _vector(value: Any, label: str) -> list[float]:
    if not isinstance(value, list) or not value or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise ValueError(f"event field '{label}' must be a non-empty list of numbers")
    return [float(x) for x in value]


def _event_mapping(event: Any) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise ValueError(f"event must be a JSON object, not {type(event).__name__}")
    return event


def parse_produce_event(event: Any, settings: Settings) -> ProduceRequest:
    event = _event_mapping(event)
    collection = _collection(event, settings)
    items = _field(event, "items", list)
    delete_ids = _optional(event, "delete_ids", list) or []
    for position, value in enumerate(delete_ids):
        if not isinstance(value, str):
            raise ValueError(f"event field 'delete_ids[{position}]' must be a string")
    if not items and not delete_ids:
        raise ValueError("event field 'items' is empty and there are no 'delete_ids'")
    ids, embeddings, texts, documents, metadatas = [], [], [], [], []
    for position, item in enumerate(items):
        where = f"items[{position}]."
        if not isinstance(item, Mapping):
            raise ValueError(f"event field 'items[{position}]' must be an object")
        ids.append(_field(item, "id", str, where))
        embedding, text = item.get("embedding"), item.get("text")
        if (embedding is None) == (text is None):
            raise ValueError(f"event field '{where}embedding' or '{where}text' is needed (exactly one)")
        if embedding is not None:
            embeddings.append(_vector(embedding, f"{where}embedding"))
        else:
            texts.append(_field(item, "text", str, where))
        documents.append(_optional(item, "document", str, where))
        metadatas.append(_optional(item, "metadata", dict, where))
    if embeddings and texts:
        raise ValueError("event field 'items': all items carry 'embedding', or all carry 'text'")
    return ProduceRequest(
        collection=collection, ids=ids, embeddings=embeddings if embeddings or not texts else None,
        texts=texts or None,
        documents=documents if any(d is not None for d in documents) else None,
        metadatas=metadatas if any(m is not None for m in metadatas) else None,
        delete_ids=list(delete_ids))


def parse_query_event(event: Any, settings: Settings) -> QueryRequest:
    event = _event_mapping(event)
    collection = _collection(event, settings)
    text = _optional(event, "query_text", str)
    embedding = event.get("query_embedding")
    if (text is None) == (embedding is None):
        raise ValueError("event field 'query_text' or 'query_embedding' is needed (exactly one)")
    n_results = _optional(event, "n_results", int)
    if n_results is not None and not 1 <= n_results <= 1000:
        raise ValueError("event field 'n_results' must be between 1 and 1000")
    return QueryRequest(collection=collection, query_text=text,
                        query_embedding=None if embedding is None else _vector(embedding, "query_embedding"),
                        n_results=n_results or 10, where=_optional(event, "where", dict))


def sqs_records(event: Any) -> list[Mapping[str, Any]]:
    """The records of an SQS event; each must carry ``messageId``, ``receiptHandle``, ``body``."""
    records = _field(_event_mapping(event), "Records", list)
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"event field 'Records[{position}]' must be an object")
        for name in ("messageId", "receiptHandle", "body"):
            _field(record, name, str, f"Records[{position}].")
    return records
