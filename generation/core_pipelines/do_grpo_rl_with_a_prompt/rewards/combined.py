"""The one reward function TRL calls: every configured reward, combined, scaled, logged, saved.

Stages, once per batch of completions (one training step's, on each process):
  1. each row is scored only by its own dataset's rewards (sync ones in turn in a worker thread, async ones
     concurrently), each reward on its own copy of the prompts and columns, each within its time limit, each
     result checked (calls.py, results.py);
  2. the step is exchanged between processes once (step.py): a failure on any rank stops every rank;
  3. the combination function turns each completion's per-reward scores (and weights) into one number (one
     completion at a time, or, for normalize_then_sum, within each prompt's whole group);
  4. the scaling function rescales the whole step's combined rewards (per prompt group) for TRL;
  5. the step's metrics are logged (per reward, combined, the judge's, the advantages TRL will compute), and
     the main process hands the whole step to the listeners (high-scoring examples, batch log, samples).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ..data.json_columns import decode_columns
from ..distributed import is_main_process
from .advantage_metrics import advantage_metrics, trl_advantages
from .calls import RewardCaller
from .plan import RewardPlan
from .post_processors import combine_step, get_combination_function, get_scaling_function
from .step import ScoredBatch, StepMetrics, exchange_step, group_ids_for, reward_statistics


def completion_text(completion: Any, stop_sequences: Sequence[str] = ()) -> str:
    """Plain text of one TRL completion (a string or a list of messages), cut at the first stop sequence."""
    if isinstance(completion, list):
        completion = "".join(str(message.get("content", "")) for message in completion if isinstance(message, dict))
    text = str(completion)
    cut = min((text.find(stop) for stop in stop_sequences if stop and stop in text), default=-1)
    return text[:cut] if cut >= 0 else text


@dataclass
class CombinedReward:
    """The one reward function handed to TRL: routes, combines, scales, logs, hands the step to listeners.

    Async so that every LLM-judge call of a step runs concurrently on TRL's event loop (TRL runs async
    reward functions there, in a daemon thread, and waits for the result). A reward still running after
    `slow_notice_s` is named through `notify` (again at each doubling, once per run for each).
    `scale_rewards` and `aggregation` are TRL's settings for this run, to log the advantages TRL computes.
    """

    plan: RewardPlan
    combination_function: str = "sum"
    scaling_function: str = "identity"
    scaling_kwargs: dict = field(default_factory=dict)
    stop_sequences: Sequence[str] = ()
    on_scored: Optional[Callable[[ScoredBatch], None]] = None
    mode_probe: Callable[[], str] = lambda: "train"  # the trainer sets this: "train" or "eval"
    scale_rewards: str = "group"
    aggregation: str = "sum_then_normalize"
    pending_metrics: dict[str, list[float]] = field(default_factory=dict)
    slow_notice_s: Optional[float] = 30.0
    notify: Callable[[str], None] = print
    json_columns: frozenset = frozenset()  # columns TRL hands over as JSON text (data/json_columns.py): decoded here
    # trainer/judged_rounds.py (overlap_judging): this rank's part, scored in the background by score_part; the
    # next call takes it (a concurrent future) instead of scoring again. Set and cleared around that call.
    prefetched_part: Any = None

    _last_call: Optional[float] = None

    def __post_init__(self) -> None:
        # TRL logs what this returns (after scaling) as rewards/training_reward/*; we log the combined reward
        # before scaling as rewards/combined/* and each reward as rewards/<name>/*.
        self.__name__ = "training_reward"
        self._combine = get_combination_function(self.combination_function)
        self._scale = get_scaling_function(self.scaling_function)
        self._caller = RewardCaller(self.slow_notice_s, self.notify)

    async def __call__(self, prompts: list, completions: list, **columns: Any) -> list[Optional[float]]:
        part, failure = None, None
        try:
            part = await (asyncio.wrap_future(self.prefetched_part) if self.prefetched_part is not None
                          else self.score_part(prompts, completions, **columns))
        except Exception as error:  # raised again by exchange_step, on every rank
            failure = error
        step, start = exchange_step(part, failure)
        step.combined = self._combine_step(step)
        scaled = self._scale(step.combined, step.group_ids, **self.scaling_kwargs)
        self._log(step, scaled, columns.get("log_metric"))
        if self.on_scored is not None and is_main_process():  # the writers: once, with the whole step
            self.on_scored(step)
        return scaled[start:start + len(part.completions)]

    async def score_part(self, prompts: list, completions: list, **columns: Any) -> ScoredBatch:
        """This process's completions, scored by their datasets' rewards (combined after the exchange): the reward
        calls only, no collective, nothing written (overlap_judging runs it in the background)."""
        columns = decode_columns(columns, self.json_columns)
        texts = [completion_text(c, self.stop_sequences) for c in completions]
        dataset_names = columns.get("dataset_name") or [next(iter(self.plan.per_dataset))] * len(texts)
        metrics = StepMetrics()  # what the rewards log, merged over the processes by exchange_step
        per_reward = await self._score_all(prompts, texts, dataset_names, {**columns, "log_metric": metrics})
        sources = columns.get("source") or []
        return ScoredBatch(
            prompts, texts, dataset_names, per_reward, [], sources, self.mode_probe(),
            columns.get("trainer_state"), group_ids_for(prompts, sources or None),
            sum(map(len, columns.get("completion_ids") or [])), metrics,
        )

    async def _score_all(self, prompts, texts, dataset_names, columns) -> dict[str, list[Optional[float]]]:
        """Every reward's score for every completion (None where it does not apply or has no opinion).

        Each reward gets its own copy of the prompts and columns (calls.py). Sync rewards run one
        after another in a worker thread, async ones concurrently beside them; the first failure cancels
        the rest.
        """
        per_reward: dict[str, list[Optional[float]]] = {label: [None] * len(texts) for label in self.plan.labels()}
        async_calls, sync_calls = [], []
        for dataset, rewards in self.plan.per_dataset.items():
            rows = [i for i, name in enumerate(dataset_names) if name == dataset]
            if not rows:
                continue
            subset_columns = {
                key: ([value[i] for i in rows] if isinstance(value, list) and len(value) == len(texts) else value)
                for key, value in columns.items()
            }
            subset_prompts = [prompts[i] for i in rows]
            subset_texts = [texts[i] for i in rows]
            for reward in rewards:
                arguments = (reward, dataset, subset_prompts, subset_texts, subset_columns)
                (async_calls if reward.is_async else sync_calls).append((reward.label, rows, arguments))

        async def in_turn() -> list:
            return [await self._caller.call(*arguments) for _, _, arguments in sync_calls]

        tasks = [asyncio.ensure_future(self._caller.call(*arguments)) for _, _, arguments in async_calls]
        tasks.append(asyncio.ensure_future(in_turn()))
        try:
            *async_results, sync_results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        for (label, rows, _), scores in zip(async_calls + sync_calls, async_results + sync_results):
            for i, score in zip(rows, scores):
                per_reward[label][i] = score
        return per_reward

    def _combine_step(self, step: ScoredBatch) -> list[Optional[float]]:
        """Each completion's rewards combined into one number (with its dataset's rewards and weights)."""
        rewards = [self.plan.per_dataset.get(dataset, []) for dataset in step.dataset_names]
        scores = [[step.per_reward[r.label][i] for r in row_rewards] for i, row_rewards in enumerate(rewards)]
        return combine_step(self._combine, scores, [[r.weight for r in row] for row in rewards], step.group_ids)

    def _log(self, step: ScoredBatch, scaled: list, log_metric: Optional[Callable]) -> None:
        """Log the whole step's metrics (the same values on every process)."""
        metrics: dict[str, float] = {}
        now = time.monotonic()
        if step.completion_tokens and self._last_call is not None and step.mode == "train":
            # tokens generated in this step over the time since the previous one: the step's throughput
            metrics["throughput/completion_tokens_per_second"] = step.completion_tokens / (now - self._last_call)
        self._last_call = now
        metrics.update(reward_statistics(step))
        metrics.update(step.metrics.values())
        metrics.update(advantage_metrics(trl_advantages(scaled, step.group_ids, self.scale_rewards, self.aggregation),
                                         step.group_ids))
        for name, value in metrics.items():
            if log_metric is not None:
                log_metric(name, value)
            else:  # older TRL: the metrics callback picks these up
                self.pending_metrics.setdefault(name, []).append(value)

    def pop_pending_metrics(self) -> dict[str, float]:
        """Averages of metrics logged without TRL's log_metric since the last call (then cleared)."""
        averaged = {name: sum(values) / len(values) for name, values in self.pending_metrics.items() if values}
        self.pending_metrics.clear()
        return averaged
