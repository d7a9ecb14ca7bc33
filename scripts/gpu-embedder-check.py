"""The embedder's GPU path alone (issue 18): text and token paths, batch sizes, memory.

For a GPU machine that cannot install the worker stack (no network there: Ray,
kafka-python and the broker cannot be fetched), where torch and
sentence-transformers are present. Needs only ``streamlabel.core``:

    python3 scripts/gpu-embedder-check.py --model DIR --texts test.tsv \
        [--ref ref.npy] [--out result.json]

``--ref``: fp32 CPU embeddings of the first rows, to check the bf16 ones against.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from streamlabel.core.embedder import SentenceTransformerEmbedder


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return result, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="local model directory")
    ap.add_argument("--texts", required=True, help="TSV whose first column is the text")
    ap.add_argument("--ref", help="fp32 embeddings of the first rows (.npy)")
    ap.add_argument("--repeat", type=int, default=5, help="passes over the texts")
    ap.add_argument("--out", help="where to write the JSON")
    args = ap.parse_args()
    with open(args.texts, newline="") as f:
        texts = [row[0] for row in csv.reader(f, delimiter="\t")][1:]
    ref = np.load(args.ref) if args.ref else None
    big = texts * args.repeat
    out: dict[str, Any] = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0),
                           "texts": len(big), "runs": []}  # fmt: skip
    for bs in (32, 64, 256, 1024):
        torch.cuda.reset_peak_memory_stats()
        m = SentenceTransformerEmbedder(args.model, device="cuda", batch_size=bs)
        m.embed(texts[:bs])
        emb, seconds = _timed(lambda m=m: m.embed(big))
        tok = m.tokenizer()
        t0 = time.perf_counter()
        tokens = tok.tokenize(big)
        tokenize_s = time.perf_counter() - t0
        m.embed_tokens(tok.tokenize(texts[:bs]))
        _, tokens_s = _timed(lambda m=m, tokens=tokens: m.embed_tokens(tokens))
        calls = {}
        for n in (1, 16, 64):
            times = [_timed(lambda m=m, k=k, n=n: m.embed(texts[k * n : (k + 1) * n]))[1]
                     for k in range(30)]  # fmt: skip
            calls[str(n)] = round(statistics.median(times) * 1e3, 2)
        run = {
            "batch_size": bs,
            "embed_items_per_s": round(len(big) / seconds, 1),
            "tokens_path_items_per_s": round(len(big) / tokens_s, 1),
            "tokenize_cpu_items_per_s_one_thread": round(len(big) / tokenize_s, 1),
            "call_ms_median": calls,
            "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        }
        if ref is not None:
            run["min_cos_vs_ref"] = round(float((emb[: len(ref)] * ref).sum(1).min()), 5)
        print(json.dumps(run), flush=True)
        out["runs"].append(run)
        del m
        torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
