"""The open-world loop driven through the command line only (issue 16's end-to-end test).

``streamlabel run`` on embedded defaults with a fixed port; SNIPS items go in as
JSON Lines without labels; then, with ``streamlabel`` commands alone: see the
unknowns, add a class by description, teach by item id, rename and merge the
discovered classes, retire one, and check that every command has an applied
result, the affected labels are revised, both stream workers converge on the
store, feedback by id resolves for items from the whole stream while it is
under load, and a learner restarted by a drain re-applies nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from run_process import RunProcess, until

from streamlabel.datasets import read_tsv
from streamlabel.kafka.broker import free_port

pytestmark = pytest.mark.integration

SNIPS = Path(__file__).resolve().parents[2] / "data" / "snips" / "test.tsv"


def _store_version(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("streamlabel_store_version")
    ]
    assert values, f"no store version on port {port}"
    return max(values)


def _applied(result: dict[str, Any]) -> dict[str, Any]:
    assert result["status"] == "applied", result
    return result


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[RunProcess]:
    metrics_port = free_port()  # the learner's endpoint is + 1, the workers' + 2 and + 3
    d = RunProcess(
        tmp_path / "run.log",
        # a drained learner comes back at once
        env={"STREAMLABEL_METRICS__PORT": str(metrics_port),
             "STREAMLABEL_SUPERVISOR__DRAINED_NODE_WAIT_S": "0"},
    )  # fmt: skip
    try:
        assert d.wait_for("bootstrap:", 300) == d.bootstrap
        yield d
    finally:
        d.stop()


def _versions(d: RunProcess) -> dict[str, int]:
    """Each class's last store version, every class included."""
    return {s["class_id"]: s["updated_version"] for s in d.json_lines("classes", "list", "--all")}


