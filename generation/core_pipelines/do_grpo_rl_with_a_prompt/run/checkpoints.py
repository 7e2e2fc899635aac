"""Checkpoints that are always whole, rotated, and the best one kept.

- The trainer writes each checkpoint into `checkpoints/.staging/`; once every rank has written its part, the
  main process moves it into `checkpoints/` with one rename, so a run killed mid-save never leaves a half
  checkpoint where resume looks. `save_total_limit` keeps the newest ones.
- With eval data, the best checkpoint by the eval metric is copied to `best/` (adapter + tokenizer) with
  best.json beside it; a resumed run remembers the best value so far, so a worse eval after the resume never
  replaces it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Optional

from ..distributed import main_process_writes
from .files import RunPaths, write_text_atomically

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


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


def make_checkpoint_callback(paths: RunPaths, save_total_limit: Optional[int], best_metric: Optional[str],
                             greater_is_better: bool = True) -> Any:
    """A TrainerCallback: publishes finished checkpoints atomically, rotates them, keeps `best/`."""
    from transformers import TrainerCallback

    class CheckpointCallback(TrainerCallback):
        def __init__(self) -> None:
            self.best_value: Optional[float] = _recorded_best_value(paths)  # survives a resume
            self.best_pending = False

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not best_metric or not metrics or best_metric not in metrics:
                return
            value = float(metrics[best_metric])
            better = self.best_value is None or (value > self.best_value if greater_is_better else value < self.best_value)
            if better:
                self.best_value = value
                self.best_pending = True

        # by the main process, once every rank has written its part
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

    return CheckpointCallback()


def _recorded_best_value(paths: RunPaths) -> Optional[float]:
    """The best eval value a previous attempt of this run published (best.json), if any."""
    try:
        value = json.loads((paths.root / "best.json").read_text(encoding="utf-8")).get("value")
    except (OSError, ValueError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
