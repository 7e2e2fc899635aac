"""One reward call's scored batch, and its one exchange between processes.

Each process (rank) scores its own completions of a training step. Everything that needs the whole step is
then served by ONE collective, `exchange_step`, which hands every rank every rank's part (in rank order):

- failures: a reward that failed on any rank fails the step on every rank (same checkpoint, same stop);
- scaling: a prompt's group can be spread over ranks, so the scaling functions see the whole step;
- metrics: per-reward means / stds / None counts over every completion of the step, the judge's counters
  summed, its latencies pooled, the advantages TRL will compute (so every rank logs the same, exact values);
- writers: the main process hands the whole step to the listeners (examples, batch log, samples), so each
  completion is written exactly once.

On one process the exchange is free: the part is the whole step.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..distributed import all_gather, rank
from ..run.stop import RunStopError

COMBINED_REWARD_NAME = "combined"


def group_ids_for(prompts: Sequence[Any], sources: Optional[Sequence[Any]]) -> list[str]:
    """One id per completion, shared by completions of the same prompt (same source row and text)."""
    keys = sources if sources is not None else [None] * len(prompts)
    return [f"{key}|{json.dumps(prompt, sort_keys=True, default=str)}" for key, prompt in zip(keys, prompts)]


class StepMetrics:
    """What rewards log during one reward call, with how each value merges over the processes of a step.

    It is what a reward receives as `log_metric`: call it like TRL's (`log_metric(name, value)`, averaged over
    calls and processes), or use `count(name, n)` for a number to sum over processes (calls, tokens, failures)
    and `samples(name, values)` for values to pool (latencies: logged as `<name>_mean` and `<name>_p95`).
    """

    def __init__(self) -> None:
        self.means: dict[str, list[float]] = {}
        self.counts: dict[str, float] = {}
        self.pooled: dict[str, list[float]] = {}

    def __call__(self, name: str, value: float) -> None:
        self.means.setdefault(name, []).append(float(value))

    def count(self, name: str, value: float) -> None:
        self.counts[name] = self.counts.get(name, 0.0) + float(value)

    def samples(self, name: str, values: Sequence[float]) -> None:
        self.pooled.setdefault(name, []).extend(float(v) for v in values)

    @classmethod
    def merged(cls, parts: Sequence["StepMetrics"]) -> "StepMetrics":
        """One StepMetrics holding every part's values (counts summed, means and samples pooled)."""
        whole = cls()
        for part in parts:
            for name, values in part.means.items():
                whole.means.setdefault(name, []).extend(values)
            for name, value in part.counts.items():
                whole.count(name, value)
            for name, values in part.pooled.items():
                whole.samples(name, values)
        return whole

    def values(self) -> dict[str, float]:
        """The scalars to log: means averaged, counts as they are, samples as their mean and 95th percentile."""
        result = {name: sum(values) / len(values) for name, values in self.means.items() if values}
        result.update(self.counts)
        for name, values in self.pooled.items():
            if values:
                ordered = sorted(values)
                result[f"{name}_mean"] = sum(ordered) / len(ordered)
                result[f"{name}_p95"] = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
        return result


@dataclass
class ScoredBatch:
    """What one reward call scored: this rank's part, or (after exchange_step) the whole step."""

    prompts: list
    completions: list[str]
    dataset_names: list[str]
    per_reward: dict[str, list[Optional[float]]]
    combined: list[Optional[float]]  # filled for the whole step, after the exchange
    sources: list[str]
    mode: str = "train"
    trainer_state: Any = None
    group_ids: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    metrics: StepMetrics = field(default_factory=StepMetrics)

    @property
    def step(self) -> int:
        """The optimizer step these completions are trained in (1-based)."""
        return int(getattr(self.trainer_state, "global_step", 0)) + 1


@dataclass
class StepFailure:
    """A rank's scoring failure, as the other ranks learn of it."""

    stops_the_run: bool  # a RunStopError (checkpoint, exit 1), else a crash
    message: str


def exchange_step(part: Optional[ScoredBatch], failure: Optional[BaseException]) -> tuple[ScoredBatch, int]:
    """The whole step (every rank's part, in rank order) and where this rank's part starts in it.

    The one collective of a reward call. A rank whose scoring failed passes `failure` (and no part): it raises
    it again here, and every other rank raises a RunStopError (or RuntimeError) naming that rank, so all stop
    at the same step instead of waiting for each other.
    """
    report = None if failure is None else StepFailure(isinstance(failure, RunStopError), f"{failure}")
    sendable = None if part is None else dataclasses.replace(part, trainer_state=None)  # the same on every rank
    parts = all_gather((sendable, report))
    if failure is not None:
        raise failure
    for index, (_, other) in enumerate(parts):
        if other is not None:
            raise (RunStopError if other.stops_the_run else RuntimeError)(f"rank {index}: {other.message}")
    if len(parts) == 1:
        return part, 0
    batches = [batch for batch, _ in parts]
    start = sum(len(batch.completions) for batch in batches[: rank()])
    whole = ScoredBatch(
        prompts=[prompt for batch in batches for prompt in batch.prompts],
        completions=[text for batch in batches for text in batch.completions],
        dataset_names=[name for batch in batches for name in batch.dataset_names],
        per_reward={label: [score for batch in batches for score in batch.per_reward[label]] for label in part.per_reward},
        combined=[],
        sources=[source for batch in batches for source in batch.sources],
        mode=part.mode,
        trainer_state=part.trainer_state,
        group_ids=[group for batch in batches for group in batch.group_ids],
        completion_tokens=sum(batch.completion_tokens for batch in batches),
        metrics=StepMetrics.merged([batch.metrics for batch in batches]),
    )
    return whole, start


def reward_statistics(batch: ScoredBatch) -> dict[str, float]:
    """rewards/<name>/mean, /std (population, over the present scores) and /none_count of every reward, and
    rewards/combined/mean and /std, over the batch (the whole step: each completion counted once)."""
    metrics: dict[str, float] = {}
    for label, scores in list(batch.per_reward.items()) + [(COMBINED_REWARD_NAME, batch.combined)]:
        present = [s for s in scores if s is not None]
        if label != COMBINED_REWARD_NAME:
            metrics[f"rewards/{label}/none_count"] = float(len(scores) - len(present))
        if present:
            mean = sum(present) / len(present)
            metrics[f"rewards/{label}/mean"] = mean
            metrics[f"rewards/{label}/std"] = math.sqrt(sum((s - mean) ** 2 for s in present) / len(present))
    return metrics
