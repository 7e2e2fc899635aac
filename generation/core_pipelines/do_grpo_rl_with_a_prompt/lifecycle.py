"""Stopping and resuming runs safely.

- Checkpoints are written by the trainer into `checkpoints/.staging/` and moved into `checkpoints/` with
  one rename once complete, so a run killed mid-save never leaves a half checkpoint where resume looks.
- Re-running the same command resumes from the newest complete checkpoint; files that are appended to
  (metrics, examples, batch log) are cut back to that step first, so no line appears twice.
- A config change that makes resuming unsafe (another model, other data, another batch shape) is refused.
- Ctrl-C / SIGTERM: the current step finishes, a checkpoint is saved, and the run exits cleanly; a second
  Ctrl-C stops at once, a second SIGTERM changes nothing (several processes may each get it twice).
- The best checkpoint by an eval metric is copied to `best/` (adapter + tokenizer) with best.json beside it;
  a resumed run remembers the best value so far, so a worse eval after the resume never replaces it.
- One run per directory: a lock file (`.lock`, holding the pid) refuses a second run started on it.
- Re-running a finished run trains nothing. Rows written by an attempt that died before its first
  checkpoint are dropped when it is run again. Reward settings may change on a resume (a fixed judge URL);
  data and batch settings may not.
- With num_iterations > 1 or steps_per_generation > 1, TRL reuses one generation round for several
  steps; checkpoints are only taken (and resumed) at round boundaries, so a resumed run trains on the same
  rows as an uninterrupted one.
- Several processes: only the main process changes the directory; every rank waits at the barriers of
  distributed.py around it.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

import yaml

from generation.errors import UserInputError

from .config import SEED_DATASET_LLM_KEYS, ConfigError
from .distributed import all_gather, main_process_writes
from .run_files import JsonlAppender, RunPaths, write_text_atomically

PROJECT_ROOT = Path(__file__).resolve().parents[3]
LOCK_FILE = ".lock"

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

# Settings whose change makes a checkpoint meaningless for the new run.
RESUME_CRITICAL = {
    "model": ("base_model_name", "gguf_file", "lora_rank", "lora_alpha", "target_modules", "exclude_modules",
              "load_in_4bit", "apply_lora"),
    "training_parameters": ("seed", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                            "steps_per_generation", "generation_batch_size", "num_iterations"),
    "datasets": None,  # any change, except to the rewards (REWARD_KEYS)
    "dataset_settings": None,
    "launch": ("world_size",),  # the number of processes: another one gives other batches and RNG states
}
REWARD_KEYS = ("reward_funcs", *SEED_DATASET_LLM_KEYS)
"""Dataset keys that may change on resume: which rewards score the rows, and the judge's URL, key, model."""
SNAPSHOT_DEFAULTS = {("launch", "world_size"): 1}
"""Values assumed for keys that older run directories did not record."""


@dataclass
class RunStart:
    """How a run begins: from scratch, from a checkpoint, or not at all (it already finished)."""

    resume_from: Optional[Path] = None
    finished_steps: Optional[int] = None  # set when the run in this directory already finished


def staging_dir(paths: RunPaths) -> Path:
    """Where the trainer writes checkpoints before they are complete."""
    return paths.checkpoints / ".staging"


