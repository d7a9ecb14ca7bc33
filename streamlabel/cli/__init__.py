"""The ``streamlabel`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from streamlabel import __version__
from streamlabel.errors import SettingsError, StreamlabelError

if TYPE_CHECKING:
    import numpy as np

    from streamlabel.bench.openworld import SeedResult
    from streamlabel.core.embedder import SentenceTransformerEmbedder
    from streamlabel.datasets import LabelledTexts
    from streamlabel.pipeline import EngineSettings


def _seeds(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds must be comma-separated integers, got {value!r}"
        ) from None


def _int_list(value: str) -> list[int]:
    try:
        out = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,2 got {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return out


def _ratio(value: str) -> float:
    x = float(value)
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return x


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(prog="streamlabel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    ow = bench.add_parser("openworld", help="open-world accuracy on a labelled TSV dataset")
    ow.add_argument("--train", required=True, help="TSV with header text<TAB>label")
    ow.add_argument("--test", required=True, help="TSV with header text<TAB>label")
    ow.add_argument("--known-ratio", type=_ratio, default=0.75)
    ow.add_argument("--labeled-ratio", type=_ratio, default=0.1)
    ow.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    ow.add_argument("--batch-size", type=int, default=64)
    ow.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    ow.add_argument("--quiet", action="store_true", help="no progress lines")
    ow.add_argument(
        "--mode",
        choices=["engine", "kafka", "both"],
        default="engine",
        help="engine: the Engine in-process; kafka: through the embedded broker and Ray actors",
    )
    ow.add_argument("--workers", type=int, default=None, help="stream workers (kafka mode)")
    os_ = bench.add_parser(
        "openset", help="open intent detection: known classes fully labelled, the rest is open"
    )
    os_.add_argument("--train", required=True, help="TSV with header text<TAB>label")
    os_.add_argument("--test", required=True, help="TSV with header text<TAB>label")
    os_.add_argument("--known-ratio", type=_ratio, default=0.75)
    os_.add_argument("--seeds", type=_seeds, default=[0, 1, 2])
    os_.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    rb = bench.add_parser("runtime", help="end-to-end items/s vs bare encode, rebalance, memory")
    rb.add_argument("--train", default="data/stackoverflow/train.tsv", help="feedback source")
    rb.add_argument("--test", default="data/stackoverflow/test.tsv", help="texts to stream")
    rb.add_argument("--items", type=int, default=3000)
    rb.add_argument("--workers", type=_int_list, default=[1, 2], help="e.g. 1,2")
    rb.add_argument("--no-rebalance", action="store_true")
    rb.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    tp = bench.add_parser(
        "throughput", help="e2e items/s vs the bare model, latency p50/p99, per-stage breakdown"
    )
    tp.add_argument("--data", default="data/stackoverflow/test.tsv", help="texts to stream (TSV)")
    tp.add_argument("--train", default="data/stackoverflow/train.tsv", help="feedback source")
    tp.add_argument("--items", type=_positive, default=2000)
    tp.add_argument("--workers", type=_positive, default=2)
    tp.add_argument("--paced-s", type=float, default=20.0, help="seconds of the latency stream")
    tp.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    sc = bench.add_parser("scale", help="store cost vs classes, discovery cost vs buffer size")
    sc.add_argument("--classes", type=_int_list, default=[10, 1000, 100000])
    sc.add_argument("--buffers", type=_int_list, default=[500, 1000, 2000, 5000])
    sc.add_argument(
        "--embed-ms", type=float, default=None,
        help="the model's ms per item (bench throughput: stages.embed) to express "
        "classification as a share of embedding",
    )  # fmt: skip
    sc.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    chaos = sub.add_parser("chaos", help="fault injection on a real deployment: prove no loss")
    chaos.add_argument(
        "--scenarios", type=_names, default=None,
        help="comma-separated subset of: worker_kill, rebalance_churn, learner_crash, poison, "
        "stall, deterministic_replay, settings, broker_restart (default: all)",
    )  # fmt: skip
    chaos.add_argument("--cycles", type=int, default=10, help="kill/churn cycles per fault point")
    chaos.add_argument("--items", type=int, default=400, help="items produced per cycle")
    chaos.add_argument("--workers", type=int, default=2, help="stream workers")
    chaos.add_argument("--dataset", default="data/stackoverflow", help="dir with train/test.tsv")
    chaos.add_argument("--seed", type=int, default=0)
    chaos.add_argument("--json", action="store_true", help="print the report as the last line")

    replay = sub.add_parser("replay", help="relabel an offset range against a pinned snapshot")
    replay.add_argument("--snapshot", required=True, help="a learner snapshot file")
    replay.add_argument("--partition", type=int, required=True)
    replay.add_argument("--from", dest="start", type=int, required=True, help="first offset")
    replay.add_argument("--to", dest="end", type=int, required=True, help="last offset + 1")
    _common(replay)

    demo = sub.add_parser("demo", help="the whole system on a dataset, no infrastructure needed")
    demo.add_argument("--dataset", default="data/stackoverflow", help="dir with train/test.tsv")
    demo.add_argument("--workers", type=int, default=None, help="stream workers (default 2)")
    demo.add_argument("--items", type=int, default=3000, help="items to stream")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    _common(demo)

    run = sub.add_parser("run", help="run the deployment (settings from a file and env vars)")
    run.add_argument("--workers", type=int, default=None, help="override runtime.workers")
    run.add_argument("--progress-every", type=float, default=10.0, help="seconds between logs")
    _common(run)

    produce = sub.add_parser("produce", help="send a TSV's rows as items (some as feedback)")
    produce.add_argument("--tsv", required=True, help="TSV with header text<TAB>label")
    produce.add_argument("--feedback-fraction", type=_fraction, default=0.0)
    produce.add_argument("--limit", type=int, default=None, help="rows to send")
    produce.add_argument("--seed", type=int, default=0)
    _common(produce)

    tail = sub.add_parser("tail", help="print labels, alerts or class events as JSON lines")
    tail.add_argument("topic", choices=["labels", "alerts", "classes"])
    tail.add_argument("--limit", type=int, default=None, help="stop after N records")
    tail.add_argument("--idle-exit", type=float, default=None, help="stop after S idle seconds")
    _common(tail)

    drain = sub.add_parser(
        "drain", help="ask the actor or driver behind a local endpoint to stop (a preStop hook)"
    )
    drain.add_argument("--port", type=int, required=True, help="its metrics.port (+ role offset)")
    drain.add_argument("--host", default="127.0.0.1")
    drain.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it")
    drain.add_argument(
        "--span", type=_positive, default=1, help="drain ports PORT..PORT+SPAN-1 at once (a pod "
        "holding several stream workers)",
    )  # fmt: skip

    health = sub.add_parser("healthcheck", help="exit 0 when a local endpoint is healthy")
    health.add_argument("--port", type=int, default=9464, help="default: the driver's port")
    health.add_argument("--host", default="127.0.0.1")
    health.add_argument("--path", default="/healthz", choices=["/healthz", "/readyz"])
    return parser


def _names(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return n


def _fraction(value: str) -> float:
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return x


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="settings file (TOML or JSON)")
    p.add_argument("--bootstrap-servers", default=None, help="Kafka host:port[,host:port]")
    p.add_argument("--topic-prefix", default=None, help="topic name prefix (default 'sl.')")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamlabel`` console script."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench" and args.bench == "openworld":
            return _bench_openworld(args)
        if args.command == "bench" and args.bench == "openset":
            return _bench_openset(args)
        if args.command == "bench" and args.bench == "runtime":
            return _bench_runtime(args)
        if args.command == "bench" and args.bench == "throughput":
            return _bench_throughput(args)
        if args.command == "bench" and args.bench == "scale":
            from streamlabel.bench.scale import run_scale_bench

            scale = run_scale_bench(args.classes, args.buffers, embed_ms_per_item=args.embed_ms)
            if args.json:
                print(json.dumps(scale))
            return 0
        if args.command == "chaos":
            return _chaos(args)
        if args.command in ("drain", "healthcheck"):
            return _endpoint_command(args)
        from streamlabel.cli import runtime as commands

        handlers = {
            "demo": commands.cmd_demo,
            "run": commands.cmd_run,
            "produce": commands.cmd_produce,
            "tail": commands.cmd_tail,
            "replay": commands.cmd_replay,
        }
        return handlers[args.command](args)
    except StreamlabelError as exc:
        print(f"streamlabel: error: {exc}", file=sys.stderr)
        return 2
    return 1


def _endpoint_command(args: argparse.Namespace) -> int:
    """``drain`` and ``healthcheck``: light clients of an actor's endpoint (no Ray, no Kafka)."""
    from streamlabel.ops.endpoint import check_health, drain_ports

    if args.command == "drain":
        ok, what = drain_ports(args.host, range(args.port, args.port + args.span), args.timeout)
    else:
        ok, what = check_health(f"http://{args.host}:{args.port}{args.path}")
    print(what, file=sys.stderr)
    return 0 if ok else 1


