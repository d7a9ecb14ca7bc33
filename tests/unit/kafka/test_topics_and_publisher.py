"""Topic names, the DLQ's key and headers, consumed messages as Engine input, and publishing.

The publisher is given a fake producer (``streamlabel.testing.kafka``) that
records every send and hands back futures whose outcome the test chooses (no broker).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from streamlabel.errors import PublishError
from streamlabel.kafka.io import _dlq_key, dead_letter_headers, to_raw
from streamlabel.kafka.publisher import Publisher
from streamlabel.kafka.topics import TOPIC_KINDS, Topics
from streamlabel.pipeline import Engine, RawRecord, load_settings
from streamlabel.pipeline.output import EngineOutput
from streamlabel.schemas import (
    ClassEvent,
    DeadLetter,
    DriftAlert,
    Feedback,
    Item,
    LabelRecord,
    SourceRef,
    UnknownRecord,
    decode,
)
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.testing import HashEmbedder, ManualClock
from streamlabel.testing.kafka import FakeFuture, FakeProducer


# ------------------------------------------------------------------- topics
def test_topic_names_carry_the_prefix() -> None:
    topics = Topics("prod.eu.")
    assert topics.items == "prod.eu.items"
    assert topics.labels == "prod.eu.labels"
    assert topics.feedback == "prod.eu.feedback"
    assert topics.unknowns == "prod.eu.unknowns"
    assert topics.classes == "prod.eu.classes"
    assert topics.alerts == "prod.eu.alerts"
    assert topics.dlq == "prod.eu.dlq"


def test_the_default_prefix_is_sl() -> None:
    assert Topics().name("labels") == "sl.labels"


def test_all_lists_one_distinct_name_per_kind() -> None:
    names = Topics("x-").all()
    assert names == [f"x-{kind}" for kind in TOPIC_KINDS]
    assert len(set(names)) == len(TOPIC_KINDS) == 9


def test_shared_inputs_keep_their_own_names_and_outputs_take_the_prefix() -> None:
    """A second deployment (a model roll-out) reads the first one's inputs, writes its own."""
    kafka = KafkaSettings(topic_prefix="v2.", items_topic="sl.items", feedback_topic="sl.feedback")
    t = Topics.of(kafka)
    assert (t.items, t.feedback) == ("sl.items", "sl.feedback")
    assert [t.name(k) for k in TOPIC_KINDS if k not in ("items", "feedback")] == [
        f"v2.{k}" for k in TOPIC_KINDS if k not in ("items", "feedback")
    ]
    assert Topics.of(KafkaSettings(topic_prefix="v2.")).items == "v2.items"


@pytest.mark.parametrize("bad", ["", "has space", "a/b"])
def test_an_invalid_shared_topic_name_is_refused_naming_the_setting(bad: str) -> None:
    from streamlabel.errors import SettingsError
    from streamlabel.settings.runtime import load_runtime_settings

    with pytest.raises(SettingsError, match=r"kafka\.items_topic"):
        load_runtime_settings(kafka={"items_topic": bad})


def test_an_empty_prefix_gives_bare_names() -> None:
    assert Topics("").dlq == "dlq"


