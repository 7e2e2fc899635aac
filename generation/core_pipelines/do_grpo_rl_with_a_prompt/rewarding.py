"""Turn the config's reward_funcs into the single reward function TRL calls.

Stages, once per batch of completions:
  1. each row is scored only by its own dataset's rewards (sync ones in turn in a worker thread, async ones
     concurrently), each reward on its own copy of the prompts and columns, each within its time limit,
     each result checked (reward_results.py);
  2. the combination function turns one completion's per-reward scores (and weights) into one number;
  3. completions whose combined reward reaches reward.score_save_threshold are saved;
  4. the scaling function rescales the batch of combined rewards (per prompt group) for TRL.
Per-reward mean / std / None count are logged every step.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from generation.errors import UserInputError
from generation.registry import UnknownNameError

from .config import GRPOPipelineConfig, SEED_DATASET_LLM_KEYS
from .distributed import gather_step, score_on_every_rank
from .json_columns import decode_columns
from .post_processors import check_scaling_kwargs, get_combination_function, get_scaling_function
from .reward_registry import RewardFunction, check_initializer_kwargs, load_reward_modules
from .reward_calls import RewardCaller
from .reward_results import RewardFunctionError
from .run_stop import RewardTimeoutError

COMBINED_REWARD_NAME = "combined"
__all__ = ["CombinedReward", "RewardFunctionError", "RewardTimeoutError", "resolve_rewards"]


@dataclass
class ResolvedReward:
    """One configured reward of one dataset, its initializer already run."""

    label: str
    weight: float
    function: RewardFunction
    is_async: bool
    time_limit_s: Optional[float] = None  # seconds per call; None: no limit


@dataclass
class RewardPlan:
    """dataset name -> its rewards, in config order."""

    per_dataset: dict[str, list[ResolvedReward]]

    def labels(self) -> list[str]:
        seen: dict[str, None] = {}
        for rewards in self.per_dataset.values():
            for reward in rewards:
                seen.setdefault(reward.label, None)
        return list(seen)

    def describe(self) -> str:
        lines = []
        for dataset, rewards in self.per_dataset.items():
            parts = [f"{r.label} (weight {r.weight:g}{', async' if r.is_async else ''})" for r in rewards]
            lines.append(f"  {dataset}: {', '.join(parts) or 'NO REWARDS'}")
        return "\n".join(lines)


def resolve_rewards(config: GRPOPipelineConfig) -> RewardPlan:
    """Resolve every reward name, check its kwargs against its initializer, and run each initializer once.

    Identical (name, kwargs) entries shared by several datasets share one initialized reward (one judge
    client, one cache). Raises UserInputError naming the reward before any model loads.
    """
    check_reward_settings(config)
    registry = load_reward_modules()
    initialized: dict[str, RewardFunction] = {}
    per_dataset: dict[str, list[ResolvedReward]] = {}
    for index, dataset in enumerate(config.datasets):
        rewards: list[ResolvedReward] = []
        for entry in dataset.reward_funcs:
            try:
                initializer = registry.get(entry.name)
            except UnknownNameError as error:
                raise UserInputError(f"datasets[{index}] ({dataset.display_name}).reward_funcs: {error}") from None
            kwargs = _with_dataset_judge_defaults(entry.kwargs, dataset, initializer)
            check_initializer_kwargs(entry.name, initializer, kwargs)
            key = entry.name + json.dumps(kwargs, sort_keys=True, default=str)
            if key not in initialized:
                try:
                    initialized[key] = initializer(**kwargs)
                except (ValueError, TypeError, FileNotFoundError) as error:
                    raise UserInputError(
                        f"datasets[{index}] ({dataset.display_name}): reward '{entry.name}': {error}"
                    ) from error
            function = initialized[key]
            label = _unique_label(entry.name, [r.label for r in rewards])
            time_limit = entry.time_limit_s or config.reward.time_limit_s
            rewards.append(ResolvedReward(label, entry.weight, function, _is_async(function), time_limit))
        per_dataset[dataset.display_name] = rewards
    return RewardPlan(per_dataset)


def check_reward_settings(config: GRPOPipelineConfig) -> None:
    """Check the reward section: known post-processors, their kwargs, and no double scaling with TRL."""
    from .training import effective_scale_rewards

    reward = config.reward
    try:
        get_combination_function(reward.combination_function)
        check_scaling_kwargs(reward.scaling_function, reward.scaling_kwargs)
    except (UnknownNameError, TypeError) as error:
        raise UserInputError(f"reward: {error}") from None
    effective_scale_rewards(config)  # raises on a conflicting scale_rewards
    aggregation = (config.training_parameters.model_extra or {}).get("multi_objective_aggregation")
    if aggregation == "normalize_then_sum" and getattr(get_scaling_function(reward.scaling_function), "normalizes_groups", False):
        raise UserInputError(
            f"training_parameters.multi_objective_aggregation 'normalize_then_sum' standardises each group in TRL, "
            f"and reward.scaling_function '{reward.scaling_function}' already does: keep one of them"
        )


def _with_dataset_judge_defaults(kwargs: dict, dataset: Any, initializer: Callable) -> dict:
    """The seed put eval_llm_* on the dataset: pass them to rewards that accept them and did not set them."""
    parameters = inspect.signature(initializer).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    merged = dict(kwargs)
    for key in SEED_DATASET_LLM_KEYS:
        value = getattr(dataset, key)
        if value is not None and key not in merged and (key in parameters or accepts_any):
            merged[key] = value
    return merged


def _unique_label(name: str, taken: list[str]) -> str:
    label, n = name, 2
    while label in taken:
        label, n = f"{name}_{n}", n + 1
    return label


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))


def completion_text(completion: Any, stop_sequences: Sequence[str] = ()) -> str:
    """Plain text of one TRL completion (a string or a list of messages), cut at the first stop sequence."""
    if isinstance(completion, list):
        completion = "".join(str(message.get("content", "")) for message in completion if isinstance(message, dict))
    text = str(completion)
    cut = min((text.find(stop) for stop in stop_sequences if stop and stop in text), default=-1)
    return text[:cut] if cut >= 0 else text


def group_ids_for(prompts: Sequence[Any], sources: Optional[Sequence[Any]]) -> list[str]:
    """One id per completion, shared by completions of the same prompt (same source row and text)."""
    keys = sources if sources is not None else [None] * len(prompts)
    return [f"{key}|{json.dumps(prompt, sort_keys=True, default=str)}" for key, prompt in zip(keys, prompts)]


@dataclass
class CombinedReward:
    """The one reward function handed to TRL: routes, combines, saves high scorers, scales, logs.

    Async so that every LLM-judge call of a step runs concurrently on TRL's event loop (TRL runs async
    reward functions there, in a daemon thread, and waits for the result). A reward still running after
    `slow_notice_s` is named through `notify` (again at each doubling, once per run for each).
    """

    plan: RewardPlan
    combination_function: str = "sum"
    scaling_function: str = "identity"
    scaling_kwargs: dict = field(default_factory=dict)
    stop_sequences: Sequence[str] = ()
    on_scored: Optional[Callable[["ScoredBatch"], None]] = None
    mode_probe: Callable[[], str] = lambda: "train"  # the trainer sets this: "train" or "eval"
    pending_metrics: dict[str, list[float]] = field(default_factory=dict)
    slow_notice_s: Optional[float] = 30.0
    notify: Callable[[str], None] = print
    json_columns: frozenset = frozenset()  # columns TRL hands over as JSON text (json_columns.py): decoded here

    _last_call: Optional[float] = None

    def __post_init__(self) -> None:
        # TRL logs what this returns (after scaling) as rewards/training_reward/*; we log the combined reward
        # before scaling as rewards/combined/* and each reward as rewards/<name>/*.
        self.__name__ = "training_reward"
        self._combine = get_combination_function(self.combination_function)
        self._scale = get_scaling_function(self.scaling_function)
        self._caller = RewardCaller(self.slow_notice_s, self.notify)

    async def __call__(self, prompts: list, completions: list, **columns: Any) -> list[Optional[float]]:
        columns = decode_columns(columns, self.json_columns)
        texts = [completion_text(c, self.stop_sequences) for c in completions]
        dataset_names = columns.get("dataset_name") or [next(iter(self.plan.per_dataset))] * len(texts)
        per_reward = await score_on_every_rank(self._score_all(prompts, texts, dataset_names, columns))

        combined: list[Optional[float]] = []
        for i, dataset in enumerate(dataset_names):
            rewards = self.plan.per_dataset.get(dataset, [])
            scores = [per_reward[r.label][i] for r in rewards]
            combined.append(self._combine(scores, [r.weight for r in rewards]))

        self._log_stats(per_reward, combined, columns.get("log_metric"), columns.get("completion_ids"))
        if self.on_scored is not None:
            self.on_scored(ScoredBatch(
                prompts, texts, dataset_names, per_reward, combined, columns.get("source") or [],
                self.mode_probe(), columns.get("trainer_state"),
            ))
        # several processes: a prompt's group can be spread over ranks, so scale the whole step's batch
        everyone, everyones_groups, start = gather_step(combined, group_ids_for(prompts, columns.get("source")))
        return self._scale(everyone, everyones_groups, **self.scaling_kwargs)[start:start + len(combined)]

    async def _score_all(self, prompts, texts, dataset_names, columns) -> dict[str, list[Optional[float]]]:
        """Every reward's score for every completion (None where it does not apply or has no opinion).

        Each reward gets its own copy of the prompts and columns (reward_calls.py). Sync rewards run one
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

    def _log_stats(
        self, per_reward: dict, combined: list, log_metric: Optional[Callable], completion_ids: Optional[list]
    ) -> None:
        metrics: dict[str, float] = {}
        now = time.monotonic()
        if completion_ids is not None and self._last_call is not None and self.mode_probe() == "train":
            # tokens generated in this batch over the time since the previous batch: one step's throughput
            metrics["throughput/completion_tokens_per_second"] = sum(map(len, completion_ids)) / (now - self._last_call)
        self._last_call = now
        for label, scores in list(per_reward.items()) + [(COMBINED_REWARD_NAME, combined)]:
            present = [s for s in scores if s is not None]
            if label != COMBINED_REWARD_NAME:
                metrics[f"rewards/{label}/none_count"] = float(sum(s is None for s in scores))
            if present:
                mean = sum(present) / len(present)
                metrics[f"rewards/{label}/mean"] = mean
                metrics[f"rewards/{label}/std"] = math.sqrt(sum((s - mean) ** 2 for s in present) / len(present))
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


@dataclass
class ScoredBatch:
    """What one reward call saw and scored, for savers and sample printers."""

    prompts: list
    completions: list[str]
    dataset_names: list[str]
    per_reward: dict[str, list[Optional[float]]]
    combined: list[Optional[float]]
    sources: list[str]
    mode: str = "train"
    trainer_state: Any = None

    @property
    def step(self) -> int:
        """The optimizer step these completions are trained in (1-based)."""
        return int(getattr(self.trainer_state, "global_step", 0)) + 1
