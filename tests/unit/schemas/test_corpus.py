"""Old records keep decoding: a frozen corpus of version-1 messages, one or more per type.

The files under ``corpus/v1/`` were written once by the version-1 encoder and
are never regenerated: a model change that stops them decoding to the records
below breaks every reader of an existing topic (the compatibility policy in
``docs/wire-format.md``). Run this file as a script to add the file of a NEW
corpus record; it never overwrites one.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from streamlabel.schemas import (
    ClassEvent,
    ClassState,
    DeadLetter,
    DriftAlert,
    DriftEvidence,
    Feedback,
    Item,
    LabelRecord,
    Record,
    ScoredClass,
    ShareChange,
    SourceRef,
    UnknownRecord,
    decode,
    encode,
    wire_types,
)
from streamlabel.schemas.commands import Command, CommandResult, EventRef

CORPUS_DIR = Path(__file__).parent / "corpus" / "v1"
FORMATS = {"msgpack": ".msgpack", "json": ".json"}

_STATE = ClassState(
    class_id="c-sorting",
    name="sorting",
    status="known",
    origin="feedback",
    description=None,
    count=3,
    mean=(0.6, 0.8, 0.0),
    sub_prototypes=[[0.6, 0.8, 0.0]],
    exemplars=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.25]],
    exemplar_texts=("how do I sort a dict?", "sort a list in place"),
    keywords=("sort", "order"),
    aliases=("ordering",),
    threshold_override=0.42,
    created_version=1,
    updated_version=3,
    created_at=1_700_000_000.0,
    updated_at=1_700_000_360.5,
)

CORPUS: dict[str, Record] = {
    "item-text": Item(id="item-1", text="how do I sort a dict?"),
    "item-vector": Item(
        id="item-2",
        text="café ☕ in UTF-8",
        vector=(0.25, -1.5, 3.0e-3, 0.0),
        metadata={"lang": "fr", "n": 7, "big": 2**63 - 1, "p": 0.5, "ok": True, "none": None},
        event_time=1_700_000_000.25,
    ),
    "label": LabelRecord(
        item_id="item-1",
        label="c-sorting",
        class_name="sorting",
        score=0.91,
        margin=0.33,
        threshold=0.6,
        top_k=(
            ScoredClass(class_id="c-sorting", score=0.91),
            ScoredClass(class_id="c-io", score=0.58),
        ),
        is_unknown=False,
        is_novel=True,
        revision=2,
        store_version=17,
        model_id="all-MiniLM-L6-v2",
        source=SourceRef(topic="sl.items", partition=3, offset=12_345),
        reason="discovered",
        timings_ms={"embed": 4.5, "classify": 0.25},
        emitted_at=1_700_000_001.0,
    ),
    "label-unknown": LabelRecord(
        item_id="item-9",
        label="unknown",
        score=0.12,
        margin=0.0,
        is_unknown=True,
        store_version=0,
        model_id="m",
        emitted_at=0.0,
    ),
    "feedback": Feedback(item_id="item-1", label="sorting", source="alice", event_time=12.5),
    "feedback-vector": Feedback(text="read a file", vector=(1.0, 0.0), label="io"),
    "class_event": ClassEvent(
        kind="merged",
        class_id="c-sorting",
        state=_STATE,
        store_version=3,
        cause="operator",
        related=("c-order",),
    ),
    "class_event-bare": ClassEvent(
        kind="created",
        class_id="c-new",
        state=ClassState(
            class_id="c-new",
            name="new",
            status="provisional",
            origin="discovery",
            count=0,
            created_version=1,
            updated_version=1,
            created_at=0.0,
            updated_at=0.0,
        ),
        store_version=1,
    ),
    "alert": DriftAlert(
        alert_id="a-1",
        kind="unknown_rate",
        statistic=3.5,
        threshold=3.0,
        p_value=0.001,
        window=500,
        reference=2_000,
        at_item=10_000,
        severity="warning",
        affected_classes=("c-io",),
        detail="the unknown rate rose from 4% to 19%",
        store_version=17,
        emitted_at=1_700_000_002.0,
    ),
    "alert-incident": DriftAlert(
        alert_id="a-2",
        kind="embedding",
        statistic=0.031,
        threshold=0.012,
        window=500,
        reference=2_000,
        at_item=10_250,
        severity="critical",
        detail="the embedding distribution moved (MMD 0.031 > 0.012)",
        store_version=17,
        emitted_at=1_700_000_003.0,
        incident_id="inc-1",
        incident_update=1,
        evidence=(
            DriftEvidence(
                kind="unknown_rate",
                statistic=3.5,
                threshold=3.0,
                p_value=0.001,
                at_item=10_000,
                detail="the unknown rate rose",
                emitted_at=1_700_000_002.0,
            ),
        ),
        share_changes=(ShareChange(class_id="unknown", before=0.04, after=0.19),),
        examples_before=("how do I sort a list",),
        examples_after=("book a table for two",),
    ),
    "unknown": UnknownRecord(
        item_id="item-9",
        text="what is a monad?",
        vector=(0.125, 0.5, -0.75),
        score=0.12,
        nearest_class="c-io",
        revision=0,
        store_version=17,
        source=SourceRef(topic="sl.items", partition=0, offset=9),
        event_time=3.0,
    ),
    "dead_letter": DeadLetter(
        source=SourceRef(topic="sl.items", partition=1, offset=41),
        key=b"item-7",
        value=b"\xc1\xff not msgpack",
        reason="not_msgpack",
        error="not a msgpack message",
    ),
    "command": Command(
        command_id="cmd-1",
        kind="teach",
        item_ids=("item-1", "item-2"),
        text="sort a list in place",
        label="sorting",
        issued_by="alice",
        issued_at=1_700_000_003.0,
    ),
    "command_result": CommandResult(
        command_id="cmd-1",
        kind="merge",
        status="applied",
        events=(
            EventRef(class_id="c-sorting", kind="updated", store_version=4),
            EventRef(class_id="c-order", kind="merged", store_version=5),
        ),
        revisions=3,
        store_version=5,
        issued_by="alice",
        at=1_700_000_004.5,
    ),
}


def _path(name: str, fmt: str) -> Path:
    return CORPUS_DIR / f"{name}{FORMATS[fmt]}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", CORPUS)
def test_version_1_records_keep_decoding_to_equal_records(name: str, fmt: str) -> None:
    """Each frozen version-1 message decodes, in its own format, to the record it was made from."""
    record = CORPUS[name]
    assert decode(_path(name, fmt).read_bytes(), type(record), format=fmt) == record


ADDED_SINCE_V1: dict[str, set[str]] = {
    # optional fields (defaults keep old records valid); never removed or renamed
    "alert": {
        "incident_id", "incident_update", "evidence", "share_changes", "examples_before",
        "examples_after",
    },
}  # fmt: skip
"""Fields each corpus record's type gained after its corpus files were written."""


