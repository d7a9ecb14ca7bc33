"""Settings of the endpoint (``metrics.*``) and of autoscaling (``scaling.*``, and its
bounds around ``supervisor.workers``): defaults, sources, and errors that name the setting."""

from __future__ import annotations

import os
from typing import Any

import pytest

from streamlabel.core.autoscale import AutoscalePolicy
from streamlabel.errors import SettingsError
from streamlabel.settings.deployment import MetricsSettings
from streamlabel.settings.runtime import load_runtime_settings


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
    sc = load_runtime_settings().scaling
    assert (sc.enabled, sc.min_workers, sc.max_workers, sc.target_lag_per_worker) == (
        False,
        1,
        None,
        5000,
    )
    assert (sc.scale_up_after_s, sc.scale_down_after_s, sc.scale_cooldown_s) == (
        30.0,
        300.0,
        60.0,
    )


def test_the_default_scaling_settings_produce_exactly_the_core_policy_defaults() -> None:
    """Every default lives once, in the core: the windows come from ``AutoscalePolicy``."""
    policy = load_runtime_settings().scaling.to_policy(partitions=4)
    assert policy == AutoscalePolicy(1, 4, target_lag_per_worker=5000)


def scaled(supervisor: dict[str, Any], scaling: dict[str, Any], **more: Any) -> Any:
    return load_runtime_settings(supervisor=supervisor, scaling=scaling, **more)


def test_autoscale_with_workers_within_the_bounds_is_accepted() -> None:
    s = scaled({"workers": 3}, {"enabled": True, "min_workers": 2, "max_workers": 6})
    sc = s.scaling
    assert (sc.enabled, s.supervisor.workers, sc.min_workers, sc.max_workers) == (True, 3, 2, 6)


def test_the_bounds_are_not_checked_without_autoscale() -> None:
    s = scaled({"workers": 5}, {"min_workers": 3, "max_workers": 2})
    assert (s.supervisor.workers, s.scaling.min_workers, s.scaling.max_workers) == (5, 3, 2)


@pytest.mark.parametrize(
    ("workers", "bounds"),
    [
        (7, {"max_workers": 6}),
        (1, {"min_workers": 2}),
        (2, {"min_workers": 3, "max_workers": 2}),  # min > max: no count fits
    ],
    ids=["above-max", "below-min", "min-above-max"],
)
def test_autoscale_with_workers_outside_the_bounds_names_the_settings_and_the_bounds(
    workers: int, bounds: dict[str, Any]
) -> None:
    with pytest.raises(SettingsError) as caught:
        scaled({"workers": workers}, {"enabled": True, **bounds})
    text = str(caught.value)
    assert "scaling.enabled" in text
    assert "scaling.min_workers" in text
    assert "scaling.max_workers" in text
    assert f"supervisor.workers={workers}" in text


def test_the_bounds_are_checked_on_the_merged_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """autoscale from the environment, workers from the overrides: validated together."""
    monkeypatch.setenv("STREAMLABEL_SCALING__ENABLED", "true")
    monkeypatch.setenv("STREAMLABEL_SCALING__MAX_WORKERS", "2")
    with pytest.raises(SettingsError, match="min_workers"):
        load_runtime_settings(supervisor={"workers": 3})
    assert load_runtime_settings(supervisor={"workers": 2}).scaling.enabled is True


@pytest.mark.parametrize(
    ("scaling", "named"),
    [
        ({"min_workers": 0}, "scaling.min_workers"),
        ({"max_workers": 0}, "scaling.max_workers"),
        ({"max_workers": 2000}, "scaling.max_workers"),
        ({"target_lag_per_worker": 0}, "scaling.target_lag_per_worker"),
        ({"scale_up_after_s": -1}, "scaling.scale_up_after_s"),
        ({"scale_down_after_s": -1}, "scaling.scale_down_after_s"),
        ({"scale_cooldown_s": -0.5}, "scaling.scale_cooldown_s"),
        ({"enabled": "sometimes"}, "scaling.enabled"),
    ],
)
def test_an_invalid_autoscale_setting_is_named(scaling: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_runtime_settings(scaling=scaling)


def test_autoscale_rejects_more_workers_than_partitions_when_max_workers_is_unset() -> None:
    """``max_workers`` unset means "the items topic's partitions" (its description, and
    what ``LagScaler`` uses), so the bounds check must use them: 6 workers over 4
    partitions with autoscale on is outside ``[min_workers, max_workers]``; today it is
    accepted (the check uses 1024) and the scaler then stops 2 of the 6 workers it just
    started at its first reading."""
    with pytest.raises(SettingsError, match="max_workers"):
        scaled({"workers": 6}, {"enabled": True}, kafka={"partitions": 4})
