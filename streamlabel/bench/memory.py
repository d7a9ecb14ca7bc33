"""What one class costs in memory: in a store's RAM, in a snapshot, on the changelog.

Pure core, no broker and no model: ``classes`` classes of synthetic unit
vectors of the model's dimension (384), each taught a full reservoir
(``store.exemplar_capacity`` examples) through the store's public API. Reported
per class: the resident memory (RSS) a learner's store grows by, the same for a
replica that applies the decoded class events, the bytes of a full snapshot
and of one class event.

Run it as ``python -m streamlabel.bench.memory --classes 1000``: each role is
measured in a fresh interpreter (RSS is the process's, and memory freed by one
role would be reused by the next).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from typing import Any

import msgpack
import numpy as np

from streamlabel.core.store import PrototypeStore
from streamlabel.schemas import ClassEvent, ClassState, decode, encode
from streamlabel.settings.engine import EngineSettings

__all__ = ["class_memory", "rss_bytes"]

DIM = 384


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def class_memory(classes: int, *, role: str = "learner", seed: int = 0) -> dict[str, Any]:
    """What ``classes`` full classes cost this process (run each role in a fresh one).

    Args:
        role: ``learner`` teaches a store every class through :meth:`PrototypeStore.learn`
            and also reports the snapshot and event bytes; ``replica`` applies
            the decoded class events (what a stream worker does at start-up).

    Returns:
        ``rss_per_class_kb`` and, for the learner, ``snapshot_bytes_per_class`` and
        ``event_bytes`` (one class event on the wire).
    """
    settings = EngineSettings()
    config = settings.store.to_config(settings.seed)
    rng = np.random.default_rng(seed)
    examples = config.exemplar_capacity
    row: dict[str, Any] = {"role": role, "classes": classes, "exemplars": examples, "dim": DIM}
    raw_events = [] if role == "learner" else [_event(k, rng, examples) for k in range(classes)]
    gc.collect()
    before = rss_bytes()
    store = PrototypeStore(DIM, config, clock=time.time)
    for k in range(classes):
        if role == "learner":
            x = _examples(rng, examples)
            event = store.learn(f"c{k}", x, [f"example {i}" for i in range(examples)])
        else:
            store.apply(decode(raw_events[k], ClassEvent, max_bytes=64 * 1024 * 1024))
    gc.collect()
    row["rss_per_class_kb"] = round((rss_bytes() - before) / classes / 1024, 1)
    if role == "learner":
        snapshot = {k: v for k, v in store.snapshot().items() if k != "metric"}  # per store
        row["snapshot_bytes_per_class"] = len(msgpack.packb(snapshot)) // classes
        row["event_bytes"] = len(encode(event))
    return row


def _examples(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _event(k: int, rng: np.random.Generator, examples: int) -> bytes:
    """A full class's ``created`` event on the wire (built without a store)."""
    x = _examples(rng, examples)
    state = ClassState.model_validate({
        "class_id": f"c{k}", "name": f"c{k}", "status": "known", "origin": "feedback",
        "count": examples, "mean": x.mean(axis=0), "exemplars": x,
        "exemplar_texts": [f"example {i}" for i in range(examples)],
        "created_version": k + 1, "updated_version": k + 1, "created_at": 0.0, "updated_at": 0.0,
    })  # fmt: skip
    return encode(ClassEvent(kind="created", class_id=state.class_id, state=state,
                             store_version=k + 1))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Prints one JSON line per role, each measured in a fresh interpreter."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--role", choices=["learner", "replica"])
    args = parser.parse_args(argv)
    if args.role:
        print(json.dumps(class_memory(args.classes, role=args.role)))
        return 0
    for role in ("learner", "replica"):
        cmd = [sys.executable, "-m", "streamlabel.bench.memory", "--classes", str(args.classes)]
        subprocess.run([*cmd, "--role", role], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