def test_the_whole_loop_through_the_command_line(deployment: RunProcess, tmp_path: Path) -> None:
    d = deployment
    metrics_port = int(d.env["STREAMLABEL_METRICS__PORT"])  # the driver's endpoint
    snips = read_tsv(SNIPS)
    truth = {f"s{i}": label for i, label in enumerate(snips.labels)}
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(snips.texts))
    )

    # 1. items without labels go in; with no class yet they are unknown
    d.cli("produce", str(items))
    sample = until("unknown items", lambda: d.json_lines("unknowns", "sample", "--n", "5"), 240)
    assert all(s["item_id"] in truth and s["text"] for s in sample)

    # 2. discovery turns the pile into classes
    def discovered() -> list[dict[str, Any]]:
        states = d.json_lines("classes", "list")
        found = [s for s in states if s["origin"] == "discovery" and s["status"] != "retired"]
        return found if len(found) >= 2 else []

    found = until("two discovered classes", discovered, 300, every_s=5)
    first, second = found[0]["class_id"], found[1]["class_id"]
    results: list[dict[str, Any]] = []

    # 3. a class from a description, before any example
    added = _applied(
        d.json_lines(
            "classes", "add", "weather",
            "--description", "weather forecast: will it rain, snow or be sunny tomorrow",
        )[0]
    )  # fmt: skip
    results.append(added)

    # 4. teach one item by id: its label is revised to the taught class
    weather_item = next(i for i, lab in truth.items() if lab == "GetWeather")
    results.append(
        _applied(d.json_lines("feedback", "--item", weather_item, "--label", "weather")[0])
    )

    # 5. rename a discovered class; merge another into it; retire the added one
    renamed = _applied(d.json_lines("classes", "rename", first, "first-intent")[0])
    merged = _applied(d.json_lines("classes", "merge", second, first)[0])
    retired = _applied(d.json_lines("classes", "retire", "weather")[0])
    results += [renamed, merged, retired]
    assert renamed["revisions"] > 0  # its items' published labels carry the new name
    assert merged["revisions"] > 0

    states = {s["class_id"]: s for s in d.json_lines("classes", "list", "--all")}
    assert states[first]["name"] == "first-intent"
    assert states[second]["status"] == "retired"
    assert states[second]["merged_into"] == first
    assert states["weather"]["status"] == "retired"
    shown = d.json_lines("classes", "show", "first-intent")[0]
    assert shown["class_id"] == first
    assert {"renamed", "merged"} <= {h["kind"] for h in shown["history"]} | {
        h["cause"] for h in shown["history"]
    }

    def labels_settled() -> dict[str, dict[str, Any]]:
        latest = d.latest_labels()
        done = latest.get(weather_item, {}).get("revision", 0) > 0 and not any(
            r["label"] == second for r in latest.values()
        )
        return latest if done else {}

    latest = until("revised labels", labels_settled, 120)
    assert latest[weather_item]["reason"] in {"feedback", "taught", "operator", "retired"} or (
        latest[weather_item]["revision"] > 0
    )
    assert any(
        r["label"] == first and r["class_name"] == "first-intent" and r["revision"] > 0
        for r in latest.values()
    )

    # 6. under load, feedback by id resolves for items from the whole stream
    more = tmp_path / "more.jsonl"
    more.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "text": t}) + "\n" for i, t in enumerate(snips.texts[:300])
        )
    )
    loader = threading.Thread(target=lambda: d.cli("produce", str(more)))
    loader.start()
    ids = sorted(truth, key=lambda k: int(k[1:]))[::14]  # 50 ids, first to last
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text("".join(json.dumps({"item_id": i, "label": truth[i]}) + "\n" for i in ids))
    taught = d.json_lines("feedback", "--file", str(feedback), "--timeout", "120")
    loader.join()
    assert len(taught) == len(ids)
    for r in taught:
        _applied(r)
    results += taught
    # ... and as plain feedback records for every item of the stream: each resolves
    everything = tmp_path / "everything.jsonl"
    everything.write_text(
        "".join(json.dumps({"item_id": i, "label": lab}) + "\n" for i, lab in truth.items())
    )
    d.cli("feedback", "--file", str(everything), "--no-wait")
    per_label = {lab: sum(1 for v in truth.values() if v == lab) for lab in set(truth.values())}

    def every_example_absorbed() -> bool:
        counts = {s["name"]: s["count"] for s in d.json_lines("classes", "list")}
        return all(counts.get(lab, 0) >= n for lab, n in per_label.items())

    until("every item's feedback absorbed", every_example_absorbed, 180)
    assert not [r for r in d.topic("dlq") if "feedback" in json.dumps(r)]

    # 7. both stream workers converge: new items are labelled on the final store
    final_version = max(r["store_version"] for r in results)
    after = tmp_path / "after.jsonl"
    after.write_text(
        "".join(
            json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(snips.texts[:80])
        )
    )
    d.cli("produce", str(after))

    def after_labels() -> list[dict[str, Any]]:
        latest = d.latest_labels()
        got = [latest[f"a{i}"] for i in range(80) if f"a{i}" in latest]
        return got if len(got) == 80 else []

    labelled = until("labels of the items sent after the commands", after_labels, 180)
    assert all(r["store_version"] >= final_version for r in labelled)
    # each worker's own endpoint (metrics.port + 2, + 3) reports the store it holds
    for port in (metrics_port + 2, metrics_port + 3):
        assert _store_version(port) >= final_version
    assert not any(r["label"] in {second, "weather"} for r in labelled)

    # 8. a learner restarted (drained, then relaunched) re-applies nothing
    before = d.topic("command_results")
    versions_before = {
        s["class_id"]: s["updated_version"] for s in d.json_lines("classes", "list", "--all")
    }
    learner_port = str(metrics_port + 1)
    drain = subprocess.run(
        [sys.executable, "-m", "streamlabel.cli", "drain", "--port", learner_port],
        env=d.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert drain.returncode == 0, drain.stderr

    def learner_back() -> bool:
        check = subprocess.run(
            [sys.executable, "-m", "streamlabel.cli", "healthcheck", "--port", learner_port,
             "--path", "/readyz"],
            env=d.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return check.returncode == 0

    until("the relaunched learner", learner_back, 180)
    probe = _applied(d.json_lines("classes", "rename", first, "first-intent-2")[0])
    after_restart = d.topic("command_results")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in after_restart:
        by_id.setdefault(r["command_id"], []).append(r)
    for r in before:  # any answer given again is the first one, never a second application
        again = by_id[r["command_id"]]
        assert all(a["store_version"] == again[0]["store_version"] for a in again)
        assert all(a["events"] == again[0]["events"] for a in again)
    versions_after = {
        s["class_id"]: s["updated_version"] for s in d.json_lines("classes", "list", "--all")
    }
    changed = {c for c, v in versions_after.items() if versions_before.get(c) != v}
    assert changed == {first}  # only the probe's rename moved a class
    assert probe["store_version"] > max(versions_before.values())
