"""The dashboard and the alert rules name only metrics (and labels) the code exports.

A renamed metric would otherwise leave an empty panel or an alert that can
never fire. The exported names come from the real exporters
(:mod:`streamlabel.ops.metrics`) fed with stats that fill every family.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streamlabel.ops.metrics import (
    STAGES,
    ActorMetrics,
    driver_families,
    learner_families,
    worker_families,
)

K8S = Path(__file__).resolve().parents[3] / "k8s"
# PromQL words that look like metric names but are not
_PROMQL = {
    "sum", "max", "min", "avg", "rate", "increase", "by", "without", "and", "or", "unless",
    "histogram_quantile", "absent", "deriv", "le", "label_values", "count", "topk", "bool",
}  # fmt: skip
# labels Prometheus adds to every scraped series (PodMonitor targets)
_TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "le"}


def _exported() -> dict[str, set[str]]:
    """``{sample name: label names}`` over the worker, learner and driver exporters."""
    worker: dict[str, Any] = {
        "items": 1, "lag": {"sl.items:0": 3}, "dead_letter_reasons": {"invalid": 1},
        "classes_by_status": {"known": 2}, "assigned": ["sl.items:0"],
    }  # fmt: skip
    learner = {"lag": 2, "classes_by_status": {"known": 2}, "alerts_by_kind": {"embedding": 1}}
    driver = {
        "workers": 2, "lag": 5, "restarts": {"worker-0": 0}, "hung": {"worker-0": 0},
        "exhausted": {"worker-0": 0},
    }  # fmt: skip
    names: dict[str, set[str]] = {}
    for actor, families, stats in (
        ("worker-0", worker_families, worker),
        ("learner", learner_families, learner),
        ("driver", driver_families, driver),
    ):
        m = ActorMetrics(actor, lambda s=stats: s, families)
        m.observe_batch(dict.fromkeys(STAGES, 0.01), 0.1)
        for family in text_string_to_metric_families(m.exposition().decode()):
            for s in family.samples:
                names.setdefault(s.name, set()).update(s.labels)
    return names


EXPORTED = _exported()


def _exprs_of_dashboard() -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "query") and isinstance(value, str) and "(" in value:
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads((K8S / "dashboards" / "streamlabel.json").read_text()))
    return found


def _exprs_of_rules() -> list[str]:
    rule = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    return [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]


def _metrics_in(expr: str) -> list[tuple[str, set[str]]]:
    """``(metric, label keys in its selector)`` for every metric an expression names."""
    out = []
    for m in re.finditer(r"\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?", expr):
        name, selector = m.group(1), m.group(2) or ""
        if name in _PROMQL or not name.startswith(("streamlabel_", "process_")):
            continue
        out.append((name, set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!=|!~|=)", selector))))
    return out


@pytest.mark.parametrize("expr", [*_exprs_of_dashboard(), *_exprs_of_rules()], ids=lambda e: e[:60])
def test_every_metric_and_label_in_a_query_is_exported(expr: str) -> None:
    metrics = _metrics_in(expr)
    assert metrics, f"no streamlabel metric in {expr!r}"
    for name, labels in metrics:
        assert name in EXPORTED, f"{name} is not exported (query: {expr})"
        unknown = labels - EXPORTED[name] - _TARGET_LABELS
        assert not unknown, f"{name} has no label {unknown} (query: {expr})"
    for by in re.findall(r"by\s*\(([^)]*)\)", expr):
        keys = {k.strip() for k in by.split(",")} - _TARGET_LABELS
        have = set().union(*(EXPORTED[n] for n, _ in metrics))
        assert keys <= have, f"grouping by {keys - have} that no metric carries: {expr}"


def test_the_rules_cover_the_failures_the_guide_names() -> None:
    rule = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {
        "StreamlabelDriverDown", "StreamlabelNotLabelling", "StreamlabelLagHigh",
        "StreamlabelActorRestarting", "StreamlabelDeadLetters", "StreamlabelBrokerReset",
    } <= alerts  # fmt: skip
    for g in rule["spec"]["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in {"critical", "warning", "info"}
            assert r["annotations"]["summary"]
