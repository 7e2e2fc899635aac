"""What the run writes about each step's completions: high-scoring examples, the batch log, console samples.

Each is a listener of CombinedReward's `on_scored` hook, called on the main process with the whole step.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..rewards.step import COMBINED_REWARD_NAME, ScoredBatch
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
    """One on_scored hook that calls several listeners in turn (CombinedReward calls it on the main process
    only, with the whole step: each completion is written and counted exactly once)."""

    def notify(batch: ScoredBatch) -> None:
        for listener in listeners:
            listener(batch)

    return notify
