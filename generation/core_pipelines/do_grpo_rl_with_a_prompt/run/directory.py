"""The run directory: created or resumed, one run at a time, never where it would do harm.

- Re-running the same command resumes from the newest complete checkpoint (checkpoints.py); files that are
  appended to (metrics, examples, batch log) are cut back to that step first, so no line appears twice. Rows
  written by an attempt that died before its first checkpoint are dropped when it is run again.
- A config change that makes resuming unsafe is refused (resume.py); re-running a finished run trains nothing.
- `--fresh` moves an existing run directory aside, never deletes it, and never moves the working directory.
- One run per directory: a lock file (`.lock`, holding the pid) refuses a second run started on it.
- Several processes: only the main process prepares the directory (distributed.run_on_main).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional

import yaml

from generation.errors import UserInputError

from .checkpoints import checkpoint_step, complete_checkpoints, staging_dir
from .files import JsonlAppender, RunPaths
from .resume import changed_reward_settings, check_resume_is_safe, finished_steps

PROJECT_ROOT = Path(__file__).resolve().parents[4]
LOCK_FILE = ".lock"


@dataclass
class RunStart:
    """How a run begins: from scratch, from a checkpoint, or not at all (it already finished)."""

    resume_from: Optional[Path] = None
    finished_steps: Optional[int] = None  # set when the run in this directory already finished


def prepare_run_directory(paths: RunPaths, config_dict: dict, fresh: bool, round_steps: int = 1) -> RunStart:
    """Decide between a new run, a resumed one and a finished one; take the directory's lock.

    With `fresh`, an existing run directory is moved aside (to `<name>.previous-<time>`), never deleted.
    Only checkpoints at a generation-round boundary (multiples of `round_steps`) are resumed from.
    Call it on the main process only (distributed.run_on_main).
    """
    check_output_dir_is_usable(paths.root, fresh)
    if paths.root.exists():
        held = acquire_run_lock(paths)  # refuses while another run uses the directory
        if fresh:
            aside = paths.root.with_name(f"{paths.root.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
            paths.root.rename(aside)
            _release(held)
            print(f"--fresh: the previous run directory was moved to {aside}")
    acquire_run_lock(paths)
    previous = yaml.safe_load(paths.config.read_text(encoding="utf-8")) or {} if paths.config.exists() else None
    checkpoints = [c for c in complete_checkpoints(paths) if checkpoint_step(c) % round_steps == 0]
    finished = finished_steps(paths, previous, config_dict)
    if previous is not None and (checkpoints or finished is not None):
        check_resume_is_safe(previous, config_dict, paths)
        changed = changed_reward_settings(previous, config_dict)
        if changed:
            print(f"reward settings changed since the last run in {paths.root}: {', '.join(changed)}")
    if finished is not None:
        return RunStart(finished_steps=finished)
    # this attempt trains: a summary of an earlier, shorter attempt no longer describes the run (were this one to
    # die, the rerun would take the run as finished); the end of this attempt writes a new one
    paths.summary.unlink(missing_ok=True)
    shutil.rmtree(staging_dir(paths), ignore_errors=True)  # leftovers of a save that never finished
    step = checkpoint_step(checkpoints[-1]) if checkpoints else 0
    # an attempt that died before its first checkpoint (step 0) or after the latest one logged rows that
    # the new attempt logs again: drop them
    for name in ("metrics.jsonl", "batches.jsonl", config_dict.get("reward", {}).get("high_scoring_save_path") or ""):
        if name:
            JsonlAppender(paths.root / name).trim_after_step(step)
    if not checkpoints:
        return RunStart()
    print(f"resuming from {checkpoints[-1]} (step {step}); use --fresh to start over")
    return RunStart(resume_from=checkpoints[-1])


def check_output_dir_is_usable(root: Path, fresh: bool) -> None:
    """Refuse an output_dir that is (or is under) a file, holds the project, or (for --fresh) is no run directory."""
    for candidate in (root, *root.parents):
        if candidate.exists() and not candidate.is_dir():
            raise UserInputError(f"training_parameters.output_dir {root}: {candidate} is a file, not a directory")
    resolved = root.resolve()
    if PROJECT_ROOT == resolved or PROJECT_ROOT.is_relative_to(resolved):
        raise UserInputError(f"training_parameters.output_dir {root} holds the project itself: name a directory of its own "
                             "(e.g. outputs/my_run)")
    if fresh and root.exists():
        if Path.cwd().resolve().is_relative_to(resolved):
            raise UserInputError(f"--fresh would move {root} aside, and it holds the working directory: refusing")
        if not (root / "config.resolved.yaml").exists() and any(p.name != LOCK_FILE for p in root.iterdir()):
            raise UserInputError(f"--fresh would move {root} aside, but it is not a run directory (no "
                                 "config.resolved.yaml): refusing; move or delete it yourself")


def check_output_dir_outside_data(root: Path, data_dirs: dict[str, Path]) -> None:
    """Refuse an output_dir inside a dataset directory (`data_dirs`: config key -> directory): the run's own files
    would be read as data by the next run (or resume) of it."""
    resolved = root.resolve()
    for key, directory in data_dirs.items():
        if resolved.is_relative_to(directory.resolve()):
            raise UserInputError(f"training_parameters.output_dir {root} is inside the dataset directory {directory} "
                                 f"({key}): the run's files would be read as data on the next run; put the run "
                                 "elsewhere (e.g. outputs/my_run)")


_HELD_LOCKS: dict[Path, IO[str]] = {}


def acquire_run_lock(paths: RunPaths) -> IO[str]:
    """Hold `<output_dir>/.lock` for as long as this process lives (the OS releases it, even on kill -9)."""
    key = paths.root.resolve()
    if key in _HELD_LOCKS and not _HELD_LOCKS[key].closed:
        return _HELD_LOCKS[key]
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        handle = open(paths.root / LOCK_FILE, "a+", encoding="utf-8")
    except OSError as error:
        raise UserInputError(f"training_parameters.output_dir {paths.root}: cannot create the run directory there "
                             f"({error.strerror or error}): name a directory you can write (e.g. outputs/my_run)") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise UserInputError(f"{paths.root} is in use by another run (pid {holder}): wait for it to end, or set "
                             "training_parameters.output_dir to another directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD_LOCKS[key] = handle
    return handle


def release_run_lock(paths: RunPaths) -> None:
    """Let another run use the directory (at the end of a run; a sweep runs several in one process)."""
    handle = _HELD_LOCKS.pop(paths.root.resolve(), None)
    if handle is not None:
        _release(handle)


def _release(handle: IO[str]) -> None:
    for key, held in list(_HELD_LOCKS.items()):
        if held is handle:
            del _HELD_LOCKS[key]
    handle.close()  # closing drops the flock
