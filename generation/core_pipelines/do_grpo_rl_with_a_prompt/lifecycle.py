"""Stopping and resuming runs safely.

- Checkpoints are written by the trainer into `checkpoints/.staging/` and moved into `checkpoints/` with
  one rename once complete, so a run killed mid-save never leaves a half checkpoint where resume looks.
- Re-running the same command resumes from the newest complete checkpoint; files that are appended to
  (metrics, examples, batch log) are cut back to that step first, so no line appears twice.
- A config change that makes resuming unsafe (another model, other data, another batch shape) is refused.
- Ctrl-C / SIGTERM: the current step finishes, a checkpoint is saved, and the run exits cleanly.
- The best checkpoint by an eval metric is copied to `best/` (adapter + tokenizer) with best.json beside it.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Optional

import yaml

from generation.errors import UserInputError

from .run_files import JsonlAppender, RunPaths, write_text_atomically

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

# Settings whose change makes a checkpoint meaningless for the new run.
RESUME_CRITICAL = {
    "model": ("base_model_name", "gguf_file", "lora_rank", "lora_alpha", "target_modules", "load_in_4bit"),
    "training_parameters": ("seed", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps"),
    "datasets": None,  # any change
    "dataset_settings": None,
}


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


def prepare_run_directory(paths: RunPaths, config_dict: dict, fresh: bool) -> Optional[Path]:
    """Decide between a new run and a resumed one; returns the checkpoint to resume from (or None).

    With `fresh`, an existing run directory is moved aside (to `<name>.previous-<time>`), never deleted.
    """
    if fresh and paths.root.exists():
        aside = paths.root.with_name(f"{paths.root.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        paths.root.rename(aside)
        print(f"--fresh: the previous run directory was moved to {aside}")
    checkpoints = complete_checkpoints(paths)
    if paths.config.exists() and checkpoints:
        check_resume_is_safe(yaml.safe_load(paths.config.read_text(encoding="utf-8")) or {}, config_dict, paths)
    shutil.rmtree(staging_dir(paths), ignore_errors=True)  # leftovers of a save that never finished
    if not checkpoints:
        return None
    latest = checkpoints[-1]
    step = checkpoint_step(latest)
    for name in ("metrics.jsonl", "batches.jsonl", config_dict.get("reward", {}).get("high_scoring_save_path") or ""):
        if name:
            JsonlAppender(paths.root / name).trim_after_step(step)
    print(f"resuming from {latest} (step {step}); use --fresh to start over")
    return latest


def check_resume_is_safe(previous: dict, current: dict, paths: RunPaths) -> None:
    """Raise UserInputError listing the settings that changed in a way a resume cannot honour."""
    changed = []
    for section, keys in RESUME_CRITICAL.items():
        before, after = previous.get(section), current.get(section)
        if keys is None:
            if _comparable(before) != _comparable(after):
                changed.append(section)
            continue
        for key in keys:
            if (before or {}).get(key) != (after or {}).get(key):
                changed.append(f"{section}.{key}: {(before or {}).get(key)!r} -> {(after or {}).get(key)!r}")
    if changed:
        raise UserInputError(
            f"{paths.root} holds checkpoints of a run with other settings ({'; '.join(changed)}). "
            "Resuming would mix two runs: pass --fresh to start over (the old run is moved aside), "
            "or set training_parameters.output_dir to a new directory."
        )


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def make_lifecycle_callback(paths: RunPaths, save_total_limit: Optional[int], best_metric: Optional[str],
                            greater_is_better: bool = True) -> Any:
    """A TrainerCallback: publishes finished checkpoints atomically, keeps `best/`, saves on Ctrl-C."""
    from transformers import TrainerCallback

    class LifecycleCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stop_requested: Optional[str] = None
            self.best_value: Optional[float] = None
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
            if self.stop_requested:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.stop_requested = signal.Signals(signum).name
            print(f"\n{self.stop_requested}: finishing this step, saving a checkpoint, then stopping "
                  "(press Ctrl-C again to stop at once)")

        def on_step_end(self, args, state, control, **kwargs):
            if self.stop_requested:
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

        # --- atomic publication
        def on_save(self, args, state, control, **kwargs):
            staged = staging_dir(paths) / f"checkpoint-{state.global_step}"
            if not staged.is_dir():
                return
            final = paths.checkpoints / staged.name
            if final.exists():
                shutil.rmtree(final)
            staged.rename(final)
            if self.best_pending:
                self._publish_best(final, state.global_step)
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
