"""Tuning harness for the open-world learner: cached embeddings, many configs, one table.

Embeds every split of the given datasets once with the bundled model (cached
under ``.cache/embeddings/``), then runs the open-world protocol of
``streamlabel bench openworld`` (engine mode) for each configuration on the
``dev`` split (or ``--split test``), several seeds in parallel processes, and
prints one JSON line per (config, dataset) with the mean scores.

Usage:
    python scripts/tune_openworld.py --datasets hwu64,stackoverflow,snips \
        --config '{"discovery": {"min_cluster_size": 10}}' --config '{}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

CACHE = Path(".cache/embeddings")


def embeddings(data: Path, split: str) -> tuple[list[str], list[str], np.ndarray]:
    from streamlabel.datasets import read_tsv

    rows = read_tsv(data / f"{split}.tsv")
    path = CACHE / f"{data.name}-{split}.npy"
    if path.exists():
        vectors = np.load(path)
        if len(vectors) == len(rows):
            return rows.texts, rows.labels, vectors
    from streamlabel.core.embedder import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(None, device="cpu")
    vectors = embedder.embed(rows.texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return rows.texts, rows.labels, vectors


def one(job: tuple[str, str, dict, int, str]) -> dict:
    data_dir, split, overrides, seed, tag = job
    from streamlabel.datasets import LabelledTexts
    from streamlabel.bench.openworld import run_seed
    from streamlabel.logging import configure_logging
    from streamlabel.pipeline import load_settings
    from streamlabel.testing import HashEmbedder

    configure_logging(json_logs=False, level="error")
    data = Path(data_dir)
    tr_t, tr_l, tr_v = embeddings(data, "train")
    te_t, te_l, te_v = embeddings(data, split)
    settings = load_settings(**overrides)

    class _Dim(HashEmbedder):  # items carry vectors; only the dimension is read
        def __init__(self) -> None:
            super().__init__(dim=tr_v.shape[1])

    t0 = time.perf_counter()
    r = run_seed(
        LabelledTexts(tr_t, tr_l),
        LabelledTexts(te_t, te_l),
        tr_v,
        te_v,
        settings=settings,
        embedder=_Dim(),
        seed=seed,
        known_ratio=0.75,
        labeled_ratio=0.1,
    )
    return {
        "tag": tag,
        "dataset": data.name,
        "seed": seed,
        "final": r.final,
        "first": r.first,
        "found": r.novel_found,
        "true": r.novel_true,
        "diag": r.diagnostics,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data")
    p.add_argument("--datasets", default="hwu64,stackoverflow,snips")
    p.add_argument("--split", default="dev")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--config", action="append", default=None, help="JSON settings overrides")
    p.add_argument("--tag", action="append", default=None)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--per-seed", action="store_true")
    args = p.parse_args()
    configs = [json.loads(c) for c in (args.config or ["{}"])]
    tags = args.tag or [json.dumps(c, separators=(",", ":")) for c in configs]
    datasets = [Path(args.data) / d for d in args.datasets.split(",")]
    for d in datasets:  # fill the cache in this process first
        for split in ("train", args.split):
            embeddings(d, split)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [
        (str(d), args.split, c, s, t)
        for c, t in zip(configs, tags, strict=True)
        for d in datasets
        for s in seeds
    ]
    with ProcessPoolExecutor(args.procs) as pool:
        results = list(pool.map(one, jobs))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["tag"], r["dataset"]), []).append(r)
        if args.per_seed:
            print(json.dumps(r), file=sys.stderr)
    for (tag, ds), rs in groups.items():
        mean = {k: round(float(np.mean([r["final"][k] for r in rs])), 1) for k in rs[0]["final"]}
        diag = {
            k: round(float(np.mean([r["diag"][k] for r in rs])), 3)
            for k in rs[0]["diag"]
            if isinstance(rs[0]["diag"][k], int | float)
        }
        out = {
            "tag": tag,
            "dataset": ds,
            **mean,
            "first_acc": round(float(np.mean([r["first"]["acc"] for r in rs])), 1),
            "found": round(float(np.mean([r["found"] for r in rs])), 1),
            "true": rs[0]["true"],
            **diag,
            "sec": round(float(np.mean([r["seconds"] for r in rs])), 1),
        }
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
