"""A batch's way in: decode and validate records, embed their texts, dead-letter the rest.

Nothing here touches the store: a stream worker runs these on its own while
the model works on another thread. Every input that cannot be used becomes a
:class:`~streamlabel.schemas.DeadLetter` carrying its source offset and the reason.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from streamlabel.core.embedder import Embedder, l2_normalize
from streamlabel.errors import DecodeError, EmbeddingError
from streamlabel.pipeline.inputs import RawRecord
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import DeadLetter, Feedback, Item, SourceRef, UnknownRecord, decode, encode
from streamlabel.settings.engine import LimitSettings

__all__ = [
    "Decoded",
    "EmbeddedTexts",
    "PreparedBatch",
    "assemble",
    "dead_feedback",
    "decode_feedback",
    "decode_items",
    "decode_unknowns",
    "embed_texts",
]

R = TypeVar("R", Item, Feedback, UnknownRecord)


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
        cls, batch: Sequence[RawRecord | Item], limits: LimitSettings, dim: int
    ) -> PreparedBatch:
        """Decodes and validates ``batch`` for a model of dimension ``dim``."""
        out = EngineOutput()
        t0 = time.perf_counter()
        decoded = decode_items(batch, limits, dim, out)
        texts = [d.item.text or "" for d in decoded if d.item.vector is None]
        return cls(decoded, texts, out, time.perf_counter() - t0)


@dataclass(frozen=True)
class EmbeddedTexts:
    """The model's output for a prepared batch (:meth:`Labeler.embed`): one unit
    vector per text, None where the model failed on the text."""

    vectors: list[np.ndarray | None]
    seconds: float


def decode_items(
    batch: Sequence[RawRecord | Item], limits: LimitSettings, dim: int, out: EngineOutput
) -> list[Decoded]:
    """The valid items of a batch; the others become dead letters in ``out``."""
    decoded: list[Decoded] = []
    for entry in batch:
        if isinstance(entry, Item):
            item, source = entry, None
        else:
            decoded_item = decode_raw(entry, Item, limits, out)
            if decoded_item is None:
                continue
            item, source = decoded_item, entry.source
        if item.text is not None and len(item.text) > limits.max_text_chars:
            reason = f"text has {len(item.text)} characters, limit {limits.max_text_chars}"
            dead_item(out, item, source, entry, "oversized", reason)
            continue
        if item.vector is not None and len(item.vector) != dim:
            reason = f"vector has {len(item.vector)} dimensions, the model {dim}"
            dead_item(out, item, source, entry, "bad_vector", reason)
            continue
        decoded.append(Decoded(item, source, entry if isinstance(entry, RawRecord) else None))
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
            dead_item(out, d.item, d.source, d.raw, "embedding", "the model failed on this text")
        else:
            vectors[i] = vec
    if ok.all():
        return vectors, decoded
    return vectors[ok], [d for d, keep in zip(decoded, ok, strict=True) if keep]


def embed_texts(embedder: Embedder, texts: list[str]) -> list[np.ndarray | None]:
    """Embeds texts; on failure bisects to isolate the texts the model raises on (None)."""
    try:
        return list(embedder.embed(texts))
    except EmbeddingError:
        if len(texts) == 1:
            return [None]
        mid = len(texts) // 2
        return embed_texts(embedder, texts[:mid]) + embed_texts(embedder, texts[mid:])


def decode_feedback(
    entry: Feedback | RawRecord, limits: LimitSettings, out: EngineOutput
) -> tuple[Feedback | None, RawRecord | None]:
    """A feedback record and its raw message (None, raw when it does not decode)."""
    if isinstance(entry, Feedback):
        return entry, None
    return decode_raw(entry, Feedback, limits, out), entry


def decode_unknowns(
    entries: Sequence[RawRecord], limits: LimitSettings, out: EngineOutput
) -> list[UnknownRecord]:
    """The unknown records a stream worker reported; undecodable ones become dead letters.

    An unknown carries its embedding, so it may be larger than an input record.
    """
    max_bytes = limits.max_message_bytes * 4
    decoded = (decode_raw(e, UnknownRecord, limits, out, max_bytes=max_bytes) for e in entries)
    return [u for u in decoded if u is not None]


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
        out.dead_letters.append(
            DeadLetter(
                source=entry.source,
                key=entry.key,
                value=entry.value or b"",
                reason=exc.reason,
                error=str(exc),
            )
        )
        return None


def dead_feedback(
    out: EngineOutput, raw: RawRecord | None, fb: Feedback, reason: str, error: str
) -> None:
    """Dead-letters a feedback record (its raw bytes when it came from the stream)."""
    out.dead_letters.append(
        DeadLetter(
            source=raw.source if raw else None,
            key=raw.key if raw else None,
            value=raw.value if raw and raw.value else encode(fb),
            reason=reason,
            error=error,
        )
    )


def dead_item(
    out: EngineOutput,
    item: Item,
    source: SourceRef | None,
    raw: RawRecord | Item | None,
    reason: str,
    error: str,
) -> None:
    """Dead-letters an item (its raw bytes when it came from the stream)."""
    value = raw.value if isinstance(raw, RawRecord) and raw.value else encode(item)
    key = raw.key if isinstance(raw, RawRecord) else item.id.encode()
    out.dead_letters.append(
        DeadLetter(source=source, key=key, value=value, reason=reason, error=error)
    )
