"""The console's web app over views read from an in-memory deployment: pages and
sections render, actions send commands through the control-plane client and show
the learner's answer, the live stream yields events, the token gate holds."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from console_records import TOPICS, broker
from starlette.testclient import TestClient

from streamlabel.kafka.control import Client
from streamlabel.schemas.commands import Command
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.testing.broker import CommandResponder, MemoryBroker, rejected
from streamlabel.ui.app import create_app
from streamlabel.ui.auth import COOKIE
from streamlabel.ui.console import Console
from streamlabel.ui.feed import ConsoleFeed


class Deployment:
    def __init__(self, token: str | None = None, stats: dict | None = None) -> None:
        self.broker: MemoryBroker = broker()
        self.learner = CommandResponder(self.broker, TOPICS, self._decide)
        self.feed = ConsoleFeed(KafkaSettings(), consumers=self.broker.consumer)
        self.feed.read_to_end()
        client = Client("127.0.0.1:9092", issued_by="console", consumers=self.broker.consumer,
                        producers=self.broker.producer, command_timeout_s=5)  # fmt: skip
        provider = (lambda: stats) if stats is not None else None
        self.console = Console(self.feed.views, client, provider, interval_s=0.01)
        self.http = TestClient(create_app(self.console, token=token))

    def _decide(self, command: Command):  # type: ignore[no-untyped-def]
        if command.kind == "merge" and command.target == command.class_id:
            return rejected(command, "a class cannot merge into itself")
        from streamlabel.testing.broker import applied

        return applied(command)


@pytest.fixture
def dep() -> Iterator[Deployment]:
    d = Deployment(stats={"lag": {"sl.items:1": 7, "sl.items:0": 3}, "restarts": 2, "workers": 2})
    yield d
    d.http.close()


@pytest.mark.parametrize("path", ["/", "/classes", "/unknowns", "/map", "/drift"])
def test_every_page_renders_with_its_navigation_and_no_external_asset(
    dep: Deployment, path: str
) -> None:
    r = dep.http.get(path)
    assert r.status_code == 200
    for name in ("Overview", "Classes", "Unknowns", "Map", "Drift"):
        assert f">{name}</a>" in r.text
    assert 'src="http' not in r.text
    assert 'href="http' not in r.text
    assert "/static/vendor/htmx.min.js" in r.text


def test_the_classes_page_shows_the_discovered_class_awaiting_review_first(
    dep: Deployment,
) -> None:
    html = dep.http.get("/classes").text
    assert html.index('data-class-id="d-7"') < html.index('data-class-id="c1"')
    assert "1 awaiting review" in html
    assert "card, stolen" in html
    assert "billing example 0" in html  # recent examples
    assert "history (1)" in html


def test_the_unknowns_page_lists_items_with_their_nearest_classes(dep: Deployment) -> None:
    html = dep.http.get("/unknowns").text
    assert html.count('class="unknown-row"') == 3
    assert "unknown text 12" in html
    assert "billing <small>0.310</small>" in html


def test_the_drift_page_shows_one_incident_with_evidence_shares_and_examples(
    dep: Deployment,
) -> None:
    html = dep.http.get("/drift").text
    assert html.count('<article class="incident') == 1
    assert "signal 0" in html
    assert "signal 1" in html
    assert "billing" in html
    assert "-40.0 pts" in html
    assert "my &lt;b&gt;card&lt;/b&gt; broke" in html  # item texts are escaped


def test_the_overview_shows_lag_per_partition_and_restarts_from_the_runtime(
    dep: Deployment,
) -> None:
    html = dep.http.get("/").text
    assert "<th>sl.items:0</th><td>3</td>" in html
    assert "<th>sl.items:1</th><td>7</td>" in html
    assert '<td data-s="restarts">2</td>' in html
    assert dep.http.get("/api/overview").json()["stats"]["lag_total"] == 10


def test_without_a_stats_provider_the_runtime_readings_are_not_available() -> None:
    d = Deployment()
    html = d.http.get("/").text
    assert '<td data-s="restarts">n/a</td>' in html
    assert d.http.get("/api/overview").json()["stats"] is None


def test_the_map_json_counts_the_points_the_page_announces(dep: Deployment) -> None:
    data = dep.http.get("/map.json").json()
    assert data["counts"] == {"prototype": 2, "exemplar": 6, "unknown": 3}
    assert len(data["x"]) == len(data["y"]) == len(data["text"]) == 11
    assert 'data-points="11"' in dep.http.get("/map").text


def test_a_rename_is_sent_as_a_command_and_its_result_shown(dep: Deployment) -> None:
    r = dep.http.post("/actions/rename", data={"class_id": "d-7", "name": "stolen-card"})
    assert 'data-status="applied"' in r.text
    assert "classes-changed" in r.headers["hx-trigger"]
    (command,) = dep.learner.commands
    assert (command.kind, command.class_id, command.name, command.issued_by) == (
        "rename", "d-7", "stolen-card", "console")  # fmt: skip
    assert dep.learner.keys == [b"d-7"]


def test_teaching_selected_unknowns_sends_one_teach_with_every_item(dep: Deployment) -> None:
    r = dep.http.post("/actions/teach", data={"label": "fraud", "item_ids": ["i10", "i12"]})
    assert 'data-status="applied"' in r.text
    (command,) = dep.learner.commands
    assert (command.kind, command.label, command.item_ids) == ("teach", "fraud", ("i10", "i12"))


@pytest.mark.parametrize(
    ("verb", "form", "kind"),
    [
        ("merge", {"class_id": "d-7", "target": "c1"}, "merge"),
        ("retire", {"class_id": "d-7"}, "retire"),
        ("add_class", {"name": "refunds", "description": "money back"}, "add_class"),
        ("threshold", {"class_id": "c1", "value": "0.42"}, "set_threshold"),
    ],
)
def test_each_action_sends_its_command(
    dep: Deployment, verb: str, form: dict[str, str], kind: str
) -> None:
    r = dep.http.post(f"/actions/{verb}", data=form)
    assert 'data-status="applied"' in r.text
    assert [c.kind for c in dep.learner.commands] == [kind]


def test_a_rejected_command_shows_the_learners_reason(dep: Deployment) -> None:
    r = dep.http.post("/actions/merge", data={"class_id": "c1", "target": "c1"})
    assert 'data-status="rejected"' in r.text
    assert "cannot merge into itself" in r.text
    assert "hx-trigger" not in r.headers


def test_an_incomplete_form_sends_nothing_and_says_what_is_missing(dep: Deployment) -> None:
    r = dep.http.post("/actions/teach", data={"label": "fraud"})
    assert "teach needs at least one item" in r.text
    r = dep.http.post("/actions/explode", data={"class_id": "c1"})
    assert "no such action" in r.text
    assert dep.learner.commands == []


def test_the_live_stream_yields_update_events_with_the_overview_series(
    dep: Deployment,
) -> None:
    with dep.http.stream("GET", "/events?page=overview&limit=1") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    assert body.startswith("event: update\ndata: ")
    payload = json.loads(body.split("data: ", 1)[1])
    assert payload["overview"]["items_total"] == 13
    assert payload["versions"]["classes"] == 2
    assert {m["kind"] for m in payload["marks"]} == {"incident", "discovery"}
    assert payload["stats"]["restarts"] == 2


def test_the_stream_sends_again_only_when_something_changed(dep: Deployment) -> None:
    """Two events were asked for; the second comes only after a record arrives."""
    import threading

    from streamlabel.testing.records import label

    def later() -> None:
        import time

        time.sleep(0.3)
        dep.console.views.take("labels", label("late", "c1", emitted_at=2000.0))

    threading.Thread(target=later).start()
    with dep.http.stream("GET", "/events?page=classes&limit=2") as r:
        body = "".join(r.iter_text())
    events = [json.loads(p.split("\n")[0]) for p in body.split("data: ")[1:]]
    assert [e["overview"]["items_total"] for e in events] == [13, 14]
    assert "series" not in events[0]["overview"]  # only the overview draws the series


def test_a_section_fragment_renders_alone(dep: Deployment) -> None:
    r = dep.http.get("/fragments/classes")
    assert r.status_code == 200
    assert "<html" not in r.text
    assert "classes-table" in r.text
    assert dep.http.get("/fragments/nothing").status_code == 404


def test_with_a_token_a_request_without_it_is_refused() -> None:
    d = Deployment(token="s3cret")
    for path in ("/", "/classes", "/events", "/map.json", "/static/app.css"):
        assert d.http.get(path).status_code == 401, path
    assert d.http.post("/actions/retire", data={"class_id": "c1"}).status_code == 401
    assert d.learner.commands == []
    assert d.http.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_with_a_token_the_bearer_header_or_the_cookie_set_once_admits() -> None:
    d = Deployment(token="s3cret")
    assert d.http.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    r = d.http.get("/classes?token=s3cret&x=1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/classes?x=1"
    assert f"{COOKIE}=s3cret" in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"]
    assert d.http.get("/classes").status_code == 200  # the client kept the cookie
    assert d.http.get("/static/vendor/uPlot.min.css").status_code == 200
