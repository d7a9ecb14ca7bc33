"""The learner recovers only from the topics that were recreated (fake Kafka clients).

* a recreated ``feedback`` is read again from its beginning, and only it: ``unknowns``
  keeps its position and no class is re-published;
* a recreated ``classes`` gets every class again, no input is read again;
* told of recreated topics it does not read (none: a ``dlq`` purge never reaches
  it), it replays nothing;
* a whole broker lost (no topics named) reads both inputs again and re-publishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kafka.structs import TopicPartition

from streamlabel.kafka.topics import Topics
from streamlabel.schemas import ClassEvent, Feedback, decode, encode
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.testing import HashEmbedder
from streamlabel.testing.kafka import FakeChangelog, FakeConsumer, FakePublisher, consumed
from streamlabel.workers.learner import Learner

TOPICS = Topics("t.")
FEEDBACK = TopicPartition(TOPICS.feedback, 0)
UNKNOWNS = TopicPartition(TOPICS.unknowns, 0)


class Rig:
    """A started learner that consumed one feedback record, over fakes."""

    def __init__(self, state_dir: Path) -> None:
        settings = load_runtime_settings(
            None, kafka={"topic_prefix": "t."}, learner={"state_dir": str(state_dir)},
            logging={"level": "warning"}, metrics={"enabled": False},
        )  # fmt: skip
        fb = encode(Feedback(text="python list dict", label="python"))
        polls = [{FEEDBACK: [consumed(TOPICS.feedback, 0, 0, fb)]}]
        self.consumer = FakeConsumer({FEEDBACK, UNKNOWNS}, polls=polls)
        self.publisher = FakePublisher(TOPICS)
        self.learner = Learner(
            settings, embedder=HashEmbedder(dim=32), consumer=self.consumer,
            publisher=self.publisher, changelog=FakeChangelog(),
        )  # fmt: skip
        assert self.learner.ready()
        self.learner.step()
        self.learner._positions[f"{TOPICS.unknowns}:0"] = 7  # as if 7 unknowns were read

    def causes(self) -> list[str]:
        return [decode(r[2], ClassEvent).cause for r in self.publisher.on("classes")]

    def stats(self) -> dict[str, Any]:
        return self.learner.stats()


def test_a_recreated_feedback_topic_is_read_again_and_nothing_else(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    events = len(rig.causes())
    rig.learner.broker_reset(1, [TOPICS.feedback])
    rig.learner.step()
    assert rig.consumer.rewound == [FEEDBACK]
    assert rig.learner._positions == {f"{TOPICS.unknowns}:0": 7}  # unknowns keeps its place
    assert len(rig.causes()) == events  # the changelog was not lost: nothing re-published
    assert len(rig.publisher.on("alerts")) == 1
    assert rig.stats()["broker_resets"] == 1


def test_a_recreated_changelog_gets_every_class_and_no_input_is_read_again(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.learner.broker_reset(1, [TOPICS.classes])
    rig.learner.step()
    assert rig.consumer.rewound == []
    assert rig.causes()[-1] == "broker_reset"
    assert f"{TOPICS.feedback}:0" in rig.learner._positions


def test_recreated_topics_the_learner_does_not_read_replay_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    events = len(rig.causes())
    rig.learner.broker_reset(1, [TOPICS.dlq, TOPICS.labels])
    rig.learner.step()
    assert rig.consumer.rewound == []
    assert len(rig.causes()) == events
    assert rig.publisher.on("alerts") == []
    assert rig.stats()["broker_resets"] == 0


def test_a_whole_broker_lost_reads_both_inputs_again_and_republishes(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.learner.broker_reset(1)
    rig.learner.step()
    assert sorted(rig.consumer.rewound, key=str) == sorted([FEEDBACK, UNKNOWNS], key=str)
    assert rig.learner._positions == {}
    assert rig.causes()[-1] == "broker_reset"
    assert len(rig.publisher.on("alerts")) == 1
