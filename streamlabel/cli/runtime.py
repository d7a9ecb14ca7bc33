"""The runtime's CLI commands: ``run``, ``produce``, ``tail``, ``replay``, and
``drain``/``healthcheck`` for a running deployment's endpoints.

:mod:`streamlabel.cli.main` parses arguments and dispatches here; each function
turns its arguments into settings once (file < env < flags) and returns an exit
code.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import structlog

from streamlabel.cli.progress import ProgressStream
from streamlabel.datasets import FileFormat, JsonFields, read_items, to_records
from streamlabel.errors import SettingsError
from streamlabel.kafka.client import TopicReader, produce_feedback, produce_items
from streamlabel.kafka.topics import Topics
from streamlabel.logging import configure_logging
from streamlabel.schemas import ClassEvent, Record
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings

__all__ = [
    "cmd_endpoint",
    "cmd_produce",
    "cmd_replay",
    "cmd_run",
    "cmd_tail",
    "settings_from_args",
]

log = structlog.get_logger("streamlabel.cli")


def settings_from_args(args: Any, **extra: Any) -> RuntimeSettings:
    """Runtime settings from ``--config``, the environment and the common flags."""
    overrides: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    if getattr(args, "bootstrap_servers", None):
        kafka["bootstrap_servers"] = args.bootstrap_servers
    if getattr(args, "topic_prefix", None) is not None:
        kafka["topic_prefix"] = args.topic_prefix
    if kafka:
        overrides["kafka"] = kafka
    supervisor: dict[str, Any] = dict(extra.pop("supervisor", {}))
    if getattr(args, "workers", None) is not None:
        supervisor["workers"] = args.workers
    if supervisor:
        overrides["supervisor"] = supervisor
    overrides.update(extra)
    return load_runtime_settings(getattr(args, "config", None), **overrides)


class _Shutdown:
    """SIGTERM/SIGINT set a flag; the main loop then stops everything gracefully."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.install()

    def install(self) -> None:
        """(Re)installs the handlers; ``ray.init`` replaces this process's SIGTERM handler."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():  # a second signal: stop waiting
            raise KeyboardInterrupt
        log.warning("shutdown_requested", signal=signal.Signals(signum).name)
        self.requested.set()


SCALE_EVERY_S = 5.0
"""How often ``streamlabel run`` reads the lag for the autoscaler."""


def cmd_run(args: Any) -> int:
    """``streamlabel run``: the production deployment until SIGTERM/SIGINT or ``POST /drain``.

    The supervisor serves its own endpoint (``metrics.port``, role ``driver``):
    ``/metrics`` (workers running and wanted, group lag, restarts), ``/healthz``,
    ``/readyz`` and ``/drain``, which stops the deployment like SIGTERM.

    Output: :data:`streamlabel.cli.progress.RUN_OUTPUT_HELP`.
    """
    from streamlabel.ops.endpoint import Served
    from streamlabel.ops.metrics import driver_families
    from streamlabel.runtime.scaling import LagScaler
    from streamlabel.runtime.supervisor import Runtime

    settings = settings_from_args(args)
    lg = settings.logging
    configure_logging(json_logs=lg.json_lines, level=lg.level, libraries=lg.libraries)
    progress = ProgressStream(json_lines=lg.json_lines)
    shutdown = _Shutdown()
    runtime = Runtime(settings, embedded_port=args.embedded_port, on_step=progress.step)
    state: dict[str, Any] = {}
    endpoint = Served()
    endpoint.init_endpoint(settings.metrics, "driver", "driver", lambda: state, driver_families,
                           shutdown.requested.set)  # fmt: skip
    endpoint.serve()
    health = endpoint.health
    console: Any = None
    readings: dict[str, Any] = {}
    try:
        runtime.start()
        shutdown.install()  # before the line a script may answer with a SIGTERM
        if runtime.broker is not None:  # a line of its own: scripts wait for it
            print(f"bootstrap: {runtime.broker.bootstrap_servers}", flush=True)
        if getattr(args, "ui", False) or settings.ui.enabled:
            console = _serve_console(runtime.settings, readings)
        health.started()
        scaler = LagScaler(runtime) if settings.scaling.enabled else None
        last_progress = last_scale = last_reading = 0.0
        while not shutdown.requested.wait(0.5):
            runtime.check()
            health.beat()
            health.degraded = runtime.health()["exhausted"]
            now = time.monotonic()
            scale_due = scaler is not None and now - last_scale >= SCALE_EVERY_S
            progress_due = now - last_progress >= args.progress_every
            reading_due = console is not None and now - last_reading >= CONSOLE_READING_S
            if not (scale_due or progress_due or reading_due):
                continue
            p = runtime.progress()
            last_reading = now
            readings.update(p.console_readings())
            if scaler is not None and scale_due:
                last_scale = now
                scaler.step(p.lag)
            state.update(
                runtime.supervisor_stats(p),
                workers_desired=scaler.desired if scaler else runtime.worker_count(),
                scale_events=scaler.events if scaler else 0,
            )
            if progress_due:
                last_progress = now
                workers = runtime.worker_count()
                progress.record(
                    "progress", f"{p.line()}  workers {workers}",
                    items=p.items, items_per_s=round(p.items_per_s, 1), lag=p.lag,
                    unknown_rate=round(p.unknown_rate, 4), classes=p.classes,
                    store_version=p.store_version, alerts=p.alerts, incidents=p.incidents,
                    dead_letters=p.dead_letters,
                    restarts=p.restarts, broker_resets=p.broker_resets, workers=workers,
                )  # fmt: skip
    finally:
        health.ready = False  # not ready while the deployment stops
        if console is not None:
            console.close()
        progress.step("stopping (workers, learner, Ray, broker)")
        runtime.stop()
        health.stopped()
        endpoint.close_endpoint()
    return 0


CONSOLE_READING_S = 2.0
"""How often ``streamlabel run --ui`` reads the actors' counters for the console."""


