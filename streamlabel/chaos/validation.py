"""Scenario 8: bad settings fail ``streamlabel run`` at start-up, naming the problem,
with a non-zero exit code and nothing consumed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from streamlabel.chaos.harness import Harness
from streamlabel.chaos.ledger import Ledger, Verdict
from streamlabel.kafka.broker import free_port
from streamlabel.kafka.topics import Topics, ensure_topics
from streamlabel.schemas import Item, encode
from streamlabel.settings.kafka import KafkaSettings

__all__ = ["BAD_SETTINGS", "settings_validation"]

BAD_SETTINGS: list[tuple[str, list[str], dict[str, str], str]] = [
    # (case, extra CLI args, extra env, what the error must name)
    ("wrong_bootstrap", ["--bootstrap-servers", "127.0.0.1:{dead_port}"],
     {"STREAMLABEL_KAFKA__BOOTSTRAP_TIMEOUT_MS": "5000"},
     "kafka.bootstrap_servers"),
    ("unknown_model_path", [], {"STREAMLABEL_MODEL__PATH": "/nonexistent/streamlabel-model"},
     "model.path"),
    ("bad_threshold", [], {"STREAMLABEL_STORE__THRESHOLD_QUANTILE": "0.9"},
     "store.threshold_quantile"),
    ("bad_partitions", [], {"STREAMLABEL_KAFKA__PARTITIONS": "0"}, "kafka.partitions"),
]  # fmt: skip


def settings_validation(h: Harness, timeout_s: float = 120.0) -> Verdict:
    """Runs ``streamlabel run`` with each bad setting against items waiting in its topics."""
    cases: dict[str, dict[str, Any]] = {}
    ledger = Ledger("badcfg-")
    kafka = h.kafka
    for k, (case, args, env, names) in enumerate(BAD_SETTINGS):
        prefix, group = f"badcfg{k}.", f"badcfg{k}"
        own = KafkaSettings(bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix)
        ensure_topics(own, Topics(prefix))
        items = [(f"{ledger.prefix}{k}-{i}", encode(Item(id=f"{k}-{i}", text="waiting")), False)
                 for i in range(5)]  # fmt: skip
        h.produce_into(ledger, prefix, items)
        argv = [a.format(dead_port=free_port()) for a in args]
        if "--bootstrap-servers" not in argv:
            argv += ["--bootstrap-servers", kafka.bootstrap_servers]
        cmd = [sys.executable, "-m", "streamlabel.cli", "run", "--topic-prefix", prefix, *argv]
        t0 = time.monotonic()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s,
            env={**os.environ, "STREAMLABEL_KAFKA__GROUP_ID": group, **env},
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        committed = h.committed(group)
        cases[case] = {
            "exit_code": proc.returncode,
            "names_setting": names in output,
            "committed_offsets": committed,
            "seconds": round(time.monotonic() - t0, 1),
            "error": _error_line(output),
        }
    passed = all(
        c["exit_code"] == 2 and c["names_setting"] and not c["committed_offsets"]
        for c in cases.values()
    )
    consumed = sum(len(c["committed_offsets"]) for c in cases.values())
    return Verdict(
        name="settings_validation",
        inputs=len(ledger),
        lost=0,
        duplicates=0,
        unexpected=consumed,
        passed=passed,
        details={"cases": cases},
    )


def _error_line(output: str) -> str:
    for line in reversed(output.strip().splitlines()):
        if "error" in line.lower():
            return line.strip()[:300]
    return output.strip().splitlines()[-1][:300] if output.strip() else ""
