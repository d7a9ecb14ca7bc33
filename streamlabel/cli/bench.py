"""The ``streamlabel bench`` commands: ``openworld``, ``openset``, ``runtime``,
``throughput`` and ``scale``.

Each reads its arguments, runs a benchmark from :mod:`streamlabel.bench`
(imported on first use) and prints its table, or one JSON object as the last
line with ``--json``; it returns the exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

    from streamlabel.bench.openworld import SeedResult
    from streamlabel.core.embedder import SentenceTransformerEmbedder
    from streamlabel.datasets import LabelledTexts
    from streamlabel.pipeline import EngineSettings

__all__ = ["cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> int:
    """``streamlabel bench <name>``: runs the benchmark ``args.bench``."""
    commands = {
        "openworld": _bench_openworld,
        "openset": _bench_openset,
        "runtime": _bench_runtime,
        "throughput": _bench_throughput,
        "scale": _bench_scale,
    }
    return commands[args.bench](args)


def _bench_scale(args: argparse.Namespace) -> int:
    from streamlabel.bench.scale import run_scale_bench

    scale = run_scale_bench(
        args.classes, args.buffers, event_classes=args.event_classes, events=args.events,
        embed_ms_per_item=args.embed_ms,
    )  # fmt: skip
    if args.json:
        print(json.dumps(scale))
    return 0


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
    embedder = SentenceTransformerEmbedder(m.path, **m.embedder_options())
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
    settings = load_runtime_settings(logging={"level": "warning"})
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
    settings = load_runtime_settings(logging={"level": "warning"}, ray={"num_cpus": cpus})
    result = run_throughput_bench(
        settings, read_tsv(args.train), read_tsv(args.data), items=args.items,
        workers=args.workers, paced_s=args.paced_s,
        loads=tuple(float(x) for x in args.loads.split(",")), tick_ms=args.tick_ms,
        console=args.console,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result))
    return 0


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
    from streamlabel.runtime.ray_env import init_ray
    from streamlabel.settings.runtime import load_runtime_settings

    supervisor = {} if args.workers is None else {"workers": args.workers}
    settings = load_runtime_settings(logging={"level": "warning"}, supervisor=supervisor)
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
