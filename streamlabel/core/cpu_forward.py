"""The forward passes the embedder runs itself on CPU: packed chunks and the
lean BERT encoder.

sentence-transformers' own call pads every text of a batch to its longest and
runs the model's full ``transformers`` forward. On CPU, where each padded
token and each Python layer costs the one thread a worker has,
:class:`CpuForward` runs

* a :class:`~streamlabel.core.tokens.Packed` chunk as one unpadded sequence
  (texts end to end, their own position ids), pooled per text: through
  ``transformers`` with a block-diagonal attention mask, or with
  :class:`~streamlabel.core.lean_bert.LeanBert` (a BERT encoder) ragged, with
  no mask at all (:meth:`~streamlabel.core.lean_bert.LeanBert.ragged`);
* with a ``LeanBert``, padded chunks too through the model's weights as plain
  torch ops.

Both apply to models with mean or CLS pooling (:func:`packable_pooling`); the
embedder checks each against the model's own forward at load and drops what
disagrees.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamlabel.core.lean_bert import LeanBert, lean_bert
from streamlabel.core.tokens import Packed, Padded

__all__ = ["CpuForward", "as_tensor", "packable_pooling"]


def as_tensor(a: np.ndarray) -> Any:
    """``a`` as a torch tensor: shared when writable, copied when not (arrays from
    Ray's object store are read-only, and torch needs its own)."""
    import torch

    return torch.from_numpy(a) if a.flags.writeable else torch.tensor(a)


class CpuForward:
    """Packed and lean forward passes of one loaded sentence-transformers model.

    Args:
        model: the ``SentenceTransformer`` (see :func:`packable_pooling`).
        pooling: ``mean`` or ``cls``.
        lean: build a :class:`LeanBert` when the model is a BERT encoder.
    """

    def __init__(self, model: Any, pooling: str, *, lean: bool) -> None:
        self._transformer = model[0].auto_model
        self._pooling = pooling
        self.lean: LeanBert | None = lean_bert(self._transformer) if lean else None

    def hidden(self, ids: Any, positions: Any, mask: Any) -> Any:
        """Last hidden states (float32) of ``ids`` (batch x tokens); ``mask`` as
        :meth:`LeanBert.__call__` takes it."""
        import torch

        if self.lean is not None:
            return self.lean(ids, positions, mask).float()
        return self._transformer(
            input_ids=ids, position_ids=positions, attention_mask=mask,
            token_type_ids=torch.zeros_like(ids),
        ).last_hidden_state.float()  # fmt: skip

    def packed(self, chunk: Packed) -> Any:
        """One packed chunk, pooled per text (float32 rows, not normalised)."""
        import torch

        ids = as_tensor(chunk.ids)
        positions = torch.from_numpy(chunk.positions())
        seg = torch.from_numpy(chunk.segments())
        if self.lean is not None:  # no mask: attention per run of equal lengths
            hidden = self.lean.ragged(ids, positions, chunk.lengths.tolist()).float()
        else:
            mask = (seg[:, None] == seg[None, :])[None, None]  # each text attends to itself
            hidden = self.hidden(ids[None], positions[None], mask)[0]
        if self._pooling == "cls":
            starts = np.cumsum(chunk.lengths) - chunk.lengths
            return hidden[torch.from_numpy(starts)]
        sums = torch.zeros(chunk.rows, hidden.shape[1]).index_add_(0, seg, hidden)
        return sums / torch.from_numpy(chunk.lengths).to(sums.dtype)[:, None]

    def padded(self, chunk: Padded) -> Any:
        """One padded chunk, pooled per text (float32 rows, not normalised)."""
        import torch

        ids, keep = as_tensor(chunk.ids), as_tensor(chunk.mask)
        positions = torch.arange(ids.shape[1])[None].expand_as(ids)
        hidden = self.hidden(ids, positions, keep.bool()[:, None, None, :])
        if self._pooling == "cls":
            return hidden[:, 0]
        weights = keep[..., None].to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1)


def packable_pooling(model: Any) -> str | None:
    """``mean`` or ``cls`` when a sentence-transformers model can run packed chunks
    (a Transformer with absolute positions, that pooling, an optional Normalize), else None."""
    modules = list(model)
    if len(modules) not in (2, 3) or not hasattr(modules[0], "auto_model"):
        return None
    if len(modules) == 3 and type(modules[2]).__name__ != "Normalize":
        return None
    config = getattr(modules[0].auto_model, "config", None)
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None
    get = getattr(modules[1], "get_config_dict", None)
    mode = get().get("pooling_mode") if callable(get) else None
    return mode if mode in ("mean", "cls") else None
