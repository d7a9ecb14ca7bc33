"""One bad record never stops the pipeline: it is dead-lettered with its reason, the rest goes on.

* a model that returns NaN or infinity for one text: that item goes to the DLQ
  (``embedding``), the batch is labelled (building its unknown record used to raise);
* a model that fails on everything, a known-good probe text included, is not
  the inputs' fault: nothing is dead-lettered, the step raises;
* feedback longer than ``limits.max_text_chars`` is dead-lettered (``oversized``);
* an ``unknowns`` record whose vector has another dimension is dead-lettered
  (``bad_vector``) with its offset; the learner's absorb never raises on one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from streamlabel.errors import EmbeddingError, ModelUnavailableError
from streamlabel.pipeline import Engine, RawRecord, load_settings
from streamlabel.pipeline.batch import decode_unknowns
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import Feedback, Item, SourceRef, UnknownRecord, encode
from streamlabel.testing import HashEmbedder, ManualClock

SETTINGS = {"drift": {"enabled": False}}


class NonFiniteEmbedder(HashEmbedder):
    """Returns NaN for texts with ``__nan__`` and infinity for texts with ``__inf__``."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = super().embed(texts)
        for i, text in enumerate(texts):
            if "__nan__" in text:
                out[i, 0] = np.nan
            if "__inf__" in text:
                out[i, :] = np.inf
        return out


class BrokenEmbedder(HashEmbedder):
    """A model whose device is gone: it raises on every batch (wrapped as EmbeddingError)."""

    broken = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.broken:
            raise EmbeddingError("CUDA error: an illegal memory access was encountered")
        return super().embed(texts)


def engine(embedder: HashEmbedder, **overrides: object) -> Engine:
    return Engine(load_settings(**SETTINGS, **overrides), embedder, clock=ManualClock(0))


def test_a_non_finite_vector_from_the_model_dead_letters_that_item_only() -> None:
    e = engine(NonFiniteEmbedder(dim=32))
    e.learn([Feedback(text="python list sort", label="python")])
    items = [Item(id=str(i), text=t) for i, t in enumerate(
        ["python list", "rust borrow __nan__", "java jar __inf__", "haskell monad"]
    )]  # fmt: skip
    out = e.process(items)
    assert sorted((d.reason, d.key) for d in out.dead_letters) == [
        ("embedding", b"1"), ("embedding", b"2"),
    ]  # fmt: skip
    assert [r.item_id for r in out.labels] == ["0", "3"]
    assert all(np.isfinite(u.vector).all() for u in out.unknowns)


def test_feedback_the_model_returns_nan_for_is_dead_lettered() -> None:
    e = engine(NonFiniteEmbedder(dim=32))
    out = e.learn([Feedback(text="a __nan__", label="x"), Feedback(text="python", label="py")])
    assert [d.reason for d in out.dead_letters] == ["embedding"]
    assert [ev.class_id for ev in out.class_events] == ["py"]


def test_a_model_that_fails_on_everything_raises_and_dead_letters_nothing() -> None:
    embedder = BrokenEmbedder(dim=32)
    e = engine(embedder)
    embedder.broken = True
    with pytest.raises(ModelUnavailableError, match="known-good probe"):
        e.process([Item(id="1", text="python list"), Item(id="2", text="java jar")])
    with pytest.raises(ModelUnavailableError):
        e.learn([Feedback(text="python list", label="python")])


def test_a_text_the_model_rejects_is_still_dead_lettered_while_the_model_works() -> None:
    e = engine(HashEmbedder(dim=32))
    out = e.process([Item(id="1", text="python __poison__"), Item(id="2", text="java jar")])
    assert [(d.reason, d.key) for d in out.dead_letters] == [("embedding", b"1")]
    assert [r.item_id for r in out.labels] == ["2"]


def test_oversized_feedback_is_dead_lettered_and_the_rest_learned() -> None:
    e = engine(HashEmbedder(dim=32), limits={"max_text_chars": 100})
    raw = RawRecord(
        value=encode(Feedback(text="word " * 200, label="big")),
        source=SourceRef(topic="t.feedback", partition=0, offset=7),
    )
    out = e.learn([raw, Feedback(text="python list", label="python")])
    assert [(d.reason, d.source.offset if d.source else None) for d in out.dead_letters] == [
        ("oversized", 7)
    ]
    assert "1000 characters, limit 100" in out.dead_letters[0].error
    assert [ev.class_id for ev in out.class_events] == ["python"]


def unknown(item_id: str, dim: int) -> UnknownRecord:
    vector = np.random.default_rng(len(item_id)).standard_normal(dim).astype(np.float32)
    return UnknownRecord(item_id=item_id, text="x", vector=vector, score=0.1, revision=0,
                         store_version=0)  # fmt: skip


def test_an_unknowns_record_of_another_dimension_is_dead_lettered_with_its_offset() -> None:
    raws = [
        RawRecord(value=encode(unknown(f"u{i}", dim)),
                  source=SourceRef(topic="t.unknowns", partition=1, offset=i))
        for i, dim in enumerate([32, 16, 32, 48])
    ]  # fmt: skip
    out = EngineOutput()
    kept = decode_unknowns(raws, load_settings().limits, 32, out)
    assert [u.item_id for u in kept] == ["u0", "u2"]
    assert [(d.reason, d.source.offset if d.source else None) for d in out.dead_letters] == [
        ("bad_vector", 1), ("bad_vector", 3),
    ]  # fmt: skip
    assert "16 dimensions, the model 32" in out.dead_letters[0].error


def test_absorb_never_raises_on_mixed_dimensions() -> None:
    e = engine(HashEmbedder(dim=32))
    out = e.absorb([unknown("a", 32), unknown("bb", 16), unknown("ccc", 32)])
    assert [d.reason for d in out.dead_letters] == ["bad_vector"]
    assert sorted(e.buffer.ids) == ["a", "ccc"]
