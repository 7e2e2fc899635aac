"""combination_function normalize_then_sum (GDPO): the advantages TRL trains on equal TRL's own
multi_objective_aggregation 'normalize_then_sum' computed on the same per-reward scores.

TRL sees our one combined reward, so its own option cannot help. Ours standardises each reward within its prompt
group before the weighted sum; TRL's scale_rewards 'batch' (set for the run) then takes the batch step. The
reference below is TRL 1.16's arithmetic (GRPOTrainer._generate_and_score_completions, both aggregation
branches), run with TRL's own nanstd on torch tensors.
"""

from __future__ import annotations

import asyncio
import math

import pytest
import torch
from trl.trainer.utils import nanstd

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import post_processors as pp
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.combined import CombinedReward
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import effective_scale_rewards
from generation.errors import UserInputError

GENERATIONS = 4
NAN = float("nan")
# three prompts x 4 completions; a 0/1 format check beside a judge on 1-10: the judge's scale would drown the check
FORMAT = [1, 0, 1, 0, 1, 1, 1, 1, 0, 1, NAN, 1]     # group 2: no variance; one None in group 3
JUDGE = [7, 7, 3, 9, 2, 8, 5, 5, NAN, 6, NAN, 4]    # the 11th completion has no score at all: unscorable
WEIGHTS = [1.0, 2.0]


def trl_normalize_then_sum(per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """TRL 1.16, multi_objective_aggregation == 'normalize_then_sum' (grpo_trainer.py)."""
    unscorable = torch.isnan(per_func).all(dim=1)
    grouped = per_func.view(-1, GENERATIONS, per_func.shape[1])
    mean_k = torch.nanmean(grouped, dim=1, keepdim=True)
    std_k = nanstd(grouped, dim=1, keepdim=True)
    reward_k = ((grouped - mean_k) / (std_k + 1e-4)).view(-1, per_func.shape[1])
    rewards = (reward_k * weights.unsqueeze(0)).nansum(dim=1)
    rewards[unscorable] = torch.nan
    advantages = (rewards - torch.nanmean(rewards)) / (nanstd(rewards).expand_as(rewards) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def trl_sum_then_normalize_batch(rewards: torch.Tensor) -> torch.Tensor:
    """TRL 1.16, multi_objective_aggregation == 'sum_then_normalize' with scale_rewards 'batch', one function."""
    mean_grouped = torch.nanmean(rewards.view(-1, GENERATIONS), dim=1).repeat_interleave(GENERATIONS, dim=0)
    advantages = (rewards - mean_grouped) / (nanstd(rewards).expand_as(rewards) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def as_tensor(values) -> torch.Tensor:
    return torch.tensor([NAN if v is None else v for v in values], dtype=torch.float64)


def groups() -> list[str]:
    return [f"prompt-{i // GENERATIONS}" for i in range(len(FORMAT))]


def none_for_nan(values):
    return [None if isinstance(v, float) and math.isnan(v) else float(v) for v in values]


def test_trl_trains_on_the_advantages_of_its_own_normalize_then_sum():
    scores = [list(row) for row in zip(none_for_nan(FORMAT), none_for_nan(JUDGE))]
    combined = pp.normalize_then_sum(scores, [WEIGHTS] * len(scores), groups())
    ours = trl_sum_then_normalize_batch(as_tensor(combined))
    reference = trl_normalize_then_sum(torch.tensor([FORMAT, JUDGE], dtype=torch.float64).T, torch.tensor(WEIGHTS,
                                                                                                          dtype=torch.float64))
    assert torch.allclose(ours, reference, atol=1e-6), (ours, reference)
    assert combined[10] is None  # unscorable stays None: TRL gives it advantage 0
    assert combined[4:8] == pytest.approx([2 * (v - 5.0) / (math.sqrt(6) + 1e-4) for v in (2, 8, 5, 5)])


def test_each_reward_weighs_by_its_weight_not_by_its_scale():
    # one group, two rewards that rank the completions oppositely: with equal weights they cancel exactly,
    # whatever their scales (a plain sum would follow the 1-10 judge)
    scores = [[0.0, 9.0], [1.0, 1.0]]
    combined = pp.normalize_then_sum(scores, [[1.0, 1.0]] * 2, ["g", "g"])
    assert combined == pytest.approx([0.0, 0.0], abs=1e-3)  # up to the 1e-4 TRL adds to each std
    assert pp.weighted_sum(scores[0], [1.0, 1.0]) > pp.weighted_sum(scores[1], [1.0, 1.0])


@register_reward_function("test_gdpo_format")
def format_check():
    return lambda prompts, completions, **columns: [1.0 if c.startswith("A:") else 0.0 for c in completions]


@register_reward_function("test_gdpo_judge")
def judge_like():
    return lambda prompts, completions, **columns: [float(len(c)) for c in completions]


def config(**reward):
    return validate_config({
        "model": {"base_model_name": "m"}, "reward": {"combination_function": "normalize_then_sum", **reward},
        "datasets": [{"path": "a.jsonl", "reward_funcs": [{"name": "test_gdpo_format"},
                                                            {"name": "test_gdpo_judge", "weight": 2.0}]}]})


def test_the_combined_reward_standardises_within_groups_and_tells_trl_to_scale_by_the_batch():
    cfg = config()
    assert effective_scale_rewards(cfg) == "batch"
    reward = CombinedReward(resolve_rewards(cfg), combination_function="normalize_then_sum", scale_rewards="batch")
    q1, q2 = [{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]
    texts = ["A: yes", "no", "A: a much longer answer", "A: mid", "A: x", "A: y", "A: zz", "A: zzz"]
    logged: dict[str, float] = {}
    result = asyncio.run(reward([q1] * 4 + [q2] * 4, texts, dataset_name=["a"] * 8, source=["s1"] * 4 + ["s2"] * 4,
                                log_metric=logged.__setitem__))
    expected = pp.normalize_then_sum([[1.0 if t.startswith("A:") else 0.0, float(len(t))] for t in texts],
                                     [[1.0, 2.0]] * 8, ["g1"] * 4 + ["g2"] * 4)
    assert result == pytest.approx(expected)
    assert sum(result[:4]) == pytest.approx(0.0, abs=1e-9) and sum(result[4:]) == pytest.approx(0.0, abs=1e-9)
    assert logged["rewards/combined/mean"] == pytest.approx(sum(expected) / 8)


@pytest.mark.parametrize("settings, message", [
    ({"scaling_function": "group_standardize"}, "already standardises each reward within its prompt group"),
])
def test_a_second_normalisation_is_refused_before_the_model_loads(settings, message):
    with pytest.raises(UserInputError, match=message):
        resolve_rewards(config(**settings))


def test_trls_own_scale_settings_that_would_undo_it_are_refused():
    for training, message in (({"scale_rewards": "group"}, "needs TRL's scale_rewards 'batch'"),
                              ({"multi_objective_aggregation": "normalize_then_sum"}, "ignores scale_rewards")):
        cfg = validate_config({**config().model_dump(exclude_none=True), "training_parameters": training})
        with pytest.raises(UserInputError, match=message):
            effective_scale_rewards(cfg)