def complete_checkpoints(paths: RunPaths) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not paths.checkpoints.is_dir():
        return []
    found = [p for p in paths.checkpoints.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def checkpoint_step(checkpoint: Path) -> int:
    return int(CHECKPOINT_PATTERN.match(checkpoint.name).group(1))


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
    finished = _finished_steps(paths, previous, config_dict)
    if previous is not None and (checkpoints or finished is not None):
        check_resume_is_safe(previous, config_dict, paths)
        changed = changed_reward_settings(previous, config_dict)
        if changed:
            print(f"reward settings changed since the last run in {paths.root}: {', '.join(changed)}")
    if finished is not None:
        return RunStart(finished_steps=finished)
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


_HELD_LOCKS: dict[Path, IO[str]] = {}


def acquire_run_lock(paths: RunPaths) -> IO[str]:
    """Hold `<output_dir>/.lock` for as long as this process lives (the OS releases it, even on kill -9)."""
    key = paths.root.resolve()
    if key in _HELD_LOCKS and not _HELD_LOCKS[key].closed:
        return _HELD_LOCKS[key]
    paths.root.mkdir(parents=True, exist_ok=True)
    handle = open(paths.root / LOCK_FILE, "a+", encoding="utf-8")
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


def _finished_steps(paths: RunPaths, previous: Optional[dict], current: dict) -> Optional[int]:
    """The step count of a run that already finished here with the same length settings, else None."""
    if previous is None or not paths.summary.exists() or not paths.final_adapter.is_dir():
        return None
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not summary.get("finished"):
        return None
    length_keys = ("max_steps", "num_train_epochs")
    before, after = previous.get("training_parameters", {}), current.get("training_parameters", {})
    if any(before.get(key) != after.get(key) for key in length_keys):
        return None  # longer (or shorter) now: resume from the last checkpoint
    return int(summary.get("steps") or 0)


def generation_round_steps(config: Any) -> int:
    """Optimizer steps per TRL generation round (completions are generated once and reused for that many).

    TRL generates every steps_per_generation x num_iterations micro-batches; an optimizer step is
    gradient_accumulation_steps micro-batches. A round boundary is where both line up.
    """
    from .distributed import world_size

    tp = config.training_parameters
    extra = tp.model_extra or {}
    accumulation = tp.gradient_accumulation_steps
    per_generation = extra.get("steps_per_generation")
    if not per_generation and extra.get("generation_batch_size"):
        per_generation = max(1, int(extra["generation_batch_size"]) // (tp.per_device_train_batch_size * world_size()))
    micro_steps = int(per_generation or accumulation) * int(extra.get("num_iterations") or 1)
    return micro_steps // math.gcd(micro_steps, accumulation)


def check_checkpoints_align(config: Any) -> None:
    """save_steps (and eval_steps) must fall on generation-round boundaries, else a resume would shift the rows."""
    round_steps = generation_round_steps(config)
    if round_steps == 1:
        return
    tp = config.training_parameters
    for key in ("save_steps", "eval_steps"):
        value = getattr(tp, key, None) if key == "save_steps" else (tp.model_extra or {}).get(key)
        if value is not None and float(value) >= 1 and int(value) % round_steps:
            raise ConfigError(
                f"training_parameters.{key} {value:g} is not a multiple of {round_steps}: with these num_iterations / "
                f"steps_per_generation / gradient_accumulation_steps TRL reuses each generation for {round_steps} steps, "
                f"and a checkpoint inside that round could not be resumed exactly. Use a multiple of {round_steps}."
            )


def check_resume_is_safe(previous: dict, current: dict, paths: RunPaths) -> None:
    """Raise UserInputError listing the settings that changed in a way a resume cannot honour."""
    changed = []
    for section, keys in RESUME_CRITICAL.items():
        before, after = previous.get(section), current.get(section)
        if keys is None:
            if _comparable(_without_rewards(before)) != _comparable(_without_rewards(after)):
                changed.append(section)
            continue
        for key in keys:
            default = SNAPSHOT_DEFAULTS.get((section, key))
            if before is None or key not in before and default is None:
                continue  # an older run directory did not record it
            old, new = (before or {}).get(key, default), (after or {}).get(key, default)
            if old != new:
                changed.append(f"{section}.{key}: {old!r} -> {new!r}")
    if changed:
        raise UserInputError(
            f"{paths.root} holds checkpoints of a run with other settings ({'; '.join(changed)}). "
            "Resuming would mix two runs: pass --fresh to start over (the old run is moved aside), "
            "or set training_parameters.output_dir to a new directory."
        )


def changed_reward_settings(previous: dict, current: dict) -> list[str]:
    """Which reward settings differ from the previous run (allowed on resume, and worth saying)."""
    changed = [f"reward.{key}" for key in sorted(set(previous.get("reward") or {}) | set(current.get("reward") or {}))
               if (previous.get("reward") or {}).get(key) != (current.get("reward") or {}).get(key)]
    before, after = previous.get("datasets") or [], current.get("datasets") or []
    for index, (old, new) in enumerate(zip(before, after)):
        for key in REWARD_KEYS:
            if _comparable(old.get(key)) != _comparable(new.get(key)):
                changed.append(f"datasets[{index}].{key}")
    return changed


def _without_rewards(section: Any) -> Any:
    if isinstance(section, list):
        return [{k: v for k, v in item.items() if k not in REWARD_KEYS} if isinstance(item, dict) else item
                for item in section]
    return section


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def make_lifecycle_callback(paths: RunPaths, save_total_limit: Optional[int], best_metric: Optional[str],
                            greater_is_better: bool = True, round_steps: int = 1) -> Any:
    """A TrainerCallback: publishes finished checkpoints atomically, keeps `best/`, saves on Ctrl-C.

    A Ctrl-C is honoured at the next generation-round boundary (every `round_steps` steps), and with several
    processes at the same step on every rank.
    """
    from transformers import TrainerCallback

    class LifecycleCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stop_requested: Optional[str] = None
            self.best_value: Optional[float] = _recorded_best_value(paths)  # survives a resume
            self.best_pending = False
            self._previous_handlers: dict = {}

        # --- signals
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

        # --- best checkpoint
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not best_metric or not metrics or best_metric not in metrics:
                return
            value = float(metrics[best_metric])
            better = self.best_value is None or (value > self.best_value if greater_is_better else value < self.best_value)
            if better:
                self.best_value = value
                self.best_pending = True

        # --- atomic publication, by the main process once every rank has written its part
        def on_save(self, args, state, control, **kwargs):
            with main_process_writes() as writer:
                if writer:
                    self._publish(state.global_step)

        def _publish(self, step: int) -> None:
            staged = staging_dir(paths) / f"checkpoint-{step}"
            if not staged.is_dir():
                return
            final = paths.checkpoints / staged.name
            if final.exists():
                shutil.rmtree(final)
            staged.rename(final)
            if self.best_pending:
                self._publish_best(final, step)
            self._rotate()

        def _publish_best(self, checkpoint: Path, step: int) -> None:
            temporary = paths.root / ".best.tmp"
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir()
            for item in checkpoint.iterdir():
                if item.is_file() and not item.name.startswith(("optimizer", "scheduler", "rng_state", "training_args")):
                    shutil.copy2(item, temporary / item.name)
            shutil.rmtree(paths.best_adapter, ignore_errors=True)
            temporary.rename(paths.best_adapter)
            info = {"step": step, "metric": best_metric, "value": self.best_value, "checkpoint": checkpoint.name}
            write_text_atomically(paths.root / "best.json", json.dumps(info, indent=2))
            self.best_pending = False

        def _rotate(self) -> None:
            if not save_total_limit:
                return
            for old in complete_checkpoints(paths)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)

    return LifecycleCallback()


def _recorded_best_value(paths: RunPaths) -> Optional[float]:
    """The best eval value a previous attempt of this run published (best.json), if any."""
    try:
        value = json.loads((paths.root / "best.json").read_text(encoding="utf-8")).get("value")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
