"""What ``streamlabel chaos`` decides before it starts anything: its settings and the
scenario names. Nothing here may start a deployment (the runner's Harness is replaced
by one that fails the test if it is ever built)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

from streamlabel.chaos import runner
from streamlabel.chaos.harness import ChaosConfig, chaos_settings
from streamlabel.chaos.runner import ORDER, QUICK, run_chaos
from streamlabel.chaos.scenarios import SCENARIOS
from streamlabel.errors import SettingsError
from streamlabel.settings.runtime import RuntimeSettings, load_runtime_settings


def _refuse(*args: object, **kwargs: object) -> NoReturn:
    raise AssertionError("the chaos runner started a deployment")


@pytest.fixture(autouse=True)
def _nothing_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(runner, "Harness", _refuse)
    monkeypatch.setattr(runner, "chaos_settings", _refuse)


# ----------------------------------------------------------------- settings
def test_chaos_settings_are_valid_runtime_settings() -> None:
    s = chaos_settings(2, "/tmp/x")
    assert isinstance(s, RuntimeSettings)
    assert s.supervisor.workers == 2
    assert s.learner.state_dir == "/tmp/x"
    assert s.logging.level == "warning"
    # they survive a round trip through validation (what every actor receives)
    again = load_runtime_settings(None, **s.model_dump(mode="json"))
    assert again.kafka.max_poll_interval_ms == s.kafka.max_poll_interval_ms


def test_chaos_settings_make_a_stall_visible_quickly() -> None:
    s = chaos_settings(2, "/tmp/x")
    limit_s = s.kafka.max_poll_interval_ms / 1e3
    default_limit_s = load_runtime_settings().kafka.max_poll_interval_ms / 1e3
    stall_s = limit_s + 5  # what the stall scenario arms
    assert s.kafka.max_poll_interval_ms < stall_s * 1e3
    assert limit_s < default_limit_s
    assert s.kafka.heartbeat_interval_ms * 3 <= s.kafka.session_timeout_ms


def test_chaos_settings_use_the_production_restart_budget_over_a_short_window() -> None:
    s = chaos_settings(3)
    production = load_runtime_settings().supervisor
    assert s.supervisor.max_restarts == production.max_restarts  # the policy is exercised
    assert s.supervisor.restart_window_s <= 60.0 < production.restart_window_s
    assert s.supervisor.restart_backoff_max_s <= 5.0
    assert s.learner.state_dir is None
    assert s.supervisor.workers == 3


def test_chaos_settings_retry_a_delivery_longer_than_one_flush_deadline() -> None:
    s = chaos_settings(2)
    assert s.worker.publish_retry_s > s.kafka.delivery_timeout_s
    assert s.supervisor.broker_check_s <= load_runtime_settings().supervisor.broker_check_s


# ---------------------------------------------------------------- scenarios
def test_every_scenario_in_the_order_has_a_runner() -> None:
    assert len(set(ORDER)) == len(ORDER)
    assert set(ORDER) == {*SCENARIOS, "settings"}
    assert set(QUICK) <= set(ORDER)
    assert ORDER[-1] == "broker_restart"  # it wipes the broker: last


@pytest.mark.parametrize(
    ("names", "named"),
    [(["nope"], "nope"), (["worker_kill", "kill", "Poison"], "kill, Poison")],
)
def test_an_unknown_scenario_raises_before_anything_starts(names: list[str], named: str) -> None:
    said: list[str] = []
    with pytest.raises(SettingsError) as err:
        run_chaos(ChaosConfig(dataset=Path("data/stackoverflow")), names, say=said.append)
    message = str(err.value)
    assert f"unknown chaos scenario(s) {named};" in message
    assert f"known: {', '.join(ORDER)}" in message
    assert said == []
