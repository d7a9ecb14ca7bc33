"""Settings of the endpoint (``metrics.*``) and of autoscaling (``runtime.autoscale``
and its bounds): defaults, sources, and errors that name the setting."""

from __future__ import annotations

import os
from typing import Any

import pytest

from streamlabel.errors import SettingsError
from streamlabel.settings.runtime import MetricsSettings, load_runtime_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ metrics
def test_metrics_defaults() -> None:
    m = load_runtime_settings().metrics
    assert isinstance(m, MetricsSettings)
    assert (m.enabled, m.host, m.port, m.port_span, m.stall_s) == (
        True,
        "127.0.0.1",
        9464,
        32,
        120.0,
    )


def test_metrics_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLABEL_METRICS__PORT", "19000")
    monkeypatch.setenv("STREAMLABEL_METRICS__ENABLED", "false")
    monkeypatch.setenv("STREAMLABEL_METRICS__HOST", "0.0.0.0")
    m = load_runtime_settings().metrics
    assert (m.port, m.enabled, m.host) == (19000, False, "0.0.0.0")


def test_port_zero_is_allowed() -> None:
    assert load_runtime_settings(metrics={"port": 0}).metrics.port == 0


@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        ({"port": -1}, "metrics.port"),
        ({"port": 65536}, "metrics.port"),
        ({"port": "http"}, "metrics.port"),
        ({"port_span": 0}, "metrics.port_span"),
        ({"port_span": 5000}, "metrics.port_span"),
        ({"stall_s": 0}, "metrics.stall_s"),
        ({"stall_s": -3}, "metrics.stall_s"),
        ({"host": ""}, "metrics.host"),
        ({"enabled": "maybe"}, "metrics.enabled"),
    ],
)
def test_an_invalid_metrics_setting_is_named(metrics: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_runtime_settings(metrics=metrics)


def test_an_invalid_metrics_environment_variable_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLABEL_METRICS__STALL_S", "soon")
    with pytest.raises(SettingsError, match=r"metrics\.stall_s"):
        load_runtime_settings()


# ---------------------------------------------------------------- autoscale
def test_autoscale_defaults() -> None:
    r = load_runtime_settings().runtime
    assert (r.autoscale, r.min_workers, r.max_workers, r.target_lag_per_worker) == (
        False,
        1,
        None,
        5000,
    )
    assert (r.scale_up_after_s, r.scale_down_after_s, r.scale_cooldown_s) == (30.0, 300.0, 60.0)


def test_autoscale_with_workers_within_the_bounds_is_accepted() -> None:
    r = load_runtime_settings(
        runtime={"autoscale": True, "workers": 3, "min_workers": 2, "max_workers": 6}
    ).runtime
    assert (r.autoscale, r.workers, r.min_workers, r.max_workers) == (True, 3, 2, 6)


def test_the_bounds_are_not_checked_without_autoscale() -> None:
    r = load_runtime_settings(runtime={"workers": 5, "min_workers": 3, "max_workers": 2}).runtime
    assert (r.workers, r.min_workers, r.max_workers) == (5, 3, 2)


@pytest.mark.parametrize(
    "runtime",
    [
        {"workers": 7, "max_workers": 6},
        {"workers": 1, "min_workers": 2},
        {"workers": 2, "min_workers": 3, "max_workers": 2},  # min > max: no count fits
    ],
    ids=["above-max", "below-min", "min-above-max"],
)
def test_autoscale_with_workers_outside_the_bounds_names_runtime_and_the_bounds(
    runtime: dict[str, Any],
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_runtime_settings(runtime={"autoscale": True, **runtime})
    text = str(caught.value)
    assert "runtime" in text
    assert "min_workers" in text
    assert "max_workers" in text
    assert f"workers={runtime['workers']}" in text


def test_the_bounds_are_checked_on_the_merged_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """autoscale from the environment, workers from the overrides: validated together."""
    monkeypatch.setenv("STREAMLABEL_RUNTIME__AUTOSCALE", "true")
    monkeypatch.setenv("STREAMLABEL_RUNTIME__MAX_WORKERS", "2")
    with pytest.raises(SettingsError, match="min_workers"):
        load_runtime_settings(runtime={"workers": 3})
    assert load_runtime_settings(runtime={"workers": 2}).runtime.autoscale is True


@pytest.mark.parametrize(
    ("runtime", "named"),
    [
        ({"min_workers": 0}, "runtime.min_workers"),
        ({"max_workers": 0}, "runtime.max_workers"),
        ({"max_workers": 2000}, "runtime.max_workers"),
        ({"target_lag_per_worker": 0}, "runtime.target_lag_per_worker"),
        ({"scale_up_after_s": -1}, "runtime.scale_up_after_s"),
        ({"scale_down_after_s": -1}, "runtime.scale_down_after_s"),
        ({"scale_cooldown_s": -0.5}, "runtime.scale_cooldown_s"),
        ({"autoscale": "sometimes"}, "runtime.autoscale"),
    ],
)
def test_an_invalid_autoscale_setting_is_named(runtime: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_runtime_settings(runtime=runtime)


def test_autoscale_rejects_more_workers_than_partitions_when_max_workers_is_unset() -> None:
    """``max_workers`` unset means "the items topic's partitions" (its description, and
    what ``LagScaler`` uses), so the bounds check must use them: 6 workers over 4
    partitions with autoscale on is outside ``[min_workers, max_workers]``; today it is
    accepted (the check uses 1024) and the scaler then stops 2 of the 6 workers it just
    started at its first reading."""
    with pytest.raises(SettingsError, match="max_workers"):
        load_runtime_settings(kafka={"partitions": 4}, runtime={"autoscale": True, "workers": 6})
