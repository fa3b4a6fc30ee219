"""SIGINT / SIGTERM: finish the step in flight, checkpoint, say how to resume, exit 128 + signal."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any


class TrainingInterrupted(SystemExit):
    """Raised by ``train`` after SIGINT/SIGTERM: the current step was finished and checkpointed.

    A ``SystemExit`` so that a script that does not catch it exits quietly with the conventional
    status ``128 + signal`` (130 for SIGINT, 143 for SIGTERM) after the message was printed.
    ``step``, ``checkpoint`` and ``message`` say where the run stopped and how to resume.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, message: str) -> None:
        super().__init__(128 + signum)
        self.signum, self.step, self.checkpoint, self.message = signum, step, checkpoint, message

    def __str__(self) -> str:
        return self.message


class SignalCatcher:
    """Turn SIGINT/SIGTERM into a flag read at the end of each step, so the step in flight is
    finished and checkpointed instead of being torn down mid-update. Installed only from the main
    thread (Python's rule for signal handlers); the previous handlers are restored on exit. A second
    SIGINT while stopping falls back to the previous handler (KeyboardInterrupt)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # asked twice: stop now
            prev = self.previous.get(signum)
            if callable(prev):
                prev(signum, frame)
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "SignalCatcher":
        if self.enabled:
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


def interrupted(signum: int, done: int, steps: int, path: Path | None, run: Path | None,
                is_main: bool) -> TrainingInterrupted:
    """The exception (and the message on stderr, rank 0) for a run stopped by ``signum``."""
    name = signal.Signals(signum).name
    if path is not None:
        msg = (f"fastwgan: stopped by {name} after step {done} of {steps}; checkpoint written to {path}. To "
               f"continue, run the same command with --resume (fastwgan train ... --out {run} --resume), or call "
               f"fastwgan.train(..., out={os.fspath(run)!r}, resume=True) with the same settings.")
    else:
        msg = (f"fastwgan: stopped by {name} after step {done} of {steps}; nothing was saved because out= was "
               "not given: pass out= (and checkpoint_every=) to make a run resumable.")
    if is_main:
        print(msg, file=sys.stderr, flush=True)
    return TrainingInterrupted(signum, done, path, msg)
