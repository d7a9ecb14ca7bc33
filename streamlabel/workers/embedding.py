"""Where the model runs: inside each stream worker, or in one shared embedder actor.

* ``local`` (the CPU default): each worker loads its own copy of the model and
  embeds its own batches. On CPU the model is the bottleneck and its cost is
  per core, so the workers' processes are the parallelism; a Ray hop per batch
  would only add a copy and a serialisation.
* ``actor`` (the GPU default): one :class:`EmbedderActor` owns the GPU and the
  workers send it token ids: each worker tokenizes its own batch on its own
  cores (:class:`~streamlabel.core.embedder.TextTokenizer`, length-bucketed)
  and the actor only copies the integer arrays to the device (pinned memory,
  non-blocking) and runs the model in bf16/fp16. One model per GPU keeps
  memory low and lets several consumer actors feed one device: the actor
  serves several requests at once (``max_concurrency``), so one request's
  host work overlaps another's kernels while each worker decodes and publishes.

``auto`` picks ``actor`` when the Ray cluster reports a GPU, ``local`` otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog

from streamlabel.core.embedder import SentenceTransformerEmbedder, TextTokenizer
from streamlabel.core.tokens import TokenBatch
from streamlabel.errors import EmbeddingError, StreamlabelError
from streamlabel.logging import adopt_library_loggers, configure_logging
from streamlabel.settings.deployment import LoggingSettings
from streamlabel.settings.engine import ModelSettings

log = structlog.get_logger(__name__)

__all__ = [
    "EmbedderActor",
    "RemoteEmbedder",
    "default_threads",
    "load_embedder",
    "resolve_embedder_mode",
    "same_torch_threads",
    "torch_threads",
]


def load_embedder(
    model: ModelSettings, *, threads: int | None = None
) -> SentenceTransformerEmbedder:
    """Loads the configured model in this process (CPU threads capped at ``threads``)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return SentenceTransformerEmbedder(model.path, **model.embedder_options())


def torch_threads() -> int | None:
    """This thread's torch intra-op threads (None where torch is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def same_torch_threads(threads: int | None) -> None:
    """Gives a new thread (the worker's embed thread) the torch thread count of the
    thread that made it (OpenMP's setting is per native thread: a new thread would
    otherwise use every core)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def resolve_embedder_mode(mode: str, cluster_gpus: float) -> str:
    """``auto`` becomes ``actor`` with GPUs in the cluster and ``local`` without.

    Example:
        >>> resolve_embedder_mode("auto", 0.0), resolve_embedder_mode("auto", 8.0)
        ('local', 'actor')
    """
    if mode != "auto":
        return mode
    return "actor" if cluster_gpus > 0 else "local"


def default_threads(workers: int) -> int:
    """Torch threads per local embedder: the machine's cores shared by the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


class EmbedderActor:
    """Owns one model (on the GPU when there is one); run as a Ray actor.

    Args:
        model: model settings.
        logging: the deployment's logging settings (this process logs like the others).
    """

    def __init__(self, model: ModelSettings, logging: LoggingSettings | None = None) -> None:
        if logging is not None:
            configure_logging(json_logs=logging.json_lines, level=logging.level,
                              libraries=logging.libraries)  # fmt: skip
        self._embedder = load_embedder(model)
        adopt_library_loggers()  # loading the model gave torch/transformers handlers of their own

    def info(self) -> tuple[int, str]:
        """The model's dimension and id."""
        return self._embedder.dim, self._embedder.model_id

    def tokenizer(self) -> TextTokenizer:
        """The tokenizer the workers use to feed :meth:`embed_tokens`."""
        return self._embedder.tokenizer()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds a batch (raises :class:`EmbeddingError` on a text the model rejects)."""
        return self._embedder.embed(texts)

    def embed_tokens(self, batch: TokenBatch) -> np.ndarray:
        """Embeds a batch a worker tokenized (raises :class:`EmbeddingError` like embed)."""
        return self._embedder.embed_tokens(batch)

    def memory(self) -> dict[str, int]:
        """This actor's device memory (bytes; empty on CPU)."""
        return self._embedder.memory()


class RemoteEmbedder:
    """The :class:`~streamlabel.core.embedder.Embedder` protocol over an embedder actor.

    Texts are tokenized here, in the calling process, and only token ids go to
    the actor (see the module's notes); with ``tokenize=False`` the texts go.

    Args:
        handle: the Ray actor handle of an :class:`EmbedderActor`.
        timeout_s: how long one batch may take.
        tokenize: tokenize in the caller's process.
    """

    def __init__(self, handle: Any, *, timeout_s: float = 120.0, tokenize: bool = True) -> None:
        import ray

        self._handle = handle
        self._timeout = timeout_s
        self._dim, self._model_id = ray.get(handle.info.remote(), timeout=timeout_s)
        self._tokenizer: TextTokenizer | None = (
            ray.get(handle.tokenizer.remote(), timeout=timeout_s) if tokenize else None
        )

    @property
    def dim(self) -> int:
        return int(self._dim)

    @property
    def model_id(self) -> str:
        return str(self._model_id)

    def _tokenizer_loads(self) -> bool:
        """Whether the tokenizer loads here. The model directory may exist only where
        the actor runs (a path mounted on the GPU pod alone): the texts then go to
        the actor instead, rather than every item failing as if the model had."""
        assert self._tokenizer is not None
        try:
            self._tokenizer.load()
        except EmbeddingError as exc:
            log.warning("tokenizer_unavailable_sending_texts", error=str(exc))
            return False
        return True

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        if self._tokenizer is not None and not self._tokenizer_loads():
            self._tokenizer = None
        if self._tokenizer is not None:
            request = self._handle.embed_tokens.remote(self._tokenizer.tokenize(texts))
        else:
            request = self._handle.embed.remote(list(texts))
        try:
            out = ray.get(request, timeout=self._timeout)
        except RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            if isinstance(cause, EmbeddingError):
                raise EmbeddingError(str(cause)) from exc
            raise StreamlabelError(f"the embedder actor failed: {exc}") from exc
        except (GetTimeoutError, RayActorError) as exc:
            raise StreamlabelError(f"the embedder actor is unavailable: {exc}") from exc
        return np.asarray(out, np.float32)