class _BenchData(NamedTuple):
    settings: EngineSettings
    embedder: SentenceTransformerEmbedder
    train: LabelledTexts
    test: LabelledTexts
    train_vectors: np.ndarray
    test_vectors: np.ndarray
    embed_seconds: float


def _bench_data(args: argparse.Namespace, say: Callable[[str], None]) -> _BenchData:
    """Settings, the model the settings name, and ``--train``/``--test`` read and embedded once."""
    from streamlabel.core.embedder import SentenceTransformerEmbedder
    from streamlabel.datasets import read_tsv
    from streamlabel.logging import configure_logging
    from streamlabel.pipeline import load_settings

    configure_logging(json_logs=False, level="warning")
    settings = load_settings()
    train, test = read_tsv(args.train), read_tsv(args.test)
    m = settings.model
    embedder = SentenceTransformerEmbedder(
        m.path, device=m.device, batch_size=m.batch_size, max_seq_length=m.max_seq_length
    )
    say(f"embedding {len(train) + len(test)} texts with {embedder.model_id} ...")
    t0 = time.perf_counter()
    train_vectors = embedder.embed(train.texts)
    test_vectors = embedder.embed(test.texts)
    embed_seconds = time.perf_counter() - t0
    say(f"embedded at {(len(train) + len(test)) / embed_seconds:.0f} texts/s")
    return _BenchData(settings, embedder, train, test, train_vectors, test_vectors, embed_seconds)


