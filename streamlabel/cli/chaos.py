"""The ``streamlabel chaos`` command: the fault-injection suite on a real deployment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamlabel.errors import SettingsError

__all__ = ["cmd_chaos"]


def cmd_chaos(args: argparse.Namespace) -> int:
    """``streamlabel chaos``: the fault-injection suite; exit 0 when nothing was lost."""
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
