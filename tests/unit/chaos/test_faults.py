"""Fault points of the actors (``streamlabel chaos``): arming, stalls, a real SIGKILL, and the
embedder that fails on a marked text, alone and inside an Engine (no Ray, no broker)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from streamlabel.chaos.faults import (
    LEARNER_POINTS,
    MODEL_FAIL_MARKER,
    WORKER_POINTS,
    Faults,
    FaultyEmbedder,
)
from streamlabel.errors import EmbeddingError, SettingsError
from streamlabel.pipeline import Engine, RawRecord, load_settings
from streamlabel.schemas import Feedback, Item, SourceRef, encode
from streamlabel.testing import HashEmbedder, ManualClock

STALL_S = 0.05


@pytest.fixture
def faults() -> Faults:
    return Faults(WORKER_POINTS)


# ------------------------------------------------------------------ arming
@pytest.mark.parametrize("point", ["after_commit", "AFTER_EMBED", "", "feedback_applied"])
def test_arming_an_unknown_point_raises_settings_error_naming_it(
    faults: Faults, point: str
) -> None:
    with pytest.raises(SettingsError, match=f"unknown fault point {point!r}") as err:
        faults.arm(point)
    assert "after_embed, after_produce, after_flush" in str(err.value)  # the known ones
    assert not faults._armed


def test_a_learner_point_is_known_to_a_learners_faults_only() -> None:
    Faults(LEARNER_POINTS).arm("after_snapshot")
    with pytest.raises(SettingsError, match="after_snapshot"):
        Faults(WORKER_POINTS).arm("after_snapshot")


@pytest.mark.parametrize("action", ["explode", "KILL", ""])
def test_arming_an_unknown_action_raises_settings_error_naming_it(
    faults: Faults, action: str
) -> None:
    with pytest.raises(SettingsError, match=f"unknown fault action {action!r}"):
        faults.arm("after_embed", action=action)  # type: ignore[arg-type]
    assert not faults._armed
    faults.hit("after_embed")  # nothing was armed: returns at once


def build_note_never() -> dict[str, object]:
    raise AssertionError("a note was built for a hit that fired nothing")


def test_hits_do_nothing_while_disarmed(faults: Faults) -> None:
    for point in (*WORKER_POINTS, "not_a_point"):
        faults.hit(point, note=build_note_never)
    assert faults.stalls == 0
    assert not faults.model_fail


def timed_hit(faults: Faults, point: str) -> float:
    t0 = time.monotonic()
    faults.hit(point)
    return time.monotonic() - t0


# Whether a hit stalled is read from ``stalls`` (counted before the sleep); elapsed
# time is only checked from below, so a busy machine cannot make these tests flaky.
def test_a_stall_fires_on_the_after_th_hit_only_then_disarms(faults: Faults) -> None:
    faults.arm("after_embed", action="stall", after=3, stall_s=STALL_S)
    faults.hit("after_embed")
    faults.hit("after_produce")  # another point: its hits do not count down this one
    faults.hit("after_embed")
    assert faults.stalls == 0
    assert timed_hit(faults, "after_embed") >= STALL_S  # the third hit of the point
    assert faults.stalls == 1
    assert not faults._armed
    faults.hit("after_embed")  # fired once, then disarmed
    assert faults.stalls == 1


@pytest.mark.parametrize("after", [1, 0, -3])
def test_a_stall_armed_with_after_one_or_less_fires_on_the_next_hit(
    faults: Faults, after: int
) -> None:
    faults.arm("after_flush", action="stall", after=after, stall_s=STALL_S)
    assert timed_hit(faults, "after_flush") >= STALL_S
    assert faults.stalls == 1


def test_arming_a_point_again_restarts_its_countdown(faults: Faults) -> None:
    faults.arm("after_embed", action="stall", after=2, stall_s=STALL_S)
    faults.hit("after_embed")
    faults.arm("after_embed", action="stall", after=2, stall_s=STALL_S)
    faults.hit("after_embed")
    assert faults.stalls == 0
    assert timed_hit(faults, "after_embed") >= STALL_S
    assert faults.stalls == 1


def test_disarm_clears_every_point_and_the_model_failure(faults: Faults) -> None:
    faults.arm("after_embed", action="stall", stall_s=STALL_S)
    faults.arm("after_flush", action="kill")
    faults.arm("model_fail")
    faults.disarm()
    assert not faults._armed
    assert not faults.model_fail
    faults.hit("after_embed")
    faults.hit("after_flush")  # would SIGKILL this test process if still armed
    assert faults.stalls == 0


def test_model_fail_is_armed_by_name_on_any_actor() -> None:
    for points in (WORKER_POINTS, LEARNER_POINTS):
        faults = Faults(points)
        assert not faults.model_fail
        faults.arm("model_fail")
        assert faults.model_fail
        assert not faults._armed  # not a countdown point


def test_a_kill_sigkills_the_process_after_writing_its_note(tmp_path: Path) -> None:
    notes = tmp_path / "notes"  # created by the fault
    code = textwrap.dedent(
        """
        import sys
        from streamlabel.chaos.faults import WORKER_POINTS, Faults

        faults = Faults(WORKER_POINTS, notes_dir=sys.argv[1])
        faults.arm("after_flush", action="kill", after=2)
        faults.hit("after_flush", note=lambda: {"offsets": {"sl.items:0": [10, 17]}, "n": 8})
        print("survived the first hit", flush=True)
        faults.hit("after_flush", note=lambda: {"offsets": {"sl.items:0": [18, 25]}, "n": 8})
        print("survived the second hit", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(notes)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.splitlines() == ["survived the first hit"]
    assert [p.name for p in notes.iterdir()] == ["fault-after_flush.json"]
    note = json.loads((notes / "fault-after_flush.json").read_text())
    assert note == {"offsets": {"sl.items:0": [18, 25]}, "n": 8}  # the note of the fatal hit


# ---------------------------------------------------------------- embedder
MARKED = f"java maven {MODEL_FAIL_MARKER} spring"
TEXTS = ["python list dict", "sql join index", "css grid layout"]


def test_the_faulty_embedder_forwards_dim_and_model_id(faults: Faults) -> None:
    wrapped = FaultyEmbedder(HashEmbedder(dim=32), faults)
    assert (wrapped.dim, wrapped.model_id) == (32, "hash-bow-32")


def test_disarmed_the_faulty_embedder_passes_every_text_through(faults: Faults) -> None:
    wrapped = FaultyEmbedder(HashEmbedder(dim=32), faults)
    got = wrapped.embed([*TEXTS, MARKED])
    want = HashEmbedder(dim=32).embed([*TEXTS, MARKED])
    assert got.shape == (4, 32)
    np.testing.assert_array_equal(got, want)


def test_armed_it_raises_only_for_batches_holding_the_marker(faults: Faults) -> None:
    inner = HashEmbedder(dim=32)
    wrapped = FaultyEmbedder(inner, faults)
    faults.arm("model_fail")  # after wrapping: read at every call
    np.testing.assert_array_equal(wrapped.embed(TEXTS), HashEmbedder(dim=32).embed(TEXTS))
    calls = inner.calls
    with pytest.raises(EmbeddingError, match="injected fault"):
        wrapped.embed([TEXTS[0], MARKED, TEXTS[1]])
    with pytest.raises(EmbeddingError):
        wrapped.embed([MARKED])
    assert inner.calls == calls  # the model is never asked
    faults.disarm()
    assert wrapped.embed([MARKED]).shape == (1, 32)


# ------------------------------------------------------------ in an Engine
TEACH = {
    "python": ["python list dict pandas", "python numpy pip django", "python flask decorator"],
    "java": ["java jvm spring maven", "java gradle hibernate jar", "java servlet tomcat jvm"],
}


def raw(item_id: str, text: str, offset: int) -> RawRecord:
    return RawRecord(
        encode(Item(id=item_id, text=text)),
        SourceRef(topic="sl.items", partition=2, offset=offset),
        key=item_id.encode(),
    )


@pytest.fixture
def engine(faults: Faults) -> Engine:
    engine = Engine(
        load_settings(drift={"enabled": False}),
        FaultyEmbedder(HashEmbedder(dim=64), faults),
        clock=ManualClock(1_000.0),
    )
    engine.learn([Feedback(text=t, label=c) for c, texts in TEACH.items() for t in texts])
    return engine


def test_an_engine_dead_letters_exactly_the_marked_item_and_labels_the_rest(
    engine: Engine, faults: Faults
) -> None:
    faults.arm("model_fail")
    batch = [
        raw("a", "python pandas numpy list", 30),
        raw("b", "java spring maven jar", 31),
        raw("m", f"python dict {MODEL_FAIL_MARKER}", 32),
        raw("c", "python django flask", 33),
        raw("d", "java hibernate tomcat", 34),
    ]
    out = engine.process(batch)
    assert [(r.item_id, r.label) for r in out.labels] == [
        ("a", "python"),
        ("b", "java"),
        ("c", "python"),
        ("d", "java"),
    ]
    assert len(out.dead_letters) == 1
    dead = out.dead_letters[0]
    assert dead.reason == "embedding"
    assert dead.source == SourceRef(topic="sl.items", partition=2, offset=32)
    assert dead.value == batch[2].value


def test_an_engine_isolates_every_marked_item_of_a_batch(engine: Engine, faults: Faults) -> None:
    faults.arm("model_fail")
    marked = {40, 45, 46}
    batch = [
        raw(f"i{o}", f"java jvm {MODEL_FAIL_MARKER}" if o in marked else "python pip list", o)
        for o in range(40, 48)
    ]
    out = engine.process(batch)
    assert sorted(d.source.offset for d in out.dead_letters if d.source) == sorted(marked)
    assert {d.reason for d in out.dead_letters} == {"embedding"}
    assert [r.source.offset for r in out.labels if r.source] == [41, 42, 43, 44, 47]


def test_a_disarmed_engine_labels_the_marked_text_like_any_other(
    engine: Engine, faults: Faults
) -> None:
    faults.arm("model_fail")
    faults.disarm()
    out = engine.process([raw("m", f"java spring maven {MODEL_FAIL_MARKER}", 50)])
    assert out.dead_letters == []
    assert [(r.item_id, r.label) for r in out.labels] == [("m", "java")]


def test_deployed_actors_have_no_fault_injection_and_a_no_op_probe() -> None:
    from streamlabel.workers.learner import Learner
    from streamlabel.workers.probe import NO_PROBE
    from streamlabel.workers.stream_worker import StreamWorker

    for actor in (StreamWorker, Learner):
        assert not hasattr(actor, "arm_fault")
        assert not hasattr(actor, "pid")
    NO_PROBE.hit("after_embed", build_note_never)  # returns without building the note


def test_chaos_actors_arm_the_points_of_their_role() -> None:
    from streamlabel.chaos.actors import CHAOS_ACTORS, ChaosLearner, ChaosStreamWorker

    assert CHAOS_ACTORS.worker is ChaosStreamWorker
    assert CHAOS_ACTORS.learner is ChaosLearner
    for actor in (ChaosStreamWorker, ChaosLearner):
        assert callable(actor.arm_fault)
        assert callable(actor.pid)


def test_nothing_outside_chaos_can_kill_or_arm_a_fault() -> None:
    import streamlabel

    root = Path(streamlabel.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for path in root.rglob("*.py")
        if "chaos" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "arm_fault" in line or "os.kill" in line
    ]
    assert offenders == []


def test_the_chaos_harness_starts_chaos_actors_with_small_batches(tmp_path: Path) -> None:
    from streamlabel.chaos.actors import CHAOS_ACTORS
    from streamlabel.chaos.harness import ChaosConfig, Harness, chaos_settings

    s = chaos_settings(2)
    assert s.worker.batch_size * (s.supervisor.workers + 1) < 400  # the per-fault bound can fail
    assert Harness(ChaosConfig(dataset=tmp_path), s).runtime.actors == CHAOS_ACTORS