def _bench_openworld(args: argparse.Namespace) -> int:
    from streamlabel.bench.openworld import format_table, run_seed, summarize

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    d = _bench_data(args, say)
    modes = ["engine", "kafka"] if args.mode == "both" else [args.mode]
    summaries: dict[str, dict[str, float]] = {}
    per_item = d.embed_seconds / (len(d.train) + len(d.test))
    for mode in modes:
        if mode == "engine":
            results = [
                run_seed(
                    d.train,
                    d.test,
                    d.train_vectors,
                    d.test_vectors,
                    settings=d.settings,
                    embedder=d.embedder,
                    seed=seed,
                    known_ratio=args.known_ratio,
                    labeled_ratio=args.labeled_ratio,
                    batch_size=args.batch_size,
                    progress=say,
                )
                for seed in args.seeds
            ]
        else:
            results = _kafka_seeds(args, d.train, d.test, d.train_vectors, d.test_vectors, say)
        for r in results:
            for cid, name, count in sorted(r.discovered, key=lambda d: -d[2]):
                say(f"  seed {r.seed} ({mode}): discovered {cid} {name!r} ({count} examples)")
        summaries[mode] = summarize(results, per_item)
        print(f"== {mode} mode")
        print(format_table(results, summaries[mode]))
    if args.json:
        print(json.dumps(summaries[modes[0]] if len(modes) == 1 else summaries))
    return 0


def _bench_openset(args: argparse.Namespace) -> int:
    from streamlabel.bench.openset import format_openset, run_openset_seed, summarize_openset

    d = _bench_data(args, lambda msg: print(msg, file=sys.stderr, flush=True))
    results = [
        run_openset_seed(
            d.train,
            d.test,
            d.train_vectors,
            d.test_vectors,
            settings=d.settings,
            embedder=d.embedder,
            seed=seed,
            known_ratio=args.known_ratio,
        )
        for seed in args.seeds
    ]
    summary = summarize_openset(results)
    print(format_openset(results, summary))
    if args.json:
        print(json.dumps(summary))
    return 0


