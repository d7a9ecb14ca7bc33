"""A foreign topic labelled as it is: the items mapping in a batch, dead letters with offsets.

The labeler reads each message of a batch as an envelope (in either format) or a
foreign record through its mapping (``kafka.items_mapping``); a record that
makes no item is dead-lettered with its own bytes, key, source offset and a
message naming its field, and the rest of the batch is labelled.
"""

from __future__ import annotations

import json

import pytest

from streamlabel.pipeline import RawRecord, load_settings
from streamlabel.pipeline.labeler import Labeler
from streamlabel.schemas import Item, SourceRef, encode
from streamlabel.schemas.mapping import ItemMapping
from streamlabel.testing import HashEmbedder, ManualClock

TICKETS = ItemMapping(id_field="ticket_id", text_field="body", metadata_fields=("customer",))


def _raw(value: bytes | None, offset: int) -> RawRecord:
    return RawRecord(value, SourceRef(topic="tickets", partition=1, offset=offset), key=b"k")


def _labeler(items: ItemMapping = TICKETS) -> Labeler:
    settings = load_settings(drift={"enabled": False})
    return Labeler(settings, HashEmbedder(dim=32), clock=ManualClock(0), items=items)


def test_a_batch_mixing_envelopes_and_foreign_records_is_labelled_and_the_bad_dead_lettered() -> (
    None
):
    bad = {
        13: b'{"ticket_id": 3}',  # no text and no vector
        14: b'{"ticket_id": 4.5, "body": "x"}',  # a float id
        15: b"not JSON, not msgpack",
        16: b'{"ticket_id": 6, "body": ',  # truncated JSON
    }
    batch = [
        _raw(encode(Item(id="own", text="our own envelope")), 10),
        _raw(json.dumps({"ticket_id": 17, "body": "printer on fire", "customer": "x"}).encode(),
             11),
        _raw(b'{"body": "a ticket without an id"}', 12),
        *(_raw(value, offset) for offset, value in bad.items()),
        _raw(encode(Item(id="json-own", text="our envelope in JSON"), format="json"), 17),
    ]  # fmt: skip
    out = _labeler().process(batch)
    assert [r.item_id for r in out.labels] == ["own", "17", "tickets:1:12", "json-own"]
    assert [r.source.offset for r in out.labels if r.source] == [10, 11, 12, 17]
    letters = {d.source.offset: d for d in out.dead_letters if d.source}
    assert sorted(letters) == sorted(bad)
    assert [letters[o].reason for o in sorted(bad)] == ["invalid", "invalid", "not_msgpack",
                                                        "not_json"]  # fmt: skip
    assert "no 'body' or 'vector'" in letters[13].error
    assert "'ticket_id' must be a string or an integer" in letters[14].error
    for offset, value in bad.items():  # the consumed message, unchanged
        assert (letters[offset].value, letters[offset].key) == (value, b"k")


def test_a_foreign_records_mapped_fields_make_the_item_and_the_others_are_ignored() -> None:
    raw = json.dumps({"ticket_id": "T-9", "body": "reset my password", "customer": "acme",
                      "internal": {"nested": True}}).encode()  # fmt: skip
    prepared = _labeler().prepare([_raw(raw, 5)])
    assert prepared.out.dead_letters == []
    (decoded,) = prepared.decoded
    assert decoded.item == Item(id="T-9", text="reset my password", metadata={"customer": "acme"})
    assert decoded.source == SourceRef(topic="tickets", partition=1, offset=5)
    assert prepared.texts == ["reset my password"]


@pytest.mark.parametrize("offset", [0, 7])
def test_a_replayed_record_without_an_id_gets_the_same_id(offset: int) -> None:
    raw = b'{"body": "the same message read twice"}'
    first = _labeler().process([_raw(raw, offset)]).labels[0].item_id
    again = _labeler().process([_raw(raw, offset)]).labels[0].item_id
    assert first == again == f"tickets:1:{offset}"


def test_without_a_mapping_a_bare_item_object_is_read_with_streamlabels_field_names() -> None:
    settings = load_settings(drift={"enabled": False})
    labeler = Labeler(settings, HashEmbedder(dim=32), clock=ManualClock(0))
    out = labeler.process([_raw(b'{"id": "bare", "text": "no envelope"}', 3)])
    assert [r.item_id for r in out.labels] == ["bare"]
