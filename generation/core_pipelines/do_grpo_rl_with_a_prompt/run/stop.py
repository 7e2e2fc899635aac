"""Ending a run early but keeping its work: errors that stop it, Ctrl-C / SIGTERM, and the exit status.

A RunStopError raised from inside a step (a judge that keeps failing, a reward that does not return in
time, a reward that raises or returns garbage) reaches train(), which saves a checkpoint, ends the run
with the message and no final adapter; the command exits 1. Fix the cause and run the same command again
to resume.

Ctrl-C / SIGTERM: the current step finishes, a checkpoint is saved, and the run exits (a second Ctrl-C stops at
once; a second SIGTERM changes nothing: several processes may each get it twice). With num_iterations > 1 or steps_per_generation > 1 TRL reuses one generation round for several steps, so
the stop waits for the next round boundary (a checkpoint inside a round could not be resumed exactly); with
several processes every rank stops at the same step.

Exit status of a run (run_augmentoolkit.py returns it): 0 finished, 1 stopped by a RunStopError,
130 stopped by Ctrl-C (SIGINT), 143 by SIGTERM (128 + the signal number, the shell's convention).
"""

from __future__ import annotations

import signal
from typing import Any, Optional

from ..distributed import all_gather

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


def make_stop_callback(round_steps: int = 1) -> Any:
    """A TrainerCallback that turns SIGINT / SIGTERM into "save a checkpoint and stop" at the next round boundary
    (every `round_steps` steps), on every rank at the same step. `stop_requested` names the signal."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def __init__(self) -> None:
            self.stop_requested: Optional[str] = None
            self._previous_handlers: dict = {}

        def on_train_begin(self, args, state, control, **kwargs):
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    self._previous_handlers[signum] = signal.signal(signum, self._request_stop)
                except ValueError:  # not the main thread: leave signals alone
                    pass

        def _request_stop(self, signum, frame):
            if self.stop_requested:
                if signum == signal.SIGINT:  # a second Ctrl-C: stop now
                    raise KeyboardInterrupt
                return  # SIGTERM again: a scheduler signals every process, and the launcher's agent once more
            self.stop_requested = signal.Signals(signum).name
            print(f"\n{self.stop_requested}: finishing this step, saving a checkpoint, then stopping "
                  "(press Ctrl-C again to stop at once)")

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % round_steps:
                return control  # inside a generation round: a checkpoint here could not be resumed exactly
            requested = [name for name in all_gather(self.stop_requested) if name]  # every rank stops together
            if requested:
                self.stop_requested = self.stop_requested or requested[0]
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_train_end(self, args, state, control, **kwargs):
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)

    return StopOnSignal()
