"""Errors that end a run early but keep its work, and the exit status each way of ending gives.

A RunStopError raised from inside a step (a judge that keeps failing, a reward that does not return in
time, a reward that raises or returns garbage) reaches train(), which saves a checkpoint, ends the run
with the message and no final adapter; the command exits 1. Fix the cause and run the same command again
to resume.

Exit status of a run (run_augmentoolkit.py returns it): 0 finished, 1 stopped by a RunStopError,
130 stopped by Ctrl-C (SIGINT), 143 by SIGTERM (128 + the signal number, the shell's convention).
"""

from __future__ import annotations

import signal
from typing import Optional

EXIT_FINISHED = 0
EXIT_STOPPED = 1


class RunStopError(RuntimeError):
    """Training cannot go on, but what it did so far is worth keeping: checkpoint, message, exit 1."""


class RewardTimeoutError(RunStopError):
    """A reward did not return within its time limit."""


def exit_status(stopped_early: Optional[str], stop_signal: Optional[str]) -> int:
    """0 for a finished run, 1 for a RunStopError, 128 + signal number for a run stopped by a signal."""
    if stop_signal:
        return 128 + int(getattr(signal.Signals, stop_signal, signal.SIGINT))
    return EXIT_STOPPED if stopped_early else EXIT_FINISHED
