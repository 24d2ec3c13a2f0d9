"""SIGINT/SIGTERM during a run: a graceful stop with a checkpoint; SIGUSR1: a debug dump.

The first SIGINT or SIGTERM queues a signal-stop request: at the next resumable state the
run writes a checkpoint (with a run directory) and stops; in a lifecycle without
resumable states (``test``) it stops at the next state. A second SIGINT aborts at once
(``KeyboardInterrupt``). The previous handlers are restored when the run ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from statetrainer.driver import Request


@contextlib.contextmanager
def handle_signals(trainer: Any) -> Iterator[None]:
    """Install the run's signal handlers (main thread only) for the duration of a run."""
    rt = trainer._statetrainer
    if not rt.settings.handle_signals or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        if rt.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        rt.signal = signum
        if rt.running:
            rt.driver.position.status = "stopping"
            rt.driver.control.add(Request("signal", signum=signum))

    def dump(signum: int, frame: Any) -> None:
        from statetrainer.inspect import dump_debug

        dump_debug(trainer)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    if hasattr(signal, "SIGUSR1"):
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, dump)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
