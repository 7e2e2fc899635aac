"""What the run reports: wandb / tensorboard set-up, metrics.jsonl every logged step, summary and plots at the end."""

from __future__ import annotations

import importlib.util
import json
import netrc
import os
import time
from typing import Any, Callable, Optional

from cli_utils.plot_run import plot_run
from generation.errors import UserInputError

from ..config.schema import GRPOPipelineConfig
from ..distributed import is_main_process
from .files import JsonlAppender, RunPaths, read_jsonl, write_text_atomically
from .stop import EXIT_FINISHED


def configure_reporting(config: GRPOPipelineConfig, paths: RunPaths) -> None:
    """wandb online when a key is configured, offline otherwise; its files go into the run directory."""
    report_to = config.training_parameters.report_to
    targets = [report_to] if isinstance(report_to, str) else list(report_to)
    if "wandb" in targets:
        os.environ.setdefault("WANDB_DIR", str(paths.root))
        if not (os.environ.get("WANDB_API_KEY") or _has_wandb_login()):
            os.environ.setdefault("WANDB_MODE", "offline")
            print("wandb: no API key configured, logging offline (sync later with `wandb sync`)")
    if "tensorboard" in targets:
        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise UserInputError("report_to includes tensorboard, but it is not installed: pip install tensorboard")


def _has_wandb_login() -> bool:
    try:
        return netrc.netrc(os.path.expanduser("~/.netrc")).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def make_metrics_callback(appender: JsonlAppender, extra_metrics: Callable[[], dict]) -> Any:
    """A TrainerCallback that appends every log event (plus `extra_metrics()`) to metrics.jsonl."""
    from transformers import TrainerCallback

    class MetricsFileCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
            if not logs or not is_main_process():  # TRL's logs are already averaged over every rank
                return
            record = {"step": state.global_step, "epoch": state.epoch, "wall_time": time.time()}
            record.update({k: v for k, v in logs.items() if isinstance(v, (int, float, str, bool)) or v is None})
            record.update(extra_metrics())
            appender.append(record)

    return MetricsFileCallback()


def reward_trend(records: list[dict], window: int = 5, key: str = "reward") -> tuple[Optional[float], Optional[float]]:
    """Mean of `key` over the first and over the last `window` logged steps (None when not logged)."""
    values = [r[key] for r in records if isinstance(r.get(key), (int, float)) and "eval_" + key not in r]
    if not values:
        return None, None
    window = max(1, min(window, len(values) // 2 or 1))
    return sum(values[:window]) / window, sum(values[-window:]) / window


def write_summary(paths: RunPaths, steps: int, status: int = EXIT_FINISHED) -> tuple[Optional[float], Optional[float]]:
    """Write summary.json and plots; print the first vs last window of the mean reward, and return them.

    `status` is the run's exit status (stop.py): 0 when it finished.
    """
    first, last = reward_trend(read_jsonl(paths.metrics))
    finished = status == EXIT_FINISHED
    summary = {"steps": steps, "finished": finished, "exit_status": status,
               "first_window_reward": first, "last_window_reward": last}
    best = paths.root / "best.json"
    if best.exists():
        info = json.loads(best.read_text())
        summary.update(best_checkpoint=info.get("checkpoint"), best_metric=info.get("metric"), best_value=info.get("value"))
    write_text_atomically(paths.summary, json.dumps(summary, indent=2))
    if first is not None:
        print(f"mean reward: first window {first:.3f} -> last window {last:.3f}")
    try:
        print(f"plots: {', '.join(str(p.name) for p in plot_run(paths.root))} in {paths.plots}")
    except Exception as error:  # plots are a convenience: never fail a finished run over them
        print(f"plots skipped: {error}")
    if finished:
        what = "adapter" if (paths.final_adapter / "adapter_config.json").exists() else "model"  # full fine-tune
        print(f"{what} saved to {paths.final_adapter}")
    return first, last


