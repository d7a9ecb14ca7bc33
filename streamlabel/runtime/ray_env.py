"""The Ray environment the supervisor runs in: a cluster it joins, or a local Ray
kept on loopback, and how the actors' log lines reach this process.

Ray forwards what an actor writes to its stdout and stderr to the same stream of
the driver (``log_to_driver``). The actors log to stderr (:mod:`streamlabel.logging`),
so their lines never reach the driver's stdout, where the commands print their
progress. With ``logging.json_lines`` Ray forwards them as they are: without its
``(Learner pid=…)`` prefix and without folding similar lines of several actors
into one (either would break a JSON line); on a stream that is not a terminal,
the prefix has no colour codes.
"""

from __future__ import annotations

import os
import sys

from streamlabel.logging import adopt_library_loggers
from streamlabel.settings.runtime import RuntimeSettings

__all__ = ["init_ray", "ray_address"]

_ACTOR_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

_JSON_FORWARDING = {
    "RAY_DISABLE_WORKER_LOG_PREFIX": ("ray._private.ray_constants", True),
    "RAY_DEDUP_LOGS": ("ray._private.ray_logging", False),
}
"""Ray's switches for forwarding actor lines as they are: variable -> (the module that
reads it at import, the value)."""


def ray_address(settings: RuntimeSettings) -> str | None:
    """The Ray cluster to join (``ray.address``, else ``RAY_ADDRESS``); None: a local Ray."""
    return settings.ray.address or os.environ.get("RAY_ADDRESS") or None


def init_ray(settings: RuntimeSettings) -> bool:
    """Connects to ``ray.address``/``RAY_ADDRESS`` or starts a local Ray on loopback only.

    A local Ray is single-node: every Ray process (GCS, raylet, workers, agents)
    listens on 127.0.0.1 only. Ray rewrites a node IP of 127.0.0.1 to the
    machine's external address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (its single-node mode, the default on macOS and Windows), so that is set
    for this process and the Ray processes it starts.

    Ray's loggers go through this process's logging (``logging.libraries``), and
    the actors' lines are forwarded as the module's notes say.

    Returns:
        True when this call started (and so must shut down) Ray.
    """
    address = ray_address(settings)
    if not address:
        _set_before_import("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0",
                           "ray._private.ray_constants", "ENABLE_RAY_CLUSTER", False)  # fmt: skip
    if settings.logging.json_lines:
        for variable, (module, flag) in _JSON_FORWARDING.items():
            _set_before_import(variable, str(int(flag)), module, variable, flag)
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # read as each line is forwarded
    import ray

    adopt_library_loggers()  # `import ray` gave the "ray" logger a handler of its own
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        runtime_env = {"env_vars": dict(_ACTOR_ENV)}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True,
                 configure_logging=False)  # fmt: skip
    else:
        for key, value in _ACTOR_ENV.items():  # local workers inherit the supervisor's env
            os.environ.setdefault(key, value)
        ray.init(
            address="local",  # a new local instance, never one a `ray start` left behind
            _node_ip_address="127.0.0.1",
            include_dashboard=settings.ray.include_dashboard,
            num_cpus=settings.ray.num_cpus,
            log_to_driver=True,
            configure_logging=False,  # Ray's loggers follow ours (logging.libraries)
        )
    return True


def _set_before_import(variable: str, text: str, module: str, name: str, value: object) -> None:
    """Sets an environment variable Ray reads when ``module`` is imported; when it
    was imported before (by whoever imported Ray first), sets what it read."""
    os.environ[variable] = text
    loaded = sys.modules.get(module)
    if loaded is not None:
        setattr(loaded, name, value)
