"""``streamlabel demo``: the whole system on a laptop, on a real dataset.

Starts the embedded broker, a local Ray and the actors (bundled model), then
plays a stream built from a ``text<TAB>label`` dataset:

* a quarter of the classes are held back (never taught);
* a tenth of the taught classes' training texts arrive as feedback first;
* the stream starts with taught classes only; late in the stream the held-back
  classes arrive in force (the shift): the unknown rate jumps, the drift
  detectors raise an alert, discovery turns the new clusters into classes and
  the items labelled ``unknown`` before get revised labels;
* some items are confirmed by id on the feedback topic while the stream flows.

It shows live progress and ends with the classes it discovered (names,
keywords, examples, and which held-back class each one matches).

Progress goes to stdout, each start-up step with the seconds elapsed. The logs
of the driver, the actors and the libraries (Ray forwards the actors' lines)
go to a log file instead of the console
(:data:`streamlabel.cli.progress.LOGS_HELP`); its path is the first line printed.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamlabel.cli.progress import ProgressStream
from streamlabel.cli.runtime import settings_from_args
from streamlabel.datasets import DemoPlan, plan_demo, read_tsv
from streamlabel.errors import SettingsError, StreamlabelError
from streamlabel.kafka.client import (
    LabelCollector,
    TopicReader,
    produce_feedback,
    produce_items,
)
from streamlabel.logging import configure_logging
from streamlabel.runtime.startup import StepReporter, no_steps
from streamlabel.runtime.supervisor import Runtime
from streamlabel.schemas import UNKNOWN, DriftAlert
from streamlabel.scoring import open_world_scores
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["cmd_demo", "run_demo"]


def cmd_demo(args: Any) -> int:
    """``streamlabel demo``: embedded broker + local Ray + bundled model on a dataset."""
    dataset = Path(args.dataset)
    if not dataset.is_dir():
        raise SettingsError(f"--dataset {args.dataset!r} is not a directory")
    settings = settings_from_args(args)
    lg = settings.logging
    progress = ProgressStream()
    fd, log_path = tempfile.mkstemp(prefix="streamlabel-demo-", suffix=".log")
    with open(fd, "a", encoding="utf-8") as log_file:
        progress.say(f"logs: {log_path}")
        configure_logging(json_logs=lg.json_lines, level=lg.level, libraries=lg.libraries,
                          stream=log_file)  # fmt: skip
        try:
            with contextlib.redirect_stderr(log_file):  # what Ray forwards from the actors
                summary = run_demo(settings, dataset, n_items=args.items, seed=args.seed,
                                   say=progress.say, step=progress.step,
                                   console=True)  # fmt: skip
        finally:  # anything logged from now on (an error, at exit) to the console
            configure_logging(json_logs=lg.json_lines, level="warning", libraries="error")
    progress.say(f"== logs: {log_path}")
    if args.json:
        print(json.dumps({k: round(v, 2) for k, v in summary.items()}))
    return 0


def run_demo(
    settings: RuntimeSettings,
    dataset: Path,
    *,
    n_items: int = 3000,
    seed: int = 0,
    say: Callable[[str], None] = print,
    step: StepReporter = no_steps,
    interval_s: float = 2.0,
    console: bool = False,
) -> dict[str, float]:
    """Runs the demo; returns the summary numbers.

    ``say`` prints a progress line; ``step`` is told each start-up step; ``console``
    serves the web console (on ``ui.port``, another free port when it is taken).
    """
    train_path, test_path = dataset / "train.tsv", dataset / "test.tsv"
    for p in (train_path, test_path):
        if not p.is_file():
            raise SettingsError(f"--dataset {str(dataset)!r} has no {p.name} (text<TAB>label)")
    plan = plan_demo(read_tsv(train_path), read_tsv(test_path), n_items=n_items, seed=seed)
    if settings.kafka.bootstrap_servers is not None:  # a shared broker: topics of its own
        run = uuid.uuid4().hex[:8]
        kafka = settings.kafka.model_copy(
            update={"topic_prefix": f"demo-{run}.", "group_id": f"demo-{run}"}
        )
        settings = settings.model_copy(update={"kafka": kafka})
    say(
        f"dataset {dataset}: {len(plan.known)} classes taught with {len(plan.feedback)} "
        f"labelled examples, {len(plan.held_back)} held back ({', '.join(plan.held_back)})"
    )
    say(
        f"streaming {len(plan.items)} items; the held-back classes arrive after item "
        f"{plan.shift_at}"
    )
    with Runtime(settings, on_step=step) as rt:
        kafka = rt.settings.kafka
        say(f"ready: broker {kafka.bootstrap_servers}, {len(rt.workers)} stream workers, 1 learner")
        readings: dict[str, Any] = {}
        ui = _open_console(rt.settings, readings, say) if console else None
        produce_feedback(kafka, plan.feedback)
        say(f"teaching {len(plan.feedback)} labelled examples through the feedback topic ...")
        rt.wait_until_learned(len(plan.feedback))
        t0 = time.monotonic()
        produced: list[int] = []

        def produce() -> None:
            produced.append(produce_items(kafka, plan.items, chunk=200))

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        collector = LabelCollector(kafka)
        ids = set(plan.truth)
        confirmed = False
        last = 0.0
        while not ids <= collector.first.keys():
            collector.poll(timeout_ms=200)
            rt.check()
            if not producer.is_alive() and not produced:
                raise StreamlabelError("the demo's producer thread failed (see its traceback)")
            if not confirmed and len(collector.first) >= plan.shift_at // 2:
                produce_feedback(kafka, plan.confirm)
                confirmed = True
            if time.monotonic() - last >= interval_s:
                last = time.monotonic()
                reading = rt.progress()
                readings.update(reading.console_readings())
                say(reading.line())
            if time.monotonic() - t0 > 1800:
                raise StreamlabelError("the demo stream did not finish in 30 minutes")
        stream_s = time.monotonic() - t0
        say(rt.progress().line())
        say("stream labelled; letting discovery run on the last unknowns ...")
        rt.finish_discovery()
        collector.drain(quiet_s=3.0)
        final = rt.progress()
        classes = rt.call_learner("classes")
        alerts = _alerts(rt)
        collector.close()
        if ui is not None:
            ui.close()
    return _summary(plan, collector, classes, alerts, final.learner, stream_s, say)


def _open_console(settings: RuntimeSettings, readings: dict[str, Any],
                  say: Callable[[str], None]) -> Any:  # fmt: skip
    """The web console on the demo's topics (its URL said), or None when it cannot start."""
    from streamlabel.ui.server import serve_console

    try:
        ui = serve_console(settings.kafka, settings.ui, stats=lambda: readings or None,
                           any_port_if_taken=True)  # fmt: skip
    except StreamlabelError as exc:
        say(f"console: not started ({exc})")
        return None
    say(f"console: {ui.url}")
    return ui


