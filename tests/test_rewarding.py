"""The combined reward TRL calls: routing by dataset, sync + async, combination, scaling, saving, errors."""

from __future__ import annotations

import asyncio

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import effective_scale_rewards
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import (
    REWARD_FUNCTIONS,
    check_initializer_kwargs,
    register_reward_function,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.combined import CombinedReward, completion_text
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.results import RewardFunctionError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards
from generation.errors import UserInputError

INITIALIZED: list[dict] = []


@register_reward_function("test_length_score")
def length_score(scale: float = 1.0):
    INITIALIZED.append({"scale": scale})

    def reward(prompts, completions, **columns):
        return [len(c) * scale for c in completions]

    return reward


@register_reward_function("test_async_answer_match")
def async_answer_match():
    async def reward(prompts, completions, answer, **columns):
        await asyncio.sleep(0.01)
        return [1.0 if c == a else (None if not a else 0.0) for c, a in zip(completions, answer)]

    return reward


@register_reward_function("test_wrong_length")
def wrong_length():
    return lambda prompts, completions, **columns: [1.0]


@register_reward_function("test_raises")
def raises():
    def reward(prompts, completions, **columns):
        raise ZeroDivisionError("boom")

    return reward


@register_reward_function("test_judge_like")
def judge_like(eval_llm_name=None, eval_llm_base_url=None):
    INITIALIZED.append({"eval_llm_name": eval_llm_name, "eval_llm_base_url": eval_llm_base_url})
    return lambda prompts, completions, **columns: [0.0] * len(completions)


def config(datasets, **reward):
    return validate_config({"model": {"base_model_name": "m"}, "datasets": datasets, "reward": reward})


def call(combined, prompts, completions, **columns):
    metrics = {}
    result = asyncio.run(combined(prompts, completions, log_metric=metrics.__setitem__, **columns))
    return result, metrics


P = [{"role": "user", "content": "q"}]


def test_rows_are_scored_only_by_their_dataset_and_combined_with_weights():
    cfg = config([
        {"path": "a.jsonl", "reward_funcs": [{"name": "test_length_score"},
                                             {"name": "test_async_answer_match", "weight": 10}]},
        {"path": "b.jsonl", "reward_funcs": [{"name": "test_length_score", "scale": 0.5}]},
    ])
    combined = CombinedReward(resolve_rewards(cfg))
    rewards, metrics = call(combined, [P] * 3, ["ab", "xyz", "abcd"], answer=["ab", "no", "zz"],
                            dataset_name=["a", "a", "b"], source=["a:1", "a:2", "b:1"])
    assert rewards == [2 + 10, 3 + 0, 4 * 0.5]
    assert metrics["rewards/test_length_score/mean"] == pytest.approx((2 + 3 + 2) / 3)
    assert metrics["rewards/test_async_answer_match/none_count"] == 1  # the b row: not its reward
    assert metrics["rewards/combined/mean"] == pytest.approx((12 + 3 + 2) / 3)


def test_none_scores_are_skipped_and_all_none_stays_none():
    combined = CombinedReward(resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [
        {"name": "test_async_answer_match"}]}])))
    rewards, metrics = call(combined, [P] * 2, ["x", "y"], answer=["", "y"], dataset_name=["a", "a"])
    assert rewards == [None, 1.0]
    assert metrics["rewards/test_async_answer_match/none_count"] == 1


def test_group_standardize_scales_within_each_prompt_group():
    cfg = config([{"path": "a.jsonl", "reward_funcs": [{"name": "test_length_score"}]}],
                 scaling_function="group_standardize")
    combined = CombinedReward(resolve_rewards(cfg), scaling_function="group_standardize")
    q1, q2 = [{"role": "user", "content": "one"}], [{"role": "user", "content": "two"}]
    rewards, _ = call(combined, [q1, q1, q2, q2], ["a", "aaa", "aaaa", "aaaa"], dataset_name=["a"] * 4,
                      source=["s1", "s1", "s2", "s2"])
    assert rewards[0] == pytest.approx(-rewards[1]) and rewards[0] < 0
    assert rewards[2:] == [0.0, 0.0]


def test_initializers_run_once_and_identical_entries_share_one_instance():
    INITIALIZED.clear()
    entry = {"name": "test_length_score", "scale": 2.0}
    plan = resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [entry]},
                                   {"path": "b.jsonl", "reward_funcs": [entry]}]))
    assert INITIALIZED == [{"scale": 2.0}]
    assert plan.per_dataset["a"][0].function is plan.per_dataset["b"][0].function


def test_seed_dataset_level_judge_settings_become_reward_defaults():
    INITIALIZED.clear()
    resolve_rewards(config([{"path": "a.jsonl", "eval_llm_name": "judge-x", "eval_llm_base_url": "http://u",
                             "reward_funcs": [{"name": "test_judge_like", "eval_llm_base_url": "http://own"},
                                              {"name": "test_length_score"}]}]))
    assert INITIALIZED == [{"eval_llm_name": "judge-x", "eval_llm_base_url": "http://own"}, {"scale": 1.0}]


def test_start_up_errors_name_the_dataset_and_reward():
    with pytest.raises(UserInputError, match=r"datasets\[0\] \(a\).*did you mean 'test_length_score'"):
        resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [{"name": "test_length_scor"}]}]))
    with pytest.raises(UserInputError, match=r"reward function 'test_length_score'.*it accepts: scale"):
        resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [{"name": "test_length_score", "scal": 1}]}]))
    with pytest.raises(UserInputError, match="reward: unknown scaling function 'zscore'"):
        resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [{"name": "test_length_score"}]}],
                               scaling_function="zscore"))
    with pytest.raises(UserInputError, match="scale twice"):  # checked where TRL's arguments are built
        effective_scale_rewards(validate_config({
            "model": {"base_model_name": "m"}, "reward": {"scaling_function": "rank"},
            "training_parameters": {"scale_rewards": "group"},
            "datasets": [{"path": "a.jsonl", "reward_funcs": [{"name": "test_length_score"}]}]}))


def test_check_initializer_kwargs_lists_what_is_accepted():
    with pytest.raises(UserInputError, match="it accepts: scale"):
        check_initializer_kwargs("test_length_score", REWARD_FUNCTIONS.get("test_length_score"), {"bogus": 1})


def test_a_broken_reward_is_reported_not_turned_into_zero():
    for name, message in (("test_raises", "raised ZeroDivisionError"), ("test_wrong_length", "returned 1 scores for 2")):
        combined = CombinedReward(resolve_rewards(config([{"path": "a.jsonl", "reward_funcs": [{"name": name}]}])))
        with pytest.raises(RewardFunctionError, match=f"reward '{name}' \\(dataset 'a'\\) {message}"):
            call(combined, [P] * 2, ["x", "y"], dataset_name=["a", "a"])


def test_completion_text_handles_messages_and_cuts_at_stop_sequences():
    assert completion_text([{"role": "assistant", "content": "hi there"}]) == "hi there"
    assert completion_text("Answer: 4 **Finished.** more", ["**Finished.**", "Human:"]) == "Answer: 4 "
    assert completion_text("no stop here", ["###"]) == "no stop here"