def _bench_runtime(args: argparse.Namespace) -> int:
    from streamlabel.bench.runtime import run_runtime_bench
    from streamlabel.datasets import read_tsv
    from streamlabel.logging import configure_logging
    from streamlabel.settings.runtime import load_runtime_settings

    configure_logging(json_logs=False, level="warning")
    settings = load_runtime_settings(runtime={"log_level": "warning"})
    result = run_runtime_bench(
        settings, read_tsv(args.train), read_tsv(args.test), items=args.items,
        worker_counts=args.workers, rebalance=not args.no_rebalance,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0


def _bench_throughput(args: argparse.Namespace) -> int:
    from streamlabel.bench.throughput import run_throughput_bench
    from streamlabel.datasets import read_tsv
    from streamlabel.logging import configure_logging
    from streamlabel.settings.runtime import load_runtime_settings

    configure_logging(json_logs=False, level="warning")
    # logical CPUs for a local Ray: every worker and the learner fit whatever the count
    cpus = max(os.cpu_count() or 1, args.workers + 1)
    settings = load_runtime_settings(runtime={"log_level": "warning"}, ray={"num_cpus": cpus})
    result = run_throughput_bench(
        settings, read_tsv(args.train), read_tsv(args.data), items=args.items,
        workers=args.workers, paced_s=args.paced_s,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0


def _chaos(args: argparse.Namespace) -> int:
    from streamlabel.chaos import ORDER, run_chaos
    from streamlabel.chaos.harness import ChaosConfig
    from streamlabel.logging import configure_logging

    dataset = Path(args.dataset)
    if not (dataset / "train.tsv").is_file() or not (dataset / "test.tsv").is_file():
        raise SettingsError(f"--dataset {args.dataset!r} needs train.tsv and test.tsv")
    if args.cycles < 1 or args.items < 10 or args.workers < 1:
        raise SettingsError("--cycles and --workers must be >= 1, --items >= 10")
    configure_logging(json_logs=False, level="warning")
    config = ChaosConfig(
        dataset=dataset, cycles=args.cycles, items_per_cycle=args.items, workers=args.workers,
        seed=args.seed,
    )  # fmt: skip
    report = run_chaos(config, args.scenarios or ORDER)
    print(
        f"{'PASSED' if report['passed'] else 'FAILED'}: lost {report['lost_total']} in "
        f"{sum(s['inputs'] for s in report['scenarios'])} inputs, {report['seconds']:.0f}s"
    )
    if args.json:
        print(json.dumps(report, default=str))
    return 0 if report["passed"] else 1


def _kafka_seeds(
    args: argparse.Namespace,
    train: LabelledTexts,
    test: LabelledTexts,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    say: Callable[[str], None],
) -> list[SeedResult]:
    """Runs the seeds through one embedded broker and one local Ray."""
    import ray

    from streamlabel.bench.kafka_mode import run_seed_kafka
    from streamlabel.kafka.broker import EmbeddedBroker
    from streamlabel.runtime.supervisor import init_ray
    from streamlabel.settings.runtime import load_runtime_settings

    runtime: dict[str, object] = {"log_level": "warning"}
    if args.workers is not None:
        runtime["workers"] = args.workers
    settings = load_runtime_settings(runtime=runtime)
    broker = None
    if settings.kafka.bootstrap_servers is None:
        broker = EmbeddedBroker().start()
        settings = settings.model_copy(
            update={
                "kafka": settings.kafka.model_copy(
                    update={"bootstrap_servers": broker.bootstrap_servers}
                )
            }
        )
    started_ray = init_ray(settings)
    try:
        return [
            run_seed_kafka(
                train,
                test,
                train_vectors,
                test_vectors,
                settings=settings,
                seed=seed,
                known_ratio=args.known_ratio,
                labeled_ratio=args.labeled_ratio,
                progress=say,
            )
            for seed in args.seeds
        ]
    finally:
        if started_ray:
            ray.shutdown()
        if broker is not None:
            broker.stop()

