"""The reward contract: what a reward may return, its own copy of the inputs, its time limit, strict JSONL."""

from __future__ import annotations

import asyncio
import doctest
import json
import threading

import numpy as np
import pytest
import torch

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import calls as reward_calls, results as reward_results
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge import JudgeFailureError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.results import check_reward_result
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.combined import CombinedReward
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.results import RewardFunctionError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.stop import RewardTimeoutError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.plan import resolve_rewards
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import JsonlAppender
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.stop import RunStopError, exit_status

P = [{"role": "user", "content": "q"}]
RETURNS: dict[str, object] = {}  # what test_returns hands back, set per test
SEEN: list[dict] = []  # what test_records saw
RELEASE = threading.Event()  # lets the hung sync reward's thread end when the session does


@register_reward_function("test_returns")
def returns(key: str = "value"):
    return lambda prompts, completions, **columns: RETURNS[key]


@register_reward_function("test_mutates_inputs")
def mutates_inputs():
    def reward(prompts, completions, answer, meta, **columns):
        prompts[0].append({"role": "user", "content": "injected"})
        prompts[1][0]["content"] = "edited"
        completions[0] = "rewritten"
        answer[0] = "wrong"
        meta[0]["tag"] = "changed"
        return [0.0] * len(completions)

    return reward


@register_reward_function("test_async_mutates_inputs")
def async_mutates_inputs():
    async def reward(prompts, completions, **columns):
        for prompt in prompts:
            prompt.clear()
        return [0.0] * len(completions)

    return reward


@register_reward_function("test_records")
def records():
    def reward(prompts, completions, answer, meta, **columns):
        SEEN.append(json.loads(json.dumps({"prompts": prompts, "completions": completions, "answer": answer,
                                           "meta": meta})))
        return [1.0] * len(completions)

    return reward


@register_reward_function("test_hangs")
def hangs():
    def reward(prompts, completions, **columns):
        RELEASE.wait()
        return [0.0] * len(completions)

    return reward


CANCELLED: list[bool] = []


@register_reward_function("test_async_hangs")
def async_hangs():
    async def reward(prompts, completions, **columns):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            CANCELLED.append(True)
            raise
        return [0.0] * len(completions)

    return reward


@register_reward_function("test_waits_for_notice")
def waits_for_notice(event_key: str = "noticed"):
    def reward(prompts, completions, **columns):
        RETURNS[event_key].wait(timeout=30)
        RETURNS[event_key].clear()
        return [1.0] * len(completions)

    return reward


ORDER: list[str] = []


@register_reward_function("test_in_turn")
def in_turn(tag: str):
    def reward(prompts, completions, **columns):
        ORDER.append(f"start {tag}")
        threading.Event().wait(0.05)
        ORDER.append(f"end {tag}")
        return [1.0] * len(completions)

    return reward


@pytest.fixture(scope="module", autouse=True)
def _release_hung_threads():
    yield
    RELEASE.set()


def combined_for(reward_funcs: list[dict], **reward) -> CombinedReward:
    config = validate_config({"model": {"base_model_name": "m"}, "reward": reward,
                              "datasets": [{"path": "a.jsonl", "reward_funcs": reward_funcs}]})
    notices: list[str] = []
    combined = CombinedReward(resolve_rewards(config), slow_notice_s=config.reward.slow_notice_s,
                              notify=notices.append)
    combined.notices = notices
    return combined


def score(combined: CombinedReward, n: int = 2, **columns) -> tuple[list, dict]:
    metrics: dict = {}
    columns.setdefault("dataset_name", ["a"] * n)
    rewards = asyncio.run(combined([P] * n, [f"c{i}" for i in range(n)], log_metric=metrics.__setitem__, **columns))
    return rewards, metrics


# ------------------------------------------------------------------------------------ what a reward returns

@pytest.mark.parametrize("result, expected", [
    ([1, 0.5, True], [1.0, 0.5, 1.0]),
    ((0.0, None, -2), [0.0, None, -2.0]),
    (np.array([1.0, np.nan, 3.0]), [1.0, None, 3.0]),
    (torch.tensor([0.5, float("nan"), 2.0]), [0.5, None, 2.0]),
    ([np.float32(0.5), np.int64(2), np.float64("nan")], [0.5, 2.0, None]),
    ([torch.tensor(1.5), torch.tensor(float("nan")), np.array(2.0)], [1.5, None, 2.0]),
])
def test_sequences_of_real_numbers_are_accepted_and_nan_means_no_opinion(result, expected):
    assert check_reward_result(result, 3, "r", "d") == expected


