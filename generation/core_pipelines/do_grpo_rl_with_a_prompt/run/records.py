"""What the run writes while it trains: metrics.jsonl, high-scoring examples, console samples.

The TrainerCallback subclass is created inside `make_metrics_callback` so that importing this module
does not import transformers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

from ..distributed import all_gather, is_distributed, is_main_process
from ..rewards.combined import COMBINED_REWARD_NAME, ScoredBatch
from .files import JsonlAppender, conversation_record


class HighScoringSaver:
    """Appends every completion whose combined reward reaches the threshold to a JSONL file."""

    def __init__(self, appender: JsonlAppender, threshold: Optional[float]):
        self.appender = appender
        self.threshold = threshold
        self.saved = 0

    def __call__(self, batch: ScoredBatch) -> None:
        if self.threshold is None or batch.mode != "train":
            return
        step = batch.step
        for i, combined in enumerate(batch.combined):
            if combined is None or combined < self.threshold:
                continue
            scores = {COMBINED_REWARD_NAME: combined}
            scores.update({label: values[i] for label, values in batch.per_reward.items()})
            self.appender.append(
                conversation_record(batch.prompts[i], batch.completions[i], scores, batch.dataset_names[i], step)
            )
            self.saved += 1


class SamplePrinter:
    """Every `every` steps, prints a few prompt / completion / reward samples to the console."""

    def __init__(self, every: int, count: int = 2, printer: Callable[[str], None] = print):
        self.every = every
        self.count = count
        self.printer = printer
        self._last_step = -1

    def __call__(self, batch: ScoredBatch) -> None:
        step = batch.step
        if batch.mode != "train" or self.every <= 0 or step % self.every or step == self._last_step:
            return
        self._last_step = step
        for i in range(min(self.count, len(batch.completions))):
            prompt = batch.prompts[i][-1]["content"] if batch.prompts[i] else ""
            scores = ", ".join(f"{k}={v[i]:.3g}" for k, v in batch.per_reward.items() if v[i] is not None)
            self.printer(
                f"\n--- sample (step {step}, {batch.dataset_names[i]}) ---\nPROMPT: {prompt[-300:]}\n"
                f"COMPLETION: {batch.completions[i][:500]}\nREWARDS: {scores} -> combined {batch.combined[i]}"
            )


class BatchLog:
    """Appends which rows each step trained on to batches.jsonl (debugging, and resume checks)."""

    def __init__(self, appender: JsonlAppender):
        self.appender = appender

    def __call__(self, batch: ScoredBatch) -> None:
        if batch.mode != "train":
            return
        sources = list(dict.fromkeys(batch.sources))  # one entry per prompt, in order
        self.appender.append({"step": batch.step, "sources": sources})


def fan_out(*listeners: Callable[[ScoredBatch], None]) -> Callable[[ScoredBatch], None]:
    """One on_scored hook that calls several listeners in turn.

    With several processes the listeners run on the main process only, with every rank's completions of
    the call gathered into one batch: each completion is written (and counted) exactly once.
    """

    def notify(batch: ScoredBatch) -> None:
        everything = gather_scored_batch(batch)
        if everything is None:
            return
        for listener in listeners:
            listener(everything)

    return notify


def gather_scored_batch(batch: ScoredBatch) -> Optional[ScoredBatch]:
    """Every rank's batch of this reward call, merged in rank order, on the main process (None elsewhere)."""
    if not is_distributed():
        return batch
    parts = all_gather(dataclasses.replace(batch, trainer_state=None))  # the step is the same on every rank
    if not is_main_process():
        return None
    return ScoredBatch(
        prompts=[prompt for part in parts for prompt in part.prompts],
        completions=[text for part in parts for text in part.completions],
        dataset_names=[name for part in parts for name in part.dataset_names],
        per_reward={label: [score for part in parts for score in part.per_reward[label]] for label in batch.per_reward},
        combined=[value for part in parts for value in part.combined],
        sources=[source for part in parts for source in part.sources],
        mode=batch.mode,
        trainer_state=batch.trainer_state,
    )


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
