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
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamlabel.datasets import read_tsv
from streamlabel.kafka.broker import free_port

pytestmark = pytest.mark.integration

SNIPS = Path(__file__).resolve().parents[2] / "data" / "snips" / "test.tsv"


class Deployment:
    """``streamlabel run`` in a subprocess, and the CLI pointed at its broker."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLABEL_")}
        self.env.pop("RAY_ADDRESS", None)
        # the learner's endpoint is metrics.port + 1; a drained learner comes back at once
        self.env["STREAMLABEL_METRICS__PORT"] = str(self.metrics_port)
        self.env["STREAMLABEL_SUPERVISOR__DRAINED_NODE_WAIT_S"] = "0"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlabel.cli", "run", "--workers", "2",
             "--embedded-port", str(self.port)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for_bootstrap(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"run exited {self.proc.returncode}"
                continue
            if line.startswith("bootstrap:"):
                return line.split(":", 1)[1].strip()
        raise AssertionError("run printed no bootstrap line")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cli(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "streamlabel.cli", *argv, "--bootstrap-servers",
             self.bootstrap],
            env=self.env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check:
            assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stderr}"
        return proc

    def json_lines(self, *argv: str) -> list[dict[str, Any]]:
        out = self.cli(*argv, "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def topic(self, name: str) -> list[dict[str, Any]]:
        return self.json_lines("tail", name, "--from-beginning", "--idle-exit", "3")

    def latest_labels(self) -> dict[str, dict[str, Any]]:
        """Each item's label of highest revision."""
        latest: dict[str, dict[str, Any]] = {}
        for r in self.topic("labels"):
            seen = latest.get(r["item_id"])
            if seen is None or r["revision"] >= seen["revision"]:
                latest[r["item_id"]] = r
        return latest

    def versions(self) -> dict[str, int]:
        """Each class's last store version, every class included."""
        states = self.json_lines("classes", "list", "--all")
        return {s["class_id"]: s["updated_version"] for s in states}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _until(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every_s)


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
def deployment(tmp_path: Path):
    d = Deployment(tmp_path)
    try:
        assert d.wait_for_bootstrap(300) == d.bootstrap
        yield d
    finally:
        d.stop()


def test_the_whole_loop_through_the_command_line(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    snips = read_tsv(SNIPS)
    truth = {f"s{i}": label for i, label in enumerate(snips.labels)}
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(snips.texts))
    )

    # 1. items without labels go in; with no class yet they are unknown
    d.cli("produce", str(items))
    sample = _until("unknown items", lambda: d.json_lines("unknowns", "sample", "--n", "5"), 240)
    assert all(s["item_id"] in truth and s["text"] for s in sample)

    # 2. discovery turns the pile into classes
    def discovered() -> list[dict[str, Any]]:
        states = d.json_lines("classes", "list")
        found = [s for s in states if s["origin"] == "discovery" and s["status"] != "retired"]
        return found if len(found) >= 2 else []

    found = _until("two discovered classes", discovered, 300, every_s=5)
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

    latest = _until("revised labels", labels_settled, 120)
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

    _until("every item's feedback absorbed", every_example_absorbed, 180)
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

    labelled = _until("labels of the items sent after the commands", after_labels, 180)
    assert all(r["store_version"] >= final_version for r in labelled)
    # each worker's own endpoint (metrics.port + 2, + 3) reports the store it holds
    for port in (d.metrics_port + 2, d.metrics_port + 3):
        assert _store_version(port) >= final_version
    assert not any(r["label"] in {second, "weather"} for r in labelled)

    # 8. a learner restarted (drained, then relaunched) re-applies nothing
    before = d.topic("command_results")
    versions_before = {
        s["class_id"]: s["updated_version"] for s in d.json_lines("classes", "list", "--all")
    }
    learner_port = str(d.metrics_port + 1)
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

    _until("the relaunched learner", learner_back, 180)
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
