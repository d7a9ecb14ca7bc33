"""Settings fail at start-up, naming the setting; env vars are read with the documented names."""

from __future__ import annotations

import pytest

from streamlabel.errors import SettingsError
from streamlabel.pipeline import load_settings


def test_defaults_are_valid_and_map_to_the_core_configs() -> None:
    s = load_settings()
    assert s.store.to_config(seed=3).seed == 3
    assert s.discovery.to_config(seed=0).persistence == s.discovery.persistence


def test_default_settings_produce_exactly_the_core_defaults() -> None:
    """Every default lives once, in the core: the settings' defaults map to the core
    configs' own defaults (the discovery and clustering defaults had drifted apart)."""
    from streamlabel.core.clustering import HDBSCANClustering
    from streamlabel.core.discovery import DiscoveryConfig
    from streamlabel.core.store import StoreConfig

    s = load_settings()
    assert s.store.to_config(seed=0) == StoreConfig()
    assert s.discovery.to_config(seed=0) == DiscoveryConfig(clustering=HDBSCANClustering())


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"store": {"threshold_quantile": 0.7}}, "store.threshold_quantile"),
        ({"store": {"top_k": 0}}, "store.top_k"),
        ({"discovery": {"min_cluster_size": 1}}, "discovery.min_cluster_size"),
        ({"model": {"device": "tpu"}}, "model.device"),
        ({"limits": {"max_message_bytes": 10}}, "limits.max_message_bytes"),
        ({"store": {"no_such_setting": 1}}, "store.no_such_setting"),
    ],
)
def test_invalid_setting_raises_settings_error_naming_it(overrides, named) -> None:
    with pytest.raises(SettingsError, match=named.replace(".", r"\.")):
        load_settings(**overrides)


def test_cross_field_rule_cluster_size_within_buffer() -> None:
    with pytest.raises(SettingsError, match="discovery"):
        load_settings(discovery={"min_cluster_size": 500, "buffer_capacity": 100})


def test_env_vars_use_prefix_and_double_underscore_nesting(monkeypatch) -> None:
    monkeypatch.setenv("STREAMLABEL_STORE__THRESHOLD_QUANTILE", "0.2")
    monkeypatch.setenv("STREAMLABEL_DISCOVERY__ENABLED", "false")
    s = load_settings()
    assert s.store.threshold_quantile == 0.2
    assert s.discovery.enabled is False


def test_invalid_env_var_names_the_setting(monkeypatch) -> None:
    monkeypatch.setenv("STREAMLABEL_STORE__TOP_K", "zero")
    with pytest.raises(SettingsError, match=r"store\.top_k"):
        load_settings()