def _serve_console(settings: RuntimeSettings, readings: dict[str, Any]) -> Any:
    """Starts the web console on the deployment's topics; prints its address on a line
    of its own (``console: URL``)."""
    from streamlabel.ui.server import serve_console

    console = serve_console(settings.kafka, settings.ui, stats=lambda: readings or None)
    print(f"console: {console.url}", flush=True)
    return console


def cmd_produce(args: Any) -> int:
    """``streamlabel produce``: a file's items, some labelled ones as feedback instead."""
    settings = settings_from_args(args)
    if settings.kafka.bootstrap_servers is None:
        raise SettingsError(
            "kafka.bootstrap_servers is not set: pass --bootstrap-servers or "
            "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS"
        )
    path = args.file if args.file is not None else args.tsv
    fields = JsonFields(args.id_field, args.text_field, args.label_field, args.vector_field)
    fmt: FileFormat | None = args.format or ("tsv" if args.file is None else None)
    rows = read_items(path, format=fmt, fields=fields)
    if args.limit is not None:
        rows = rows[: max(args.limit, 0)]
    items, feedback = to_records(
        path, rows, feedback_fraction=args.feedback_fraction, seed=args.seed
    )
    produced_fb = produce_feedback(settings.kafka, feedback)
    produced = produce_items(settings.kafka, items)
    print(f"produced {produced} items and {produced_fb} feedback examples", file=sys.stderr)
    return 0


def _printable(record: Record) -> dict[str, Any]:
    if isinstance(record, ClassEvent):
        st = record.state
        return {
            "kind": record.kind, "class_id": record.class_id, "name": st.name,
            "status": st.status, "origin": st.origin, "count": st.count,
            "keywords": list(st.keywords), "store_version": record.store_version,
        }  # fmt: skip
    data: dict[str, Any] = record.model_dump(mode="json", exclude={"timings_ms"})
    for name in ("vector", "exemplars"):
        if isinstance(data.get(name), list):
            data[name] = f"<{len(data[name])} values>"
    return data


