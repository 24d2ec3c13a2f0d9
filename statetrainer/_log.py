"""Library logging with structlog: a named logger, stable snake_case events, no global setup.

Events: ``run_started``, ``epoch_finished`` and ``run_finished`` (info),
``checkpoint_written`` (info), ``run_failed`` (error), ``run_stopped`` (warning: a signal
stopped the run gracefully), ``debug_dump`` (warning), and with
``trainer.log_transitions = True`` one ``transition_taken`` per transition (debug; off by
default because it costs a call per transition). Only the CLI configures output
(:func:`configure`): a readable console on stderr and JSON lines in ``events.jsonl``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import structlog

logger = structlog.get_logger("statetrainer")


def _shared_logger() -> Any:
    """The app's structlog logger when the app configured structlog; otherwise stdlib logging's
    ``statetrainer`` logger, so an unconfigured program prints nothing below WARNING."""
    if structlog.is_configured():
        return logger
    return structlog.wrap_logger(
        logging.getLogger("statetrainer"),
        processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


class _JsonLines:
    """A structlog processor that appends each event as one JSON line to a file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("a", buffering=1)

    def __call__(self, _: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        self.handle.write(json.dumps(event, default=str) + "\n")
        return event


class _ConsoleLevel:
    """Drop events below ``level`` from the console (after they reached the JSON file)."""

    def __init__(self, level: int) -> None:
        self.level = level

    def __call__(self, _: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        if logging.getLevelNamesMapping().get(method.upper(), logging.INFO) < self.level:
            raise structlog.DropEvent
        return event


class RunLog:
    """The events of one run: sent to the (app-configured) ``statetrainer`` logger and, with a
    run directory, also appended as JSON lines to ``RUN_DIR/events.jsonl`` through a logger
    of its own, so nothing global is configured."""

    def __init__(self, context: dict[str, Any], events_file: Path | None) -> None:
        self.shared = _shared_logger().bind(**context)
        self.file: Any = None
        self._handle: Any = None
        if events_file is not None:
            events_file.parent.mkdir(parents=True, exist_ok=True)
            self._handle = events_file.open("a", buffering=1)
            self.file = structlog.wrap_logger(
                structlog.WriteLogger(self._handle),
                processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                            structlog.processors.JSONRenderer(default=str)],
                wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            ).bind(**context)

    def _emit(self, method: str, event: str, **fields: Any) -> None:
        getattr(self.shared, method)(event, **fields)
        if self.file is not None:
            getattr(self.file, method)(event, **fields)

    def debug(self, event: str, **fields: Any) -> None:
        """Debug event (never written to events.jsonl)."""
        self.shared.debug(event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        """Info event."""
        self._emit("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Warning event."""
        self._emit("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        """Error event."""
        self._emit("error", event, **fields)

    def close(self) -> None:
        """Close events.jsonl."""
        if self._handle is not None:
            self._handle.close()
            self._handle, self.file = None, None


def configure(console_level: str = "warning", events_file: str | Path | None = None) -> None:
    """Configure structlog for the command line: console on stderr, JSON lines to ``events_file``."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    if events_file is not None:
        processors.append(_JsonLines(Path(events_file)))
    processors += [_ConsoleLevel(logging.getLevelNamesMapping()[console_level.upper()]),
                   structlog.dev.ConsoleRenderer(colors=False)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
