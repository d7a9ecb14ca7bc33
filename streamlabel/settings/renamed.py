"""Renamed settings, read under their old names for one release.

Each source (overrides, the environment, the settings file) is renamed on its
own before the sources are merged, so the priority between sources holds for
an old name too, and within one source a new name given explicitly wins over
the old one. Every old name read warns twice: a :class:`DeprecationWarning`
and a structlog warning ``setting_renamed`` naming old -> new.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["RUNTIME_RENAMED", "OldEnvSource", "Renamed", "rename"]

log = structlog.get_logger("streamlabel.settings")

_ENV_PREFIX = "STREAMLABEL_"

RUNTIME_RENAMED: Mapping[str, str] = {
    **{
        f"runtime.{name}": f"worker.{name}"
        for name in (
            "batch_size",
            "poll_timeout_ms",
            "batch_target_ms",
            "min_batch_size",
            "overlap",
            "torch_threads",
            "drift_sample",
            "max_inflight_observations",
            "publish_retry_s",
        )
    },
    **{
        f"runtime.{name}": f"learner.{name}"
        for name in ("state_dir", "snapshot_every_s", "snapshot_every_records")
    },
    **{
        f"runtime.{name}": f"supervisor.{name}"
        for name in (
            "workers",
            "embedder",
            "max_restarts",
            "broker_check_s",
            "stop_timeout_s",
            "worker_start_timeout_s",
            "drained_node_wait_s",
        )
    },
    "runtime.autoscale": "scaling.enabled",
    **{
        f"runtime.{name}": f"scaling.{name}"
        for name in (
            "min_workers",
            "max_workers",
            "target_lag_per_worker",
            "scale_up_after_s",
            "scale_down_after_s",
            "scale_cooldown_s",
        )
    },
    "runtime.log_json": "logging.json_lines",
    "runtime.log_level": "logging.level",
}
"""The old ``runtime`` section (until 0.x) split by component: old name -> new name."""


def env_name(dotted: str) -> str:
    """The environment variable of a dotted setting name."""
    return _ENV_PREFIX + dotted.replace(".", "__").upper()


def rename(data: dict[str, Any], renamed: Mapping[str, str], origin: str) -> dict[str, Any]:
    """``data`` (one source's values) with every old name moved to its new one.

    A new name given in ``data`` too wins. An old section's unknown names stay
    where they are, so that validation names them.

    Example:
        >>> from structlog.testing import capture_logs
        >>> with warnings.catch_warnings(), capture_logs() as logs:
        ...     warnings.simplefilter("ignore")
        ...     rename({"runtime": {"workers": 3}}, RUNTIME_RENAMED, "overrides")
        {'supervisor': {'workers': 3}}
        >>> logs[0]["old"], logs[0]["new"]
        ('runtime.workers', 'supervisor.workers')
    """
    old_sections = {old.split(".")[0] for old in renamed}
    if not renamed or not any(isinstance(data.get(s), dict) for s in old_sections):
        return data
    out = dict(data)
    for section in old_sections:
        values = out.get(section)
        if not isinstance(values, dict):
            continue
        left: dict[str, Any] = {}
        for name, value in values.items():
            new = renamed.get(f"{section}.{name}")
            if new is None:
                left[name] = value
                continue
            _warn(f"{section}.{name}", new, origin)
            new_section, new_name = new.split(".")
            target = out.get(new_section, {})
            if isinstance(target, dict) and new_name not in target:
                out[new_section] = {**target, new_name: value}
        if left:
            out[section] = left
        else:
            del out[section]
    return out


def _warn(old: str, new: str, origin: str) -> None:
    if origin == "environment":
        old, new = env_name(old), env_name(new)
    message = f"the setting {old} is renamed {new}; the old name is read until the next release"
    warnings.warn(f"{message} (from {origin})", DeprecationWarning, stacklevel=2)
    log.warning("setting_renamed", old=old, new=new, source=origin)


class Renamed(PydanticBaseSettingsSource):
    """Another source's values, renamed (see :func:`rename`)."""

    def __init__(
        self, source: PydanticBaseSettingsSource, renamed: Mapping[str, str], origin: str
    ) -> None:
        super().__init__(source.settings_cls)
        self._source = source
        self._renamed = renamed
        self._origin = origin

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole source

    def __call__(self) -> dict[str, Any]:
        return rename(self._source(), self._renamed, self._origin)


class OldEnvSource(PydanticBaseSettingsSource):
    """Environment variables of old names (``STREAMLABEL_RUNTIME__BATCH_SIZE``), renamed.

    Below the new names' environment variables in priority, so a new name set in
    the environment wins over the old one.
    """

    def __init__(self, settings_cls: type[BaseSettings], renamed: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._renamed = renamed

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the old names directly

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        wanted = {env_name(old).lower(): old.split(".") for old in self._renamed}
        for variable, value in os.environ.items():
            old = wanted.get(variable.lower())
            if old is not None:
                found.setdefault(old[0], {})[old[1]] = value
        return rename(found, self._renamed, "environment")
