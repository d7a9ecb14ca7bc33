"""Runs chaos scenarios on one deployment and builds the report."""

from __future__ import annotations

import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from streamlabel.chaos.harness import ChaosConfig, Harness, chaos_settings
from streamlabel.chaos.ledger import Verdict
from streamlabel.chaos.scenarios import SCENARIOS
from streamlabel.chaos.validation import settings_validation
from streamlabel.errors import SettingsError

__all__ = ["ORDER", "QUICK", "run_chaos"]

log = structlog.get_logger(__name__)

ORDER = (
    "worker_kill", "rebalance_churn", "learner_crash", "poison", "learner_poison",
    "feedback_by_id", "unpublishable", "corrupt_snapshot", "two_learners", "crash_loop", "stall",
    "deterministic_replay", "settings", "topic_recreate", "broker_restart",
)  # fmt: skip
"""Every scenario, in the order they run (the broker restart wipes the broker: last)."""

QUICK = ("worker_kill", "learner_crash", "poison", "learner_poison", "feedback_by_id",
         "unpublishable",
         "corrupt_snapshot", "two_learners", "stall", "deterministic_replay", "settings",
         "topic_recreate", "broker_restart")  # fmt: skip
"""The subset ``make test`` runs (one cycle each; ``crash_loop`` and ``rebalance_churn``
take minutes and run in the full suite, ``make chaos``)."""


def run_chaos(
    config: ChaosConfig, names: Sequence[str] = ORDER, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Runs ``names`` (in :data:`ORDER`) on one deployment; returns the report.

    Raises:
        SettingsError: an unknown scenario name.
    """
    unknown = [n for n in names if n not in ORDER]
    if not names:
        raise SettingsError(f"no chaos scenario given; known: {', '.join(ORDER)}")
    if unknown:
        raise SettingsError(
            f"unknown chaos scenario(s) {', '.join(unknown)}; known: {', '.join(ORDER)}"
        )
    chosen = [n for n in ORDER if n in names]
    verdicts: list[Verdict] = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamlabel-chaos-") as state:
        say(f"starting a deployment: embedded broker, local Ray, {config.workers} workers, learner")
        with Harness(config, chaos_settings(config.workers, state)) as h:
            say(f"ready in {time.monotonic() - t_start:.0f}s; scenarios: {', '.join(chosen)}")
            for name in chosen:
                t0 = time.monotonic()
                try:
                    verdict = settings_validation(h) if name == "settings" else SCENARIOS[name](h)
                except Exception as exc:
                    log.error("chaos_scenario_failed", scenario=name, exc_info=True)
                    h.fault_marks = []  # charged to nobody: the next scenario starts clean
                    verdict = Verdict(name, 0, 0, 0, 0, False, {
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-2000:],
                    })  # fmt: skip
                verdict.name = "settings_validation" if name == "settings" else name
                verdict.details["seconds"] = round(time.monotonic() - t0, 1)
                verdicts.append(verdict)
                say(_line(verdict))
    return {
        "scenarios": [v.as_dict() for v in verdicts],
        "lost_total": sum(v.lost for v in verdicts),
        "passed": bool(verdicts) and all(v.passed for v in verdicts),
        "seconds": round(time.monotonic() - t_start, 1),
    }


def _line(v: Verdict) -> str:
    status = "PASS" if v.passed else "FAIL"
    extra = {k: v.details[k] for k in ("seconds", "error") if k in v.details}
    return (
        f"{status}  {v.name:<22} inputs {v.inputs:>5}  lost {v.lost}  duplicates {v.duplicates}"
        f"  unexpected {v.unexpected}  {extra}"
    )