@pytest.mark.parametrize("name", CORPUS)
def test_msgpack_encoding_is_version_1_plus_only_the_optional_fields_added_since(name: str) -> None:
    """The encoder still writes the version-1 msgpack bytes, byte for byte, for a type
    that gained no field; for one that did, the same envelope and fields plus the new ones."""
    now, then = encode(CORPUS[name]), _path(name, "msgpack").read_bytes()
    added = ADDED_SINCE_V1.get(name, set())
    if not added:
        assert now == then
        return
    new, old = msgpack.unpackb(now), msgpack.unpackb(then)
    assert (new["v"], new["t"]) == (old["v"], old["t"])
    assert set(new["d"]) - set(old["d"]) == added
    assert {k: v for k, v in new["d"].items() if k not in added} == old["d"]


def test_the_corpus_holds_every_wire_record_type() -> None:
    """A record type added to the codec's tag table needs its corpus messages too."""
    assert set(wire_types().values()) <= {type(r) for r in CORPUS.values()}


def test_every_corpus_file_belongs_to_a_corpus_record() -> None:
    """No orphan files: each file under ``corpus/v1`` is checked by the tests above."""
    names = {p.name.removesuffix(p.suffix) for p in CORPUS_DIR.iterdir()}
    assert names == set(CORPUS)


if __name__ == "__main__":  # add the files of new corpus records; never rewrite old ones
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    for name, record in CORPUS.items():
        for fmt in FORMATS:
            path = _path(name, fmt)
            if not path.exists():
                path.write_bytes(encode(record, format=fmt))
                print("wrote", path)
