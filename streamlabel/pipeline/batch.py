"""A batch's way in: decode and validate records, embed their texts, dead-letter the rest.

Nothing here touches the store: a stream worker runs these on its own while
the model works on another thread. Every input that cannot be used becomes a
:class:`~streamlabel.schemas.DeadLetter` carrying its source offset and the reason.
A message may be in either wire format; on the items topic it may also be a
foreign record, read through the field mapping (:mod:`streamlabel.schemas.mapping`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from streamlabel.core.embedder import Embedder, l2_normalize
from streamlabel.errors import DecodeError, EmbeddingError, ModelUnavailableError
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import DeadLetter, Feedback, Item, SourceRef, UnknownRecord, decode, encode
from streamlabel.schemas.commands import Command
from streamlabel.schemas.mapping import DEFAULT_MAPPING, ItemMapping, decode_item
from streamlabel.settings.engine import LimitSettings

__all__ = [
    "Decoded",
    "EmbeddedTexts",
    "PreparedBatch",
    "assemble",
    "dead_letter",
    "decode_feedback",
    "decode_items",
    "decode_unknowns",
    "embed_texts",
    "too_long",
    "wrong_dim",
]

R = TypeVar("R", Item, Feedback, UnknownRecord, Command)

MODEL_FAILED = "the model failed on this text (it raised, or returned a non-finite vector)"


@dataclass(frozen=True)
class Decoded:
    """A valid item with where it came from."""

    item: Item
    source: SourceRef | None
    raw: RawRecord | None = None  # the consumed message, for a dead letter


@dataclass(frozen=True)
class PreparedBatch:
    """A decoded batch waiting for its embeddings (:meth:`Labeler.prepare`).

    Attributes:
        texts: the texts the model must embed (items that carry a vector skip it).
        out: the batch's output so far (dead letters of undecodable records).
        decode_s: seconds spent decoding.
    """

    decoded: list[Decoded]
    texts: list[str]
    out: EngineOutput
    decode_s: float

    @classmethod
    def of(
        cls,
        batch: Sequence[RawRecord | Item],
        limits: LimitSettings,
        dim: int,
        mapping: ItemMapping = DEFAULT_MAPPING,
    ) -> PreparedBatch:
        """Decodes and validates ``batch`` for a model of dimension ``dim``; a foreign
        record becomes an item through ``mapping``."""
        out = EngineOutput()
        t0 = time.perf_counter()
        decoded = decode_items(batch, limits, dim, out, mapping)
        texts = [d.item.text or "" for d in decoded if d.item.vector is None]
        return cls(decoded, texts, out, time.perf_counter() - t0)


@dataclass(frozen=True)
class EmbeddedTexts:
    """The model's output for a prepared batch (:meth:`Labeler.embed`): one unit
    vector per text, None where the model failed on the text."""

    vectors: list[np.ndarray | None]
    seconds: float


def decode_items(
    batch: Sequence[RawRecord | Item],
    limits: LimitSettings,
    dim: int,
    out: EngineOutput,
    mapping: ItemMapping = DEFAULT_MAPPING,
) -> list[Decoded]:
    """The valid items of a batch; the others become dead letters in ``out``.

    A message is an item envelope or a foreign record, made an item by ``mapping``.
    """
    decoded: list[Decoded] = []
    for entry in batch:
        raw: RawRecord | None = None
        if isinstance(entry, RawRecord):
            raw = entry
            try:
                item = decode_item(
                    entry.value, mapping, source=entry.source, max_bytes=limits.max_message_bytes
                )
            except DecodeError as exc:
                _undecodable(entry, exc, out)
                continue
        else:
            item = entry
        key = item.id.encode()  # a dead letter's key when the item did not come from Kafka
        if item.text is not None and len(item.text) > limits.max_text_chars:
            dead_letter(out, raw, item, "oversized", too_long(item.text, limits), key=key)
            continue
        if item.vector is not None and len(item.vector) != dim:
            dead_letter(out, raw, item, "bad_vector", wrong_dim(len(item.vector), dim), key=key)
            continue
        decoded.append(Decoded(item, raw.source if raw else None, raw))
    return decoded


def assemble(
    decoded: list[Decoded], embedded: Sequence[np.ndarray | None], dim: int, out: EngineOutput
) -> tuple[np.ndarray, list[Decoded]]:
    """One matrix of unit vectors: the items' own vectors and the model's, in batch
    order; a text the model failed on becomes a dead letter and leaves the batch."""
    vectors = np.zeros((len(decoded), dim), np.float32)
    need = [i for i, d in enumerate(decoded) if d.item.vector is None]
    have = [i for i, d in enumerate(decoded) if d.item.vector is not None]
    if have:
        vectors[have] = l2_normalize(np.asarray([decoded[i].item.vector for i in have], np.float32))
    ok = np.ones(len(decoded), bool)
    for i, vec in zip(need, embedded, strict=True):
        if vec is None:
            ok[i] = False
            d = decoded[i]
            dead_letter(out, d.raw, d.item, "embedding", MODEL_FAILED, key=d.item.id.encode())
        else:
            vectors[i] = vec
    if ok.all():
        return vectors, decoded
    return vectors[ok], [d for d, keep in zip(decoded, ok, strict=True) if keep]


PROBE_TEXT = "how do I sort a list"
"""A text every working model embeds: when inputs fail, the model is tried on it."""


def embed_texts(embedder: Embedder, texts: list[str]) -> list[np.ndarray | None]:
    """Embeds texts; None for a text the model raises on or returns a non-finite vector for.

    The texts at fault are isolated by bisection. When some fail, the model is
    tried on :data:`PROBE_TEXT`: if it fails there too, the model is broken,
    not the inputs.

    Raises:
        ModelUnavailableError: the model also fails on the probe text (nothing
            may be dead-lettered for it).
    """
    vectors = _bisect(embedder, texts)
    if any(v is None for v in vectors) and _bisect(embedder, [PROBE_TEXT])[0] is None:
        failed = sum(v is None for v in vectors)
        raise ModelUnavailableError(
            f"the model failed on {failed} of {len(texts)} texts and on a known-good probe text"
        )
    return vectors


def _bisect(embedder: Embedder, texts: list[str]) -> list[np.ndarray | None]:
    try:
        vectors = list(embedder.embed(texts))
    except EmbeddingError:
        if len(texts) == 1:
            return [None]
        mid = len(texts) // 2
        return _bisect(embedder, texts[:mid]) + _bisect(embedder, texts[mid:])
    return [v if np.isfinite(v).all() else None for v in vectors]


def too_long(text: str, limits: LimitSettings) -> str:
    """Why a text is over ``limits.max_text_chars``."""
    return f"text has {len(text)} characters, limit {limits.max_text_chars}"


def decode_feedback(
    entry: Feedback | RawRecord, limits: LimitSettings, out: EngineOutput
) -> tuple[Feedback | None, RawRecord | None]:
    """A feedback record and its raw message (None, raw when it does not decode)."""
    if isinstance(entry, Feedback):
        return entry, None
    return decode_raw(entry, Feedback, limits, out), entry


def decode_unknowns(
    entries: Sequence[RawRecord], limits: LimitSettings, dim: int, out: EngineOutput
) -> list[UnknownRecord]:
    """The unknown records a stream worker reported, for a model of dimension ``dim``;
    undecodable ones and vectors of another dimension become dead letters.

    An unknown carries its embedding, so it may be larger than an input record.
    """
    max_bytes = limits.max_message_bytes * 4
    unknowns = []
    for entry in entries:
        u = decode_raw(entry, UnknownRecord, limits, out, max_bytes=max_bytes)
        if u is None:
            continue
        if len(u.vector) != dim:
            dead_letter(out, entry, u, "bad_vector", wrong_dim(len(u.vector), dim))
            continue
        unknowns.append(u)
    return unknowns


def wrong_dim(got: int, dim: int) -> str:
    """Why a vector does not fit a model of dimension ``dim``."""
    return f"vector has {got} dimensions, the model {dim}"


def decode_raw(
    entry: RawRecord,
    record_type: type[R],
    limits: LimitSettings,
    out: EngineOutput,
    *,
    max_bytes: int | None = None,
) -> R | None:
    """Decodes a raw message; an undecodable one becomes a dead letter (None returned)."""
    try:
        return decode(entry.value, record_type, max_bytes=max_bytes or limits.max_message_bytes)
    except DecodeError as exc:
        _undecodable(entry, exc, out)
        return None


def _undecodable(entry: RawRecord, exc: DecodeError, out: EngineOutput) -> None:
    """Dead-letters a message that does not decode: its bytes, key and offset, the reason."""
    out.dead_letters.append(
        DeadLetter(
            source=entry.source,
            key=entry.key,
            value=entry.value or b"",
            reason=exc.reason,
            error=str(exc),
        )
    )


def dead_letter(
    out: EngineOutput,
    raw: RawRecord | None,
    record: Item | Feedback | UnknownRecord,
    reason: str,
    error: str,
    *,
    key: bytes | None = None,
) -> None:
    """Dead-letters a record: the consumed message's bytes, key and offset when it came
    from the stream, else its own encoding under ``key``."""
    out.dead_letters.append(
        DeadLetter(
            source=raw.source if raw else None,
            key=raw.key if raw else key,
            value=raw.value if raw and raw.value else encode(record),
            reason=reason,
            error=error,
        )
    )
