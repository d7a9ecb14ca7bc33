"""Logging: one pipeline for streamlabel's structlog lines and every library's
standard-library records (kafka-python, Ray, transformers, urllib3, Python
warnings), JSON lines in production, a readable console locally.

structlog hands its event dicts to the standard library
(:class:`structlog.stdlib.LoggerFactory`), and one root handler renders both
kinds of record with :class:`structlog.stdlib.ProcessorFormatter`; a library's
record goes through the same ``foreign_pre_chain`` first, so with
``logging.json_lines`` every line is one JSON object with ``event``, ``level``,
``logger`` and ``timestamp``, whoever logged it. The driver and every actor
call :func:`configure_logging` with the same settings.

Logs go to stderr (or the stream given); what a command prints for a person
(its progress) goes to stdout, apart from them.

Example:
    >>> import io, json, logging
    >>> out = io.StringIO()
    >>> configure_logging(json_logs=True, level="info", stream=out)
    >>> logging.getLogger("kafka.conn").warning("connection to %s lost", "node 1")
    >>> line = json.loads(out.getvalue())
    >>> line["event"], line["level"], line["logger"]
    ('connection to node 1 lost', 'warning', 'kafka.conn')
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO

import structlog

__all__ = ["QUIETER", "adopt_library_loggers", "configure_logging"]

QUIETER: dict[str, int] = {
    # `ray.init` turns on token authentication for the local cluster it starts and
    # says so at WARNING every time: the behaviour we want, not a warning.
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
}
"""Library loggers held at a higher level than ``logging.libraries``."""

_OURS = "streamlabel"
_WARNING = re.compile(r"(?P<where>.+?:\d+): (?P<category>\w+): (?P<message>.*)", re.DOTALL)
_library_level = logging.WARNING  # what adopt_library_loggers applies (the last configuration)


class _Handler(logging.StreamHandler):
    """The root handler: the given stream, or whatever ``sys.stderr`` is when a record comes."""

    def __init__(self, stream: TextIO | None) -> None:
        self._fixed = stream
        super().__init__(stream)

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO | None) -> None:
        self._fixed = value


def configure_logging(
    *,
    json_logs: bool,
    level: str = "info",
    libraries: str = "warning",
    stream: TextIO | None = None,
) -> None:
    """Configures structlog and the standard library's root logger, at an entry point
    (never at import time); calling it again replaces the configuration.

    Args:
        json_logs: one JSON object per line instead of console text.
        level: the lowest level of streamlabel's lines and of Python warnings.
        libraries: the lowest level of every other logger (``logging.libraries``).
        stream: where the lines go; ``sys.stderr`` (as it is when a line comes) if None.
    """
    global _library_level
    ours, _library_level = _level(level), _level(libraries)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(ours),
        cache_logger_on_first_use=True,
    )
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _tidy_warning],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_renderer(json_logs, stream),
            ],
        )
    )
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, _Handler):
            old.close()
    root.handlers = [handler]
    root.setLevel(_library_level)
    logging.getLogger(_OURS).setLevel(ours)
    logging.getLogger("py.warnings").setLevel(ours)
    logging.captureWarnings(True)
    adopt_library_loggers()


def adopt_library_loggers() -> None:
    """Routes the loggers that libraries gave handlers of their own (Ray, transformers,
    torch, huggingface_hub add console handlers when imported) through the root
    handler, and holds each at least at ``logging.libraries``.

    :func:`configure_logging` calls it; call it again after importing such a
    library (the supervisor after ``import ray``, an actor after loading its model).
    """
    loggers = logging.Logger.manager.loggerDict
    for name, logger in list(loggers.items()):
        if not isinstance(logger, logging.Logger) or name.split(".")[0] in (_OURS, "py"):
            continue
        consoles = [
            h for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]  # fmt: skip
        for h in consoles:
            logger.removeHandler(h)
        if consoles or not logger.propagate:
            logger.propagate = True
        if logger.level != logging.NOTSET and logger.level < _library_level:
            logger.setLevel(_library_level)
    for name, floor in QUIETER.items():
        logging.getLogger(name).setLevel(max(floor, _library_level))


def _renderer(json_logs: bool, stream: TextIO | None) -> list[structlog.types.Processor]:
    if json_logs:
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    target = stream if stream is not None else sys.stderr
    colors = bool(getattr(target, "isatty", lambda: False)())
    return [structlog.dev.ConsoleRenderer(colors=colors)]


def _tidy_warning(logger: Any, method: str, event: structlog.types.EventDict) -> Any:
    """A captured Python warning reads like our lines: the message as the event, its
    category and where it was raised as fields (not ``warnings.formatwarning``'s
    two lines)."""
    if event.get("logger") != "py.warnings":
        return event
    match = _WARNING.match(str(event.get("event", "")).rstrip())
    if match is not None:
        message, _, last = match["message"].rpartition("\n  ")  # the source line, if shown
        event["event"] = (message or last).strip()
        event["category"] = match["category"]
        event["where"] = match["where"]
    return event


def _level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}")
    return level
