"""Library logging with structlog: a named logger, stable snake_case events, no global setup.

Events: ``run_started``, ``epoch_finished`` and ``run_finished`` (info),
``checkpoint_written`` (info), ``run_failed`` (error), ``debug_dump`` (warning), and with
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
