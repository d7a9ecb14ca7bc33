"""The Ray environment the supervisor runs in: a cluster it joins, or a local Ray
kept on loopback."""

from __future__ import annotations

import logging
import os
import sys

from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["init_ray"]

_ACTOR_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}


def init_ray(settings: RuntimeSettings) -> bool:
    """Connects to ``ray.address``/``RAY_ADDRESS`` or starts a local Ray on loopback only.

    A local Ray is single-node: every Ray process (GCS, raylet, workers, agents)
    listens on 127.0.0.1 only. Ray rewrites a node IP of 127.0.0.1 to the
    machine's external address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (its single-node mode, the default on macOS and Windows), so that is set
    for this process and the Ray processes it starts.

    Returns:
        True when this call started (and so must shut down) Ray.
    """
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if not address:
        _loopback_only()
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        runtime_env = {"env_vars": dict(_ACTOR_ENV)}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        for key, value in _ACTOR_ENV.items():  # local workers inherit the supervisor's env
            os.environ.setdefault(key, value)
        ray.init(
            address="local",  # a new local instance, never one a `ray start` left behind
            _node_ip_address="127.0.0.1",
            include_dashboard=settings.ray.include_dashboard,
            num_cpus=settings.ray.num_cpus,
            log_to_driver=True,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    return True


def _loopback_only() -> None:
    """Keeps a local Ray on 127.0.0.1 (see :func:`init_ray`)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # Ray was imported before the variable was set
        constants.ENABLE_RAY_CLUSTER = False  # type: ignore[attr-defined]
