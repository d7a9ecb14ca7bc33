"""How ``init_ray`` sets up the actors' log lines (``runtime.ray_env``), with
``ray.init`` replaced by a recorder:

* with JSON lines, Ray forwards actor lines as they are: no ``(Learner pid=…)``
  prefix, no folding of similar lines (both would break a JSON line);
* on a stream that is not a terminal, the prefix has no colour codes;
* Ray's loggers lose the console handler ``import ray`` gave them and follow
  ``logging.libraries``; ``ray.init`` is told not to configure them again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from streamlabel.logging import configure_logging
from streamlabel.runtime.ray_env import _ACTOR_ENV, init_ray
from streamlabel.settings.runtime import load_runtime_settings

_VARIABLES = ("RAY_DISABLE_WORKER_LOG_PREFIX", "RAY_DEDUP_LOGS", "RAY_COLOR_PREFIX",
              "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")  # fmt: skip


@pytest.fixture
def ray_init(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """``ray.init`` records its arguments; Ray's constants, the environment and the
    logging are put back afterwards."""
    import ray
    import ray._private.ray_constants as constants
    import ray._private.ray_logging as ray_logging

    for name in (*_VARIABLES, *_ACTOR_ENV, "RAY_USAGE_STATS_ENABLED"):
        monkeypatch.setenv(name, "recorded")  # so that teardown puts back what was there
        monkeypatch.delenv(name)
    for name in list(os.environ):
        if name.startswith("STREAMLABEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(constants, "RAY_DISABLE_WORKER_LOG_PREFIX", False)
    monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", constants.ENABLE_RAY_CLUSTER)
    monkeypatch.setattr(ray_logging, "RAY_DEDUP_LOGS", True)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    ray_logger = logging.getLogger("ray")
    saved = (ray_logger.level, ray_logger.propagate, list(ray_logger.handlers))
    root = logging.getLogger()
    root_saved = (root.level, list(root.handlers))
    yield calls
    ray_logger.setLevel(saved[0])
    ray_logger.propagate, ray_logger.handlers = saved[1], saved[2]
    root.setLevel(root_saved[0])
    root.handlers = root_saved[1]
    logging.captureWarnings(False)
    structlog.reset_defaults()


def test_with_json_lines_actor_lines_are_forwarded_without_prefix_or_folding(
    ray_init: list[dict[str, Any]],
) -> None:
    import ray._private.ray_constants as constants
    import ray._private.ray_logging as ray_logging

    assert init_ray(load_runtime_settings(logging={"json_lines": True})) is True
    assert constants.RAY_DISABLE_WORKER_LOG_PREFIX is True
    assert ray_logging.RAY_DEDUP_LOGS is False
    assert (os.environ["RAY_DISABLE_WORKER_LOG_PREFIX"], os.environ["RAY_DEDUP_LOGS"]) == (
        "1", "0",
    )  # fmt: skip
    [call] = ray_init
    assert (call["log_to_driver"], call["configure_logging"]) == (True, False)


def test_console_lines_keep_rays_prefix_without_colour_codes_off_a_terminal(
    ray_init: list[dict[str, Any]],
) -> None:
    import ray._private.ray_constants as constants
    import ray._private.ray_logging as ray_logging

    init_ray(load_runtime_settings())
    assert constants.RAY_DISABLE_WORKER_LOG_PREFIX is False
    assert ray_logging.RAY_DEDUP_LOGS is True
    assert os.environ["RAY_COLOR_PREFIX"] == "0"  # pytest's stderr is no terminal
    assert "RAY_DISABLE_WORKER_LOG_PREFIX" not in os.environ


def test_rays_loggers_go_through_ours_at_the_library_level(
    ray_init: list[dict[str, Any]],
) -> None:
    configure_logging(json_logs=True, libraries="error")
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(logging.StreamHandler())  # what `import ray` does
    ray_logger.propagate = False
    ray_logger.setLevel(logging.INFO)
    init_ray(load_runtime_settings(logging={"libraries": "error"}))
    assert ray_logger.handlers == []
    assert ray_logger.propagate is True
    assert ray_logger.getEffectiveLevel() == logging.ERROR