def _alerts(rt: Runtime) -> list[DriftAlert]:
    reader = TopicReader(rt.settings.kafka, "alerts")
    try:
        out: list[DriftAlert] = []
        for _ in range(5):
            out.extend(r for r in reader.records(timeout_ms=300) if isinstance(r, DriftAlert))
        return out
    finally:
        reader.close()


def _incidents(alerts: list[DriftAlert]) -> list[DriftAlert]:
    """The latest alert of each incident (an alert of none stands alone), oldest first."""
    latest: dict[str, DriftAlert] = {}
    for a in alerts:
        key = a.incident_id or a.alert_id
        if key not in latest or a.incident_update >= latest[key].incident_update:
            latest[key] = a
    return list(latest.values())


def _summary(
    plan: DemoPlan,
    collector: LabelCollector,
    classes: list[dict[str, object]],
    alerts: list[DriftAlert],
    learner: dict[str, object],
    stream_s: float,
    say: Callable[[str], None],
) -> dict[str, float]:
    ids = list(plan.truth)
    final = [collector.final[i].label if i in collector.final else UNKNOWN for i in ids]
    first = [collector.first[i].label if i in collector.first else UNKNOWN for i in ids]
    truth = [plan.truth[i] for i in ids]
    scores = open_world_scores(truth, final, set(plan.known))
    first_scores = open_world_scores(truth, first, set(plan.known))
    revised = sum(1 for i in ids if i in collector.final and collector.final[i].revision > 0)
    say("")
    say(f"== {len(ids)} items labelled in {stream_s:.1f}s ({len(ids) / stream_s:.1f} items/s "
        f"end to end); {revised} labels revised after discovery or feedback")  # fmt: skip
    say(
        f"== first labels: ACC {first_scores['acc']:.1f}; final labels: ACC {scores['acc']:.1f} "
        f"NMI {scores['nmi']:.1f} ARI {scores['ari']:.1f} (known {scores['known_acc']:.1f}, "
        f"new {scores['novel_acc']:.1f})"
    )
    found = [c for c in classes if c["origin"] == "discovery" and c["status"] != "retired"]
    say(f"== {len(found)} classes discovered (held back: {', '.join(plan.held_back)})")
    for c in sorted(found, key=lambda c: -int(str(c["count"]))):
        members = [plan.truth[i] for i in ids if collector.final.get(i) and
                   collector.final[i].label == c["class_id"]]  # fmt: skip
        top, n = Counter(members).most_common(1)[0] if members else ("-", 0)
        purity = n / len(members) if members else 0.0
        say(f"  {c['class_id']}  {c['name']!r}  keywords {', '.join(map(str, c['keywords']))}")  # type: ignore[call-overload]
        say(f"      {len(members)} items, {purity:.0%} of them '{top}'")
        for text in list(c["examples"])[:3]:  # type: ignore[call-overload]
            say(f"      e.g. {text}")
    incidents = _incidents(alerts)
    say(f"== {len(incidents)} drift incidents ({len(alerts)} alerts: each signal opens or "
        "updates one)")  # fmt: skip
    for a in incidents:
        update = f" (update {a.incident_update})" if a.incident_update else ""
        say(f"  [{a.severity}] {a.incident_id or a.kind}{update} at item {a.at_item}: {a.detail}")
    return {
        "items": float(len(ids)),
        "items_per_s": len(ids) / stream_s,
        "acc": scores["acc"],
        "nmi": scores["nmi"],
        "ari": scores["ari"],
        "first_acc": first_scores["acc"],
        "discovered": float(len(found)),
        "alerts": float(len(alerts)),
        "incidents": float(len(incidents)),
        "dead_letters": float(int(str(learner.get("dead_letters", 0)))),
    }