@pytest.mark.parametrize("result, message", [
    ([1.0, float("inf")], r"returned inf at position 1: scores must be finite"),
    (np.array([-np.inf, 0.0]), r"returned -inf at position 0"),
    ({"a": 1.0, "b": 2.0}, r"returned a dict \(\{'a': 1.0, 'b': 2.0\}\)"),
    ("ab", r"returned a str \('ab'\)"),
    (None, r"returned None \(a missing return statement\?\)"),
    (1.0, r"returned a float \(1.0\)"),
    (np.float64(1.0), r"returned a 0-D float64"),
    (np.zeros((2, 1)), r"returned a 2-D ndarray"),
    (torch.zeros(2, 1), r"returned a 2-D Tensor"),
    ([[1.0], [2.0]], r"returned a list \(\[1.0\]\) at position 0"),
    (["1.0", "2.0"], r"returned a str \('1.0'\) at position 0"),
    ({1.0, 2.0}, r"returned a set"),
    ((x for x in (1.0, 2.0)), r"returned a generator"),
    ([1.0], r"returned 1 scores for 2 completions"),
])
def test_anything_else_is_an_error_naming_reward_dataset_and_value(result, message):
    with pytest.raises(RewardFunctionError, match=r"^reward 'my_reward' \(dataset 'my_data'\) " + message):
        check_reward_result(result, 2, "my_reward", "my_data")


def test_through_the_combined_reward_numpy_nan_is_none_and_inf_stops_the_run():
    RETURNS["value"] = np.array([np.nan, 1.0])
    rewards, metrics = score(combined_for([{"name": "test_returns"}]))
    assert rewards == [None, 1.0]
    assert metrics["rewards/test_returns/none_count"] == 1 and metrics["rewards/test_returns/mean"] == 1.0
    assert metrics["rewards/combined/mean"] == 1.0

    RETURNS["value"] = [float("inf"), 1.0]
    with pytest.raises(RewardFunctionError, match=r"reward 'test_returns' \(dataset 'a'\) returned inf"):
        score(combined_for([{"name": "test_returns"}]))


def test_every_way_a_run_stops_early_is_a_run_stop_error():
    for error in (RewardFunctionError, RewardTimeoutError, JudgeFailureError):
        assert issubclass(error, RunStopError)
    assert exit_status(None, None) == 0
    assert exit_status("reward 'x' did not return", None) == 1
    assert exit_status(None, "SIGINT") == 130 and exit_status(None, "SIGTERM") == 143


def test_doctests():
    assert doctest.testmod(reward_results).failed == 0
    assert doctest.testmod(reward_calls).failed == 0


# ------------------------------------------------------------------------------- each reward's own inputs

def test_a_reward_that_edits_its_inputs_changes_nothing_the_next_reward_or_the_saved_examples_see():
    SEEN.clear()
    combined = combined_for([{"name": "test_mutates_inputs"}, {"name": "test_async_mutates_inputs"},
                             {"name": "test_records"}])
    batches = []
    combined.on_scored = batches.append
    prompts = [[{"role": "system", "content": "s"}, {"role": "user", "content": "q1"}],
               [{"role": "user", "content": "q2"}]]
    original = json.loads(json.dumps(prompts))
    columns = {"answer": ["a1", "a2"], "meta": [{"tag": "x"}, {"tag": "y"}], "dataset_name": ["a", "a"]}
    asyncio.run(combined(prompts, ["c1", "c2"], **columns))
    assert SEEN == [{"prompts": original, "completions": ["c1", "c2"], "answer": ["a1", "a2"],
                     "meta": [{"tag": "x"}, {"tag": "y"}]}]
    assert prompts == original and columns["answer"] == ["a1", "a2"] and columns["meta"][0] == {"tag": "x"}
    assert batches[0].prompts == original and batches[0].completions == ["c1", "c2"]


def test_sync_rewards_run_one_after_another():
    ORDER.clear()
    score(combined_for([{"name": "test_in_turn", "tag": "first"}, {"name": "test_in_turn", "tag": "second"}]))
    assert ORDER == ["start first", "end first", "start second", "end second"]


# ------------------------------------------------------------------------------------------- time limits

