"""The Lambda functions' events, parsed into typed requests before anything runs.

Invariant: a handler acts only on an event that parsed completely; a missing field, a
wrong type or an unknown collection raises ``ValueError`` whose message names the field
(``items[3].embedding``), before any object is written.

The events are pydantic models read by Powertools' parser (``parse``); SQS events use
Powertools' own ``SqsModel``. Types are strict (``"5"`` is no ``n_results``, ``true`` no
number), and a ``ValidationError`` is turned into one ``ValueError`` naming every field.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping, TypeVar

from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import SqsModel, SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from ..config import Settings
from ..format.keys import check_collection_name

Vector = Annotated[list[StrictFloat | StrictInt], Field(min_length=1)]
Model = TypeVar("Model", bound=BaseModel)


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ProduceItem(_Event):
    id: StrictStr
    embedding: Vector | None = None
    text: StrictStr | None = None
    document: StrictStr | None = None
    metadata: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _embedding_or_text(self) -> "ProduceItem":
        if (self.embedding is None) == (self.text is None):
            raise ValueError("'embedding' or 'text' is needed (exactly one)")
        return self


class ProduceEvent(_Event):
    collection: StrictStr
    items: list[ProduceItem]
    delete_ids: list[StrictStr] = []

    @model_validator(mode="after")
    def _something_to_do(self) -> "ProduceEvent":
        if not self.items and not self.delete_ids:
            raise ValueError("'items' is empty and there are no 'delete_ids'")
        if any(i.embedding is not None for i in self.items) and any(i.text is not None for i in self.items):
            raise ValueError("'items': all items carry 'embedding', or all carry 'text'")
        return self

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def embeddings(self) -> list[list[float]] | None:
        """The vectors given, or None when the items carry text to embed."""
        if any(item.text is not None for item in self.items):
            return None
        return [[float(x) for x in item.embedding or []] for item in self.items]

    @property
    def texts(self) -> list[str] | None:
        texts = [item.text for item in self.items if item.text is not None]
        return texts or None

    @property
    def documents(self) -> list[str | None] | None:
        documents = [item.document for item in self.items]
        return documents if any(d is not None for d in documents) else None

    @property
    def metadatas(self) -> list[dict[str, Any] | None] | None:
        metadatas = [item.metadata for item in self.items]
        return metadatas if any(m is not None for m in metadatas) else None


class QueryEvent(_Event):
    collection: StrictStr
    query_text: StrictStr | None = None
    query_embedding: Vector | None = None
    n_results: Annotated[StrictInt, Field(ge=1, le=1000)] = 10
    where: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _text_or_embedding(self) -> "QueryEvent":
        if (self.query_text is None) == (self.query_embedding is None):
            raise ValueError("'query_text' or 'query_embedding' is needed (exactly one)")
        return self


def parse_produce_event(event: Any, settings: Settings) -> ProduceEvent:
    return _checked_collection(_parse(event, ProduceEvent), settings)


def parse_query_event(event: Any, settings: Settings) -> QueryEvent:
    return _checked_collection(_parse(event, QueryEvent), settings)


def sqs_records(event: Any) -> list[SqsRecordModel]:
    """The records of an SQS event, each a whole SQS record (``messageId``, ``receiptHandle``,
    ``body``, attributes ...)."""
    return _parse(event, SqsModel).Records


def _parse(event: Any, model: type[Model]) -> Model:
    if not isinstance(event, Mapping):
        raise ValueError(f"event must be a JSON object, not {type(event).__name__}")
    try:
        return parse(event=dict(event), model=model)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():  # a union reports each branch: the first one per field says it
            location, problem = _problem(error)
            problems.setdefault(location, problem)
        raise ValueError("; ".join(problems.values())) from None


_TYPE_TAGS = {"float", "int", "str", "bool", "dict", "list"}  # pydantic's names of union branches


def _problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """One pydantic error as (``items[0].embedding``, ``event field 'items[0].embedding' ...``)."""
    location = ""
    for part in error.get("loc", ()):
        if isinstance(part, int):
            location += f"[{part}]"
        elif str(part) not in _TYPE_TAGS and not str(part).startswith(("function-", "list[", "constrained-")):
            location += ("." if location else "") + str(part)
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        return location, f"event field '{location}' is missing"
    return location, f"event field '{location}': {message}" if location else f"event: {message}"


def _checked_collection(request: Model, settings: Settings) -> Model:
    """A valid collection name, in the VECTOR_COLLECTIONS allow-list when there is one."""
    collection = getattr(request, "collection")
    try:
        check_collection_name(collection)
    except ValueError as exc:
        raise ValueError(f"event field 'collection': {exc}") from None
    if settings.collections and collection not in settings.collections:
        raise ValueError(f"event field 'collection': unknown collection {collection!r} "
                         f"(VECTOR_COLLECTIONS: {', '.join(settings.collections)})")
    return request
