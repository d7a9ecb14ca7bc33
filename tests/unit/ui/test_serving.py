"""Serving the console: the feed fills the views (once, or following), the report is
one self-contained file, the vendored libraries match their manifest, a console
beyond loopback needs a token, and a served one answers 401 without it."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import pytest
from console_records import TOPICS, alert, broker, views

from streamlabel.errors import BrokerError, SettingsError
from streamlabel.schemas import encode
from streamlabel.settings.kafka import KafkaSettings
from streamlabel.settings.runtime import load_runtime_settings
from streamlabel.settings.ui import UISettings
from streamlabel.testing.broker import MemoryBroker
from streamlabel.testing.records import label
from streamlabel.ui.assets import vendor_manifest
from streamlabel.ui.feed import ConsoleFeed
from streamlabel.ui.report import render_report
from streamlabel.ui.server import check_exposure, serve_console


def test_the_feed_reads_every_topic_to_its_end_and_counts_dead_letters() -> None:
    feed = ConsoleFeed(KafkaSettings(), consumers=broker().consumer)
    v = feed.read_to_end()
    o = v.overview()
    assert (o["items_total"], o["dead_letters"], o["incidents"]) == (13, 1, 1)
    assert {c.state.class_id for c in v.classes()} == {"c1", "d-7"}


def test_the_feed_skips_a_fenced_learners_class_events() -> None:
    from console_records import class_event

    b = broker()
    b.append(TOPICS.classes, b"c1", encode(class_event("c1", "new", version=7)),
             headers=[("learner.epoch", b"3")])  # fmt: skip
    b.append(TOPICS.classes, b"c1", encode(class_event("c1", "zombie", version=9)),
             headers=[("learner.epoch", b"2")])  # fmt: skip
    v = ConsoleFeed(KafkaSettings(), consumers=b.consumer).read_to_end()
    assert next(c for c in v.classes() if c.state.class_id == "c1").state.name == "new"


def test_the_feed_follows_new_records_in_its_thread() -> None:
    b = broker()
    feed = ConsoleFeed(KafkaSettings(), consumers=b.consumer, poll_ms=10).start()
    try:
        b.append(TOPICS.labels, b"late", encode(label("late", "c1", emitted_at=3000.0)))
        b.append(TOPICS.alerts, None, encode(alert("z", 0, incident="inc-2")))
        deadline = time.monotonic() + 5
        while feed.views.overview()["items_total"] < 14 or len(feed.views.incident_list()) < 2:
            assert time.monotonic() < deadline, "the feed did not follow"
            time.sleep(0.02)
    finally:
        feed.stop()
    assert not feed.running


def test_the_feed_says_which_topic_is_missing() -> None:
    b = MemoryBroker({"sl.labels": 1})
    with pytest.raises(BrokerError, match=r"sl\.unknowns"):
        ConsoleFeed(KafkaSettings(), consumers=b.consumer).read_to_end()


def test_the_report_is_one_self_contained_file_with_every_section() -> None:
    html = render_report(views(), source="127.0.0.1:9092")
    assert 'src="http' not in html
    assert 'href="http' not in html
    assert "<link" not in html
    assert not re.search(r"<script[^>]+src=", html)
    for section in ('id="classes"', 'id="map-part"', 'id="unknowns"', 'id="drift"'):
        assert section in html
    assert 'data-points="11"' in html
    assert "slMap.render" in html
    assert "uPlot" in html  # inlined
    assert "hx-post" not in html  # no actions in a report
    assert "</script" not in html.split('id="map-data">', 1)[1].split("</script>", 1)[0]


def test_the_report_stays_small_for_many_classes_and_unknowns() -> None:
    from console_records import class_event

    from streamlabel.schemas import UnknownRecord

    v = views()
    for c in range(20):
        v.take("classes", class_event(f"k{c}", f"class {c}", version=10 + c, exemplars=40))
    for i in range(10_000):
        v.take("labels", label(f"x{i}", f"k{i % 20}", emitted_at=5000.0 + i / 100))
    for i in range(2_000):
        v.take("unknowns", UnknownRecord(item_id=f"u{i}", text="t " * 50, vector=[0.1] * 8,
                                         score=0.1, store_version=1))  # fmt: skip
    assert len(render_report(v).encode()) < 5_000_000


def test_the_vendored_libraries_match_their_pinned_sha256() -> None:
    files = vendor_manifest()
    assert {f.name for f in files} >= {"htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css"}
    for f in files:
        assert re.fullmatch(r"[a-z0-9.]+@\d+\.\d+\.\d+", f.package), f.package
        assert f.actual_sha256() == f.sha256, f"{f.name}: run make ui-assets"


def test_a_console_beyond_loopback_needs_a_token() -> None:
    check_exposure(UISettings())
    check_exposure(UISettings(host="::1"))
    with pytest.raises(SettingsError, match=r"ui\.token"):
        check_exposure(UISettings(host="0.0.0.0"))
    check_exposure(UISettings(host="0.0.0.0", token="t"))  # type: ignore[arg-type]


def test_the_token_comes_from_the_environment_and_stays_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_UI__TOKEN", "from-env")
    ui = load_runtime_settings().ui
    assert ui.token is not None
    assert ui.token.get_secret_value() == "from-env"
    assert "from-env" not in repr(ui)
    assert (ui.enabled, ui.host, ui.port) == (False, "127.0.0.1", 8765)


def test_a_served_console_answers_401_without_its_token_and_pages_with_it() -> None:
    b = broker()
    from streamlabel.kafka.control import Client

    client = Client("127.0.0.1:9092", consumers=b.consumer, producers=b.producer)
    ui = UISettings(port=0, token="tok")  # type: ignore[arg-type]
    feed = ConsoleFeed(KafkaSettings(), consumers=b.consumer, poll_ms=10)
    running = serve_console(KafkaSettings(), ui, commander=client, feed=feed)
    try:
        assert running.url.startswith("http://127.0.0.1:")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(running.url + "classes", timeout=5)
        assert refused.value.code == 401
        asked = urllib.request.Request(running.url + "classes",
                                       headers={"Authorization": "Bearer tok"})  # fmt: skip
        with urllib.request.urlopen(asked, timeout=5) as r:
            assert r.status == 200
            assert b"classes-table" in r.read()
    finally:
        running.close()
    assert not feed.running
