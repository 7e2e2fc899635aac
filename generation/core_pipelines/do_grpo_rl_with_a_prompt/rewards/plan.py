"""The config's reward_funcs resolved into a plan: per dataset, its rewards, each initialized once.

Every name is looked up in the registry and every initializer's arguments checked against its signature, and
each initializer runs once, all before any model loads (so a typo or a missing judge prompt fails at
--dry-run). Identical entries shared by several datasets share one initialized reward (one judge client, one
cache). A name may also be a dotted import path to a TRL-style reward function or factory (adapters.py), found
with the config file's folder and the working directory importable (user_code.py).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from generation.errors import UserInputError
from generation.registry import UnknownNameError

from ..config.schema import SEED_DATASET_LLM_KEYS, GRPOPipelineConfig
from .adapters import ORIGIN, find_initializer, is_async_callable
from .post_processors import check_scaling_kwargs, get_combination_function, get_scaling_function
from .registry import RewardFunction, check_initializer_kwargs, load_reward_modules
from .user_code import importable_dirs


@dataclass
class ResolvedReward:
    """One configured reward of one dataset, its initializer already run."""

    label: str
    weight: float
    function: RewardFunction
    is_async: bool
    time_limit_s: Optional[float] = None  # seconds per call; None: no limit
    origin: str = ""  # where an adapted reward came from (adapters.py), e.g. "TRL reward function trl.rewards.x"


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
            parts = [f"{r.label} (weight {r.weight:g}{', async' if r.is_async else ''}{', ' + r.origin if r.origin else ''})"
                     for r in rewards]
            lines.append(f"  {dataset}: {', '.join(parts) or 'NO REWARDS'}")
        return "\n".join(lines)


def resolve_rewards(config: GRPOPipelineConfig, config_dir: Optional[Path] = None) -> RewardPlan:
    """Resolve every reward name, check its kwargs against its initializer, and run each initializer once.

    Identical (name, kwargs) entries shared by several datasets share one initialized reward (one judge
    client, one cache). `config_dir`, the config file's folder, is where reward.modules and dotted paths are
    looked for first (then the working directory). Raises UserInputError naming the reward before any model loads.
    """
    check_reward_settings(config)
    dirs = importable_dirs(config_dir)
    registry = load_reward_modules(config.reward.modules, dirs)
    initialized: dict[str, RewardFunction] = {}
    per_dataset: dict[str, list[ResolvedReward]] = {}
    for index, dataset in enumerate(config.datasets):
        rewards: list[ResolvedReward] = []
        for entry in dataset.reward_funcs:
            try:
                initializer = find_initializer(entry.name, registry, dirs)
            except UserInputError as error:
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
            base = entry.name if entry.name in registry else entry.name.rpartition(".")[2]  # a dotted path's last part
            label = _unique_label(base, [r.label for r in rewards])
            time_limit = entry.time_limit_s or config.reward.time_limit_s
            rewards.append(ResolvedReward(label, entry.weight, function, is_async_callable(function), time_limit,
                                          getattr(initializer, ORIGIN, "")))
        per_dataset[dataset.display_name] = rewards
    return RewardPlan(per_dataset)


def check_reward_settings(config: GRPOPipelineConfig) -> None:
    """Check the reward section: known post-processors, their kwargs, and no double normalisation with TRL's
    multi_objective_aggregation. (TRL's scale_rewards against the scaling function: trainer/grpo_args.py.)"""
    reward = config.reward
    try:
        combination = get_combination_function(reward.combination_function)
        check_scaling_kwargs(reward.scaling_function, reward.scaling_kwargs)
    except (UnknownNameError, TypeError, ValueError) as error:
        raise UserInputError(f"reward: {error}") from None
    if getattr(combination, "per_group", False) and reward.scaling_function != "identity":
        raise UserInputError(
            f"reward.combination_function '{reward.combination_function}' already standardises each reward within "
            f"its prompt group; reward.scaling_function '{reward.scaling_function}' would rescale the result: use "
            "identity (TRL then divides by the batch's std)"
        )
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