@pytest.mark.parametrize("kind", ["label", "", "ITEMS", "sl.items"])
def test_an_unknown_topic_kind_raises(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown topic kind"):
        Topics().name(kind)


# -------------------------------------------------------------- dead letters
def letter(
    source: SourceRef | None, key: bytes | None = b"item-7", error: str = "boom"
) -> DeadLetter:
    return DeadLetter(source=source, key=key, value=b"\x01raw", reason="not_msgpack", error=error)


def test_dead_letter_headers_give_the_source_position_reason_and_error() -> None:
    headers = dead_letter_headers(letter(SourceRef(topic="sl.items", partition=3, offset=41)))
    assert headers == [
        ("source.topic", b"sl.items"),
        ("source.partition", b"3"),
        ("source.offset", b"41"),
        ("error.reason", b"not_msgpack"),
        ("error.message", b"boom"),
    ]


def test_dead_letter_headers_without_a_source_use_placeholders() -> None:
    headers = dict(dead_letter_headers(letter(None)))
    assert headers["source.topic"] == b""
    assert headers["source.partition"] == b"-1"
    assert headers["source.offset"] == b"-1"


def test_dead_letter_headers_cap_the_error_message() -> None:
    headers = dict(dead_letter_headers(letter(None, error="x" * 10_000)))
    assert headers["error.message"] == b"x" * 4000


def test_the_dlq_key_is_the_source_position_when_known() -> None:
    source = SourceRef(topic="sl.feedback", partition=0, offset=12)
    assert _dlq_key(letter(source)) == b"sl.feedback:0:12"


def test_the_dlq_key_falls_back_to_the_message_key_then_empty() -> None:
    assert _dlq_key(letter(None)) == b"item-7"
    assert _dlq_key(letter(None, key=None)) == b""


# --------------------------------------------------------------------- to_raw
def test_a_consumed_message_becomes_a_raw_record_with_its_position() -> None:
    message = SimpleNamespace(topic="sl.items", partition=2, offset=99, key=b"k", value=b"v")
    assert to_raw(message) == RawRecord(  # type: ignore[arg-type]
        value=b"v", source=SourceRef(topic="sl.items", partition=2, offset=99), key=b"k"
    )


def test_a_tombstone_becomes_a_raw_record_without_value() -> None:
    message = SimpleNamespace(topic="t", partition=0, offset=0, key=None, value=None)
    raw = to_raw(message)  # type: ignore[arg-type]
    assert (raw.value, raw.key) == (None, None)


# ------------------------------------------------------------------ publisher
def publisher_with(fake: FakeProducer, delivery_timeout_s: float = 7.5) -> Publisher:
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9", delivery_timeout_s=delivery_timeout_s)
    return Publisher(settings, Topics("t."), make=lambda s: fake)


@pytest.fixture(scope="module")
def output() -> EngineOutput:
    """A real Engine's output: 2 class events, 3 labels, 1 unknown, 1 dead letter, 1 alert."""
    engine = Engine(
        load_settings(drift={"enabled": False}), HashEmbedder(dim=16), clock=ManualClock(5.0)
    )
    out = engine.learn(
        [Feedback(text="python list dict", label="python"), Feedback(text="java jar", label="java")]
    )
    out.extend(
        engine.process(
            [
                Item(id="p1", text="python list dict"),
                Item(id="j1", text="java jar"),
                Item(id="u1", text="zzz qqq www"),
                RawRecord(b"\xc1 not msgpack", SourceRef(topic="t.items", partition=1, offset=5)),
            ]
        )
    )
    out.alerts.append(
        DriftAlert(
            alert_id="embedding-1",
            kind="embedding",
            statistic=2.0,
            threshold=1.0,
            window=100,
            reference=200,
            at_item=300,
            severity="critical",
            detail="the embedding distribution moved",
            store_version=2,
            emitted_at=5.0,
        )
    )
    assert (len(out.class_events), len(out.labels), len(out.unknowns)) == (2, 3, 1)
    assert (len(out.dead_letters), len(out.alerts)) == (1, 1)
    return out


def test_publish_queues_every_record_and_returns_how_many(output: EngineOutput) -> None:
    fake = FakeProducer()
    assert publisher_with(fake).publish(output) == 8
    assert len(fake.sent) == 8


def test_labels_go_to_the_labels_topic_keyed_by_item_id(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    sent = fake.on("t.labels")
    assert [s["key"] for s in sent] == [b"p1", b"j1", b"u1"]
    decoded = [decode(s["value"], LabelRecord) for s in sent]
    assert decoded == output.labels


def test_unknowns_go_to_the_unknowns_topic_keyed_by_item_id(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    (sent,) = fake.on("t.unknowns")
    assert sent["key"] == b"u1"
    record = decode(sent["value"], UnknownRecord)
    assert record.item_id == "u1"
    np.testing.assert_allclose(record.vector, output.unknowns[0].vector)


def test_class_events_go_to_the_classes_topic_keyed_by_class_id(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    sent = fake.on("t.classes")
    assert [s["key"] for s in sent] == [b"python", b"java"]
    assert [decode(s["value"], ClassEvent) for s in sent] == output.class_events


def test_alerts_of_no_incident_go_to_the_alerts_topic_keyed_by_kind(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    (sent,) = fake.on("t.alerts")
    assert sent["key"] == b"embedding"
    assert decode(sent["value"], DriftAlert) == output.alerts[0]


def test_every_update_of_an_incident_is_keyed_by_the_incident_id(output: EngineOutput) -> None:
    first = output.alerts[0]
    incident = EngineOutput(alerts=[
        first.model_copy(update={"incident_id": "incident-1", "incident_update": 0}),
        first.model_copy(update={"kind": "unknown_rate", "incident_id": "incident-1",
                                 "incident_update": 1}),
    ])  # fmt: skip
    fake = FakeProducer()
    publisher_with(fake).publish(incident)
    sent = fake.on("t.alerts")
    assert [s["key"] for s in sent] == [b"incident-1", b"incident-1"]
    assert [decode(s["value"], DriftAlert) for s in sent] == incident.alerts


def test_dead_letters_go_to_the_dlq_with_the_raw_value_and_headers(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    (sent,) = fake.on("t.dlq")
    letter = output.dead_letters[0]
    assert sent["key"] == b"t.items:1:5"
    assert sent["value"] == b"\xc1 not msgpack"
    assert sent["headers"] == dead_letter_headers(letter)
    assert dict(sent["headers"])["error.reason"] == b"not_msgpack"


def test_only_dead_letters_carry_headers(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    assert all(s["headers"] == [] for s in fake.sent if s["topic"] != "t.dlq")


def test_flush_returns_the_number_delivered_and_uses_the_delivery_timeout(
    output: EngineOutput,
) -> None:
    fake = FakeProducer()
    publisher = publisher_with(fake, delivery_timeout_s=7.5)
    publisher.publish(output)
    assert publisher.flush() == 8
    assert fake.flushes == [7.5]
    assert publisher.flush() == 0  # nothing pending: no second flush
    assert fake.flushes == [7.5]
    assert publisher.recreated == 0


def test_flush_passes_an_explicit_timeout_to_the_producer(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher = publisher_with(fake)
    publisher.publish(output)
    publisher.flush(timeout=1.25)
    assert fake.flushes == [1.25]


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        (FakeFuture(is_done=True, exception=RuntimeError("NotLeaderForPartition")), "NotLeader"),
        (FakeFuture(is_done=False), "not acknowledged in time"),
    ],
    ids=["failed", "not-done"],
)
def test_an_undelivered_record_makes_flush_raise_and_drops_the_producer(
    output: EngineOutput, outcome: FakeFuture, reason: str
) -> None:
    fake = FakeProducer(outcomes=[FakeFuture(), outcome])
    publisher = publisher_with(fake)
    publisher.publish(output)
    with pytest.raises(PublishError, match=reason) as caught:
        publisher.flush()
    assert "1 of 8 records undelivered" in str(caught.value)
    assert "t.labels" in str(caught.value)  # the second record sent was a label
    assert not publisher.connected
    assert publisher.recreated == 1
    assert fake.closed == [0]


def test_after_a_failed_flush_nothing_stays_pending(output: EngineOutput) -> None:
    fake = FakeProducer(outcomes=[FakeFuture(is_done=False)])
    publisher = publisher_with(fake)
    publisher.publish(output)
    with pytest.raises(PublishError):
        publisher.flush()
    assert publisher.flush() == 0  # the failed batch is not retried silently


def test_close_closes_the_producer_once(output: EngineOutput) -> None:
    fake = FakeProducer()
    publisher = publisher_with(fake)
    publisher.send("t.labels", b"k", b"v")  # connects
    publisher.close(timeout=2.0)
    publisher.close(timeout=2.0)
    assert fake.closed == [2.0]
    assert not publisher.connected


def test_a_publisher_does_not_connect_until_it_sends() -> None:
    publisher = Publisher(KafkaSettings(bootstrap_servers="127.0.0.1:9"), Topics())
    assert not publisher.connected
    assert publisher.flush() == 0
    publisher.close()
    assert not publisher.connected


def test_class_events_always_go_to_partition_zero_of_the_changelog(output: EngineOutput) -> None:
    """The changelog has one partition; a keyed partitioner must never pick another."""
    fake = FakeProducer()
    publisher_with(fake).publish(output)
    assert {s["partition"] for s in fake.on("t.classes")} == {0}
    assert {s["partition"] for s in fake.on("t.labels")} == {None}


def test_class_events_carry_the_given_headers_and_other_records_do_not(
    output: EngineOutput,
) -> None:
    """The learner stamps its consumed offsets on class events only."""
    publisher = publisher_with(FakeProducer())
    records = publisher.records(output, event_headers=[("learner.offsets", b'{"t.feedback:0": 3}')])
    for topic, _key, _value, headers in records:
        if topic == "t.classes":
            assert headers == [("learner.offsets", b'{"t.feedback:0": 3}')]
        elif topic != "t.dlq":
            assert headers == []


def test_deliver_retries_on_a_fresh_producer_until_every_record_is_acknowledged(
    output: EngineOutput, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlabel.kafka import publisher as kafka_publisher

    first = FakeProducer(outcomes=[FakeFuture(is_done=False)])  # the first batch is lost
    second = FakeProducer()
    producers = iter([first, second])
    sleeps: list[float] = []
    monkeypatch.setattr(kafka_publisher.time, "sleep", sleeps.append)
    publisher = Publisher(
        KafkaSettings(bootstrap_servers="127.0.0.1:9"), Topics("t."), make=lambda s: next(producers)
    )
    failures: list[int] = []
    sent_first: list[int] = []
    records = publisher.records(output)
    publisher.deliver(
        records, retry_s=60, on_failure=lambda attempt, exc: failures.append(attempt),
        after_first_send=lambda: sent_first.append(len(first.sent)),
    )  # fmt: skip
    assert failures == [1]
    assert sent_first == [len(records)]  # called once, after the first send only
    assert len(second.sent) == len(records)  # everything again, on the new producer
    assert sleeps == [0.5]  # backoff before the retry
    assert publisher.recreated == 1


def test_deliver_gives_up_once_its_retry_time_is_spent(output: EngineOutput) -> None:
    publisher = publisher_with(FakeProducer(outcomes=[FakeFuture(is_done=False)]))
    failures: list[int] = []
    with pytest.raises(PublishError, match="not acknowledged in time"):
        publisher.deliver(
            publisher.records(output), retry_s=0, on_failure=lambda a, e: failures.append(a)
        )
    assert failures == [1]


# ------------------------------------------------------------------ unpublishable records
def dlq_headers(fake: FakeProducer) -> list[dict[str, str]]:
    return [{k: v.decode() for k, v in s["headers"]} for s in fake.on("t.dlq")]


def test_a_record_too_large_to_publish_becomes_a_dead_letter_and_the_rest_goes_out() -> None:
    fake = FakeProducer()
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    publisher = Publisher(settings, Topics("t."), make=lambda s: fake, max_record_bytes=1000)
    publisher.send_all([
        ("t.labels", b"a", b"x" * 10, []), ("t.classes", b"big", b"x" * 5000, []),
        ("t.labels", b"b", b"y" * 10, []),
    ])  # fmt: skip
    assert publisher.flush() == 3  # two labels and the dead letter in the event's place
    assert [s["key"] for s in fake.on("t.labels")] == [b"a", b"b"]
    assert fake.on("t.classes") == []
    (headers,) = dlq_headers(fake)
    assert headers["error.reason"] == "unpublishable"
    assert "t.classes" in headers["error.message"]
    assert "5003 bytes, more than the 1000 allowed" in headers["error.message"]
    assert publisher.unpublishable == 1
    assert publisher.connected  # not a producer failure


@pytest.mark.parametrize("error", ["MessageSizeTooLargeError", "TopicAuthorizationFailedError"])
def test_a_record_the_broker_refuses_for_good_does_not_block_the_others(error: str) -> None:
    import kafka.errors

    refused = FakeFuture(exception=getattr(kafka.errors, error)("refused"))
    fake = FakeProducer(outcomes=[FakeFuture(), refused, FakeFuture()])
    publisher = publisher_with(fake)
    publisher.send_all([("t.labels", b"a", b"1", []), ("t.labels", b"b", b"2", []),
                        ("t.labels", b"c", b"3", [])])  # fmt: skip
    assert publisher.flush() == 3  # a and c, and the dead letter for b
    (headers,) = dlq_headers(fake)
    assert error in headers["error.message"]
    assert publisher.recreated == 0


def test_a_dead_letter_the_broker_refuses_for_good_is_dropped_not_retried_forever() -> None:
    import kafka.errors

    denied = kafka.errors.TopicAuthorizationFailedError("no ACL on the dlq")
    fake = FakeProducer(outcomes=[FakeFuture(exception=denied)])
    publisher = publisher_with(fake)
    publisher.send("t.dlq", b"k", b"v")
    assert publisher.flush() == 0
    assert publisher.unpublishable == 1
    assert len(fake.sent) == 1


def test_a_transient_failure_among_permanent_ones_still_fails_the_flush() -> None:
    import kafka.errors

    fake = FakeProducer(outcomes=[
        FakeFuture(exception=kafka.errors.MessageSizeTooLargeError("big")),
        FakeFuture(exception=kafka.errors.RequestTimedOutError("slow")),
    ])  # fmt: skip
    publisher = publisher_with(fake)
    publisher.send_all([("t.labels", b"a", b"1", []), ("t.labels", b"b", b"2", [])])
    with pytest.raises(PublishError, match="2 of 2 records undelivered"):
        publisher.flush()


def test_a_dead_letter_too_large_to_publish_goes_out_without_its_value() -> None:
    fake = FakeProducer()
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9")
    publisher = Publisher(settings, Topics("t."), make=lambda s: fake, max_record_bytes=1000)
    letter = DeadLetter(
        source=SourceRef(topic="t.items", partition=2, offset=9), key=b"k",
        value=b"x" * 5000, reason="oversized", error="too big",
    )  # fmt: skip
    publisher.send("t.dlq", b"t.items:2:9", letter.value, dead_letter_headers(letter))
    assert publisher.flush() == 1
    (sent,) = fake.on("t.dlq")
    headers = {k: v.decode() for k, v in sent["headers"]}
    assert sent["value"] == b""
    assert (headers["source.offset"], headers["error.reason"]) == ("9", "oversized")
    assert headers["value.omitted"].startswith("5000 bytes")


def test_a_producer_that_failed_for_good_is_replaced_not_its_records_dead_lettered() -> None:
    """After a broker restart an idempotent producer fails with a non-retriable error
    that says nothing about the records: they are retried on a new producer."""
    import kafka.errors

    broken = kafka.errors.KafkaError("Unexpected error in InitProducerIdResponse: UnknownError")
    fake = FakeProducer(outcomes=[FakeFuture(exception=broken)])
    publisher = publisher_with(fake)
    publisher.send_all([("t.labels", b"a", b"1", [])])
    with pytest.raises(PublishError, match="InitProducerId"):
        publisher.flush()
    assert fake.on("t.dlq") == []
    assert publisher.unpublishable == 0
    assert publisher.recreated == 1
