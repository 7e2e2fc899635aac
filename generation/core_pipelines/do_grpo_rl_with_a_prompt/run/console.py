"""What a person watching the run reads: one compact line per logging step, above the progress bar.

transformers prints every log event's whole dict (40+ keys in a GRPO run) through its ProgressCallback
(PrinterCallback when tqdm is off). `install_compact_console` swaps those callbacks for ours, which print

    step 3/100 | reward 0.812 ±0.24 | max_length 0.81 | mentions_keyword 0.00 | kl 0.0012 | len 10.0 | 574 tok/s | judge 12 calls, 0 failed

and keep the progress bar (with the latest reward on it). The full dict still goes to metrics.jsonl and
wandb / tensorboard, untouched. transformers is imported inside the functions only.
"""

from __future__ import annotations

from typing import Any, Optional

from ..distributed import is_main_process

SKIPPED_REWARDS = ("training_reward", "combined")  # TRL's name for our one reward function; our pre-scaling sum


def format_log_line(logs: dict, step: int, max_steps: Optional[int] = None) -> Optional[str]:
    """The one-line summary of a log event, or None when it has nothing a person follows step by step.

    >>> format_log_line({"reward": 0.5, "reward_std": 0.1, "rewards/fmt/mean": 1.0, "kl": 0.002,
    ...                  "completions/mean_length": 12.0}, 3, 10)
    'step 3/10 | reward 0.500 ±0.10 | fmt 1.00 | kl 0.002 | len 12.0'
    """
    if not logs:
        return None
    if any(key.startswith("eval_") for key in logs):
        return _eval_line(logs, step)
    if "train_runtime" in logs:
        return f"done: {step} steps in {logs['train_runtime']:.1f} s"
    reward = _number(logs.get("rewards/combined/mean"), logs.get("reward"))
    if reward is None and "loss" not in logs:
        return None
    parts = [f"step {step}" + (f"/{max_steps}" if max_steps and max_steps > 0 else "")]
    if reward is not None:
        spread = _number(logs.get("rewards/combined/std"), logs.get("reward_std"))
        parts.append(f"reward {reward:.3f}" + (f" ±{spread:.2f}" if spread is not None else ""))
    for key, value in logs.items():
        if key.startswith("rewards/") and key.endswith("/mean") and isinstance(value, (int, float)):
            name = key[len("rewards/"):-len("/mean")]
            if name not in SKIPPED_REWARDS:
                parts.append(f"{name} {value:.2f}")
    if isinstance(logs.get("kl"), (int, float)):
        parts.append(f"kl {logs['kl']:.3g}")
    if isinstance(logs.get("completions/mean_length"), (int, float)):
        parts.append(f"len {logs['completions/mean_length']:.1f}")
    if isinstance(logs.get("throughput/completion_tokens_per_second"), (int, float)):
        parts.append(f"{logs['throughput/completion_tokens_per_second']:.0f} tok/s")
    judge = _judge_counts(logs)
    if judge is not None:
        calls, cached, failed = judge
        parts.append(f"judge {calls:.0f} calls" + (f" ({cached:.0f} cached)" if cached else "") + f", {failed:.0f} failed")
    return " | ".join(parts)


def _eval_line(logs: dict, step: int) -> str:
    parts = [f"eval at step {step}"]
    reward = _number(logs.get("eval_rewards/combined/mean"), logs.get("eval_reward"))
    if reward is not None:
        parts.append(f"reward {reward:.3f}")
    for key, value in logs.items():
        if key.startswith("eval_rewards/") and key.endswith("/mean") and isinstance(value, (int, float)):
            name = key[len("eval_rewards/"):-len("/mean")]
            if name not in SKIPPED_REWARDS:
                parts.append(f"{name} {value:.2f}")
    return " | ".join(parts)


def _judge_counts(logs: dict) -> Optional[tuple[float, float, float]]:
    """(calls, cache hits, failed) summed over every judge reward's `judge/<name>/...` metrics (judge/stats.py),
    None without a judge."""

    def total(counter: str) -> list[float]:
        return [v for k, v in logs.items()
                if k.startswith("judge/") and k.endswith(f"/{counter}") and isinstance(v, (int, float))]

    calls = total("calls")
    return (sum(calls), sum(total("cache_hits")), sum(total("failed"))) if calls else None


def _number(*candidates: Any) -> Optional[float]:
    return next((float(c) for c in candidates if isinstance(c, (int, float)) and not isinstance(c, bool)), None)


def install_compact_console(trainer: Any) -> None:
    """Replace the trainer's dict-printing ProgressCallback / PrinterCallback with the compact ones."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) is ProgressCallback:
            trainer.remove_callback(callback)
            trainer.add_callback(make_compact_progress_callback(callback.max_str_len))
        elif type(callback) is PrinterCallback:
            trainer.remove_callback(callback)
            trainer.add_callback(make_compact_printer_callback())


def make_compact_progress_callback(max_str_len: int = 100) -> Any:
    """transformers' progress bar, printing the compact line (and showing the reward on the bar) at each log."""
    from transformers.trainer_callback import ProgressCallback

    class CompactProgressCallback(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
            if not is_main_process():
                return
            line = format_log_line(logs or {}, state.global_step, state.max_steps)
            reward = _number((logs or {}).get("rewards/combined/mean"), (logs or {}).get("reward"))
            if self.training_bar is not None:
                if reward is not None and not any(k.startswith("eval_") for k in logs or {}):
                    self.training_bar.set_postfix(reward=f"{reward:.3f}", refresh=False)
                if line:
                    self.training_bar.write(line)
            elif line:
                print(line)

    return CompactProgressCallback(max_str_len)


def make_compact_printer_callback() -> Any:
    """PrinterCallback's replacement when the progress bar is off (disable_tqdm): the compact line only."""
    from transformers import TrainerCallback

    class CompactPrinterCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Optional[dict] = None, **kwargs: Any) -> None:
            line = format_log_line(logs or {}, state.global_step, state.max_steps)
            if is_main_process() and line:
                print(line, flush=True)

    return CompactPrinterCallback()