def _dead_letter(message: Any) -> dict[str, Any]:
    """A record of the dead-letter topic: where it came from, why, and its bytes."""
    h = {k: v.decode(errors="replace") for k, v in (message.headers or [])}
    value = message.value or b""
    return {
        "source": {"topic": h.get("source.topic"), "partition": h.get("source.partition"),
                   "offset": h.get("source.offset")},
        "reason": h.get("error.reason"), "error": h.get("error.message"),
        "value": value[:300].decode(errors="replace"), "bytes": len(value),
    }  # fmt: skip


def _line(kind: str, data: dict[str, Any]) -> str:
    """One readable line of a record (``tail`` without ``--json``)."""
    if kind == "labels":
        name = data.get("class_name") or data["label"]
        return (f"{data['item_id']}  {name}  score={data['score']:.3f}  "
                f"rev={data['revision']}  store_version={data['store_version']}")  # fmt: skip
    if kind == "classes":
        return (f"{data['kind']}  {data['class_id']}  {data['name']!r}  {data['status']}  "
                f"count={data['count']}  v{data['store_version']}")  # fmt: skip
    if kind == "alerts":
        return f"[{data['severity']}] {data['kind']}: {data['detail']}"
    if kind == "dlq":
        src = data["source"]
        return (f"{src['topic']}:{src['partition']}@{src['offset']}  {data['reason']}: "
                f"{data['error']}")  # fmt: skip
    if kind == "command_results":
        why = f" ({data['reason']})" if data.get("reason") else ""
        return f"{data['command_id']}  {data['kind']}  {data['status']}{why}"
    return json.dumps(data)


def cmd_tail(args: Any, out: Callable[[str], None] = print) -> int:
    """``streamlabel tail TOPIC``: prints a topic's records, one line each (or JSON lines)."""
    settings = settings_from_args(args)
    if settings.kafka.bootstrap_servers is None:
        raise SettingsError(
            "kafka.bootstrap_servers is not set: pass --bootstrap-servers or "
            "STREAMLABEL_KAFKA__BOOTSTRAP_SERVERS"
        )
    reader = TopicReader(settings.kafka, args.topic, from_beginning=args.from_beginning)
    shown = 0
    idle_since = time.monotonic()
    try:
        while args.limit is None or shown < args.limit:
            if args.topic == "dlq":
                rows = [_dead_letter(m) for m in reader.poll(timeout_ms=500)]
            else:
                rows = [_printable(r) for r in reader.records(timeout_ms=500)]
            if rows:
                idle_since = time.monotonic()
            for row in rows:
                out(json.dumps(row) if args.json else _line(args.topic, row))
                shown += 1
                if args.limit is not None and shown >= args.limit:
                    break
            if args.idle_exit is not None and time.monotonic() - idle_since > args.idle_exit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    return 0


def cmd_replay(args: Any, out: Callable[[str], None] = print) -> int:
    """``streamlabel replay``: labels of an offset range against a pinned snapshot (JSON lines,
    printed chunk by chunk as the range is read)."""
    from streamlabel.runtime.replay import iter_replay

    settings = settings_from_args(args)
    configure_logging(json_logs=settings.logging.json_lines, level="warning")
    topic = Topics.of(settings.kafka).items
    labels = iter_replay(settings, args.snapshot, topic, args.partition, args.start, args.end)
    for record in labels:
        out(record.model_dump_json())
    return 0


def cmd_endpoint(args: Any) -> int:
    """``drain`` and ``healthcheck``: light clients of an actor's endpoint (no Ray, no Kafka)."""
    from streamlabel.ops.client import check_health, drain_ports

    if args.command == "drain":
        ok, what = drain_ports(args.host, range(args.port, args.port + args.span), args.timeout)
    else:
        ok, what = check_health(f"http://{args.host}:{args.port}{args.path}")
    print(what, file=sys.stderr)
    return 0 if ok else 1