def test_a_hung_sync_reward_stops_at_its_time_limit_naming_reward_and_dataset():
    combined = combined_for([{"name": "test_length_ok"}, {"name": "test_hangs", "time_limit_s": 0.2}],
                            slow_notice_s=None)
    with pytest.raises(RewardTimeoutError, match=r"^reward 'test_hangs' \(dataset 'a'\) did not return within 0.2 s"):
        score(combined)
    hung = [t for t in threading.enumerate() if t.name == "reward-test_hangs"]
    assert hung and all(t.daemon for t in hung)  # abandoned, and it cannot keep the process alive


def test_a_hung_async_reward_is_cancelled_at_the_reward_section_time_limit():
    CANCELLED.clear()
    with pytest.raises(RewardTimeoutError, match=r"reward 'test_async_hangs' \(dataset 'a'\) did not return within 0.2 s"):
        score(combined_for([{"name": "test_async_hangs"}], time_limit_s=0.2))
    assert CANCELLED == [True]


def test_a_slow_reward_is_named_on_the_console_once_per_run_for_each_threshold():
    RETURNS["noticed"] = threading.Event()
    combined = combined_for([{"name": "test_waits_for_notice"}], slow_notice_s=0.05, time_limit_s=60)
    combined._caller.notify = lambda text: (combined.notices.append(text), RETURNS["noticed"].set())
    assert score(combined)[0] == [1.0, 1.0]  # it returns once it has been named: not an error
    assert combined.notices == ["reward 'test_waits_for_notice' (dataset 'a') still running after 0.05 s "
                                "(time limit 60 s)"]
    score(combined)  # the 0.05 s notice is not repeated: the next one is at 0.1 s
    assert combined.notices[1:] == ["reward 'test_waits_for_notice' (dataset 'a') still running after 0.1 s "
                                    "(time limit 60 s)"]


def test_without_a_time_limit_a_slow_reward_is_still_named():
    RETURNS["noticed"] = threading.Event()
    combined = combined_for([{"name": "test_waits_for_notice"}], slow_notice_s=0.05, time_limit_s=None)
    combined._caller.notify = lambda text: (combined.notices.append(text), RETURNS["noticed"].set())
    assert score(combined)[0] == [1.0, 1.0]
    assert combined.notices == ["reward 'test_waits_for_notice' (dataset 'a') still running after 0.05 s "
                                "(no time limit)"]


def test_time_limit_is_the_nodes_key_not_an_initializer_argument():
    config = validate_config({"model": {"base_model_name": "m"}, "reward": {"time_limit_s": 5},
                              "datasets": [{"path": "a.jsonl", "reward_funcs": [
                                  {"name": "test_length_ok", "time_limit_s": 1.5}, {"name": "test_length_ok"}]}]})
    rewards = resolve_rewards(config).per_dataset["a"]
    assert [r.time_limit_s for r in rewards] == [1.5, 5]
    assert resolve_rewards(validate_config({"model": {"base_model_name": "m"}, "datasets": [
        {"path": "a.jsonl", "reward_funcs": [{"name": "test_length_ok"}]}]})).per_dataset["a"][0].time_limit_s == 600
    with pytest.raises(ValueError, match="time_limit_s"):
        validate_config({"model": {"base_model_name": "m"}, "datasets": [
            {"path": "a.jsonl", "reward_funcs": [{"name": "test_length_ok", "time_limit_s": 0}]}]})


@register_reward_function("test_length_ok")
def length_ok():
    return lambda prompts, completions, **columns: [float(len(c)) for c in completions]


# ----------------------------------------------------------------------------------------- strict JSONL

def test_every_jsonl_line_is_strict_json(tmp_path):
    appender = JsonlAppender(tmp_path / "log.jsonl")
    appender.append({"step": 1, "nan": float("nan"), "inf": float("-inf"), "np": np.float32(0.25),
                     "np_nan": np.float64("nan"), "tensor": torch.tensor([1.0, float("inf")]), "int": np.int64(3),
                     "nested": {"scores": [np.nan, 1.0], "pair": (1, 2)}, "text": "lone \ud800 surrogate"})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    lines = (tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0], parse_constant=refuse)
    assert record == {"step": 1, "nan": None, "inf": None, "np": 0.25, "np_nan": None, "tensor": [1.0, None],
                      "int": 3, "nested": {"scores": [None, 1.0], "pair": [1, 2]}, "text": "lone \ud800 surrogate"}
