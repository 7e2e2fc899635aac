"""The newer built-ins: token-length shaping (DAPO overlong, cosine correctness), tag layouts, reasoning steps."""

from __future__ import annotations

import logging

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin import length_shaping, reasoning_steps, tags


def call(reward, completions, **columns):
    return reward([[{"role": "user", "content": "q"}]] * len(completions), completions, **columns)


class TestSoftOverlongPunishment:
    def test_schedule(self):
        reward = length_shaping.soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
        ids = [[7] * n for n in (0, 80, 81, 90, 99, 100, 101, 500)]
        assert call(reward, ["x"] * len(ids), completion_ids=ids) == pytest.approx(
            [0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0])

    def test_counts_tokens_not_characters(self):
        reward = length_shaping.soft_overlong_punishment(max_completion_len=10, soft_punish_cache=5)
        assert call(reward, ["a very long text " * 50], completion_ids=[[1, 2, 3]]) == [0.0]

    def test_zero_cache_is_a_hard_limit(self):
        reward = length_shaping.soft_overlong_punishment(max_completion_len=10, soft_punish_cache=0)
        assert call(reward, ["x", "y"], completion_ids=[[1] * 10, [1] * 11]) == [0.0, -1.0]

    def test_without_completion_ids_none_and_warned_once(self, caplog):
        reward = length_shaping.soft_overlong_punishment(100, 20)
        with caplog.at_level(logging.WARNING):
            assert call(reward, ["x", "y"]) == [None, None]
            assert call(reward, ["x"]) == [None]
        assert sum("completion_ids" in r.getMessage() for r in caplog.records) == 1

    @pytest.mark.parametrize("kwargs", [{"max_completion_len": 10, "soft_punish_cache": 10},
                                        {"max_completion_len": 10, "soft_punish_cache": -1}])
    def test_bad_settings(self, kwargs):
        with pytest.raises(ValueError):
            length_shaping.soft_overlong_punishment(**kwargs)


class TestCosineScaledCorrectness:
    def test_right_short_beats_right_long_and_wrong_long_beats_wrong_short(self):
        reward = length_shaping.cosine_scaled_correctness(max_len=100)
        completions = [r"\boxed{\frac{1}{3}}"] * 2 + [r"\boxed{\frac{1}{2}}"] * 2
        ids = [[1] * 25, [1] * 75] * 2
        scores = call(reward, completions, answer=[r"\frac13"] * 4, completion_ids=ids)
        assert scores[0] > scores[1] > 0 > scores[3] > scores[2]

    def test_numeric_mode_and_reasoning_stripped(self):
        reward = length_shaping.cosine_scaled_correctness(max_len=10, mode="numeric", cot_end="</think>")
        scores = call(reward, ["<think>42</think> #### 41", "<think>x</think> #### 42"], answer=["42"] * 2,
                      completion_ids=[[1] * 0, [1] * 0])
        assert scores == [pytest.approx(-1.0), pytest.approx(1.0)]

    def test_empty_or_unreadable_reference_is_none_and_counted(self):
        logged = {}
        reward = length_shaping.cosine_scaled_correctness(max_len=10)
        scores = call(reward, [r"\boxed{2}", r"\boxed{2}"], answer=["", "forty two"], completion_ids=[[1], [1]],
                      log_metric=lambda name, value: logged.update({name: value}))
        assert scores == [None, None]
        assert logged == {"rewards/cosine_scaled_correctness/unparsed_reference": 1.0}

    def test_bad_settings(self):
        with pytest.raises(ValueError):
            length_shaping.cosine_scaled_correctness(max_len=0)
        with pytest.raises(ValueError, match="cosine_scaled_correctness"):
            length_shaping.cosine_scaled_correctness(mode="fuzzy")


class TestThinkAnswerFormat:
    def test_layouts(self):
        reward = tags.think_answer_format()
        completions = [
            "<think>reason</think><answer>42</answer>",
            "  <think>reason</think>\n<answer>42</answer>\n",
            "<think>a</think><answer>b</answer> trailing text",
            "preamble <think>a</think><answer>b</answer>",
            "<think>a</think><answer>b</answer><answer>c</answer>",
            "<answer>b</answer><think>a</think>",
            "<think>a</think> b",
            "",
        ]
        assert call(reward, completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]

    def test_newlines(self):
        reward = tags.think_answer_format(newlines=True)
        assert call(reward, ["<think>\na\n</think>\n<answer>\nb\n</answer>", "<think>a</think><answer>b</answer>"]) == [
            1.0, 0.0]

    def test_prefilled_think(self):
        reward = tags.think_answer_format(think_prefilled=True)
        assert call(reward, ["reasoning</think><answer>4</answer>", "<think>r</think><answer>4</answer>"]) == [1.0, 1.0]
        assert call(tags.think_answer_format(), ["reasoning</think><answer>4</answer>"]) == [0.0]

    def test_custom_tags_and_scores(self):
        reward = tags.think_answer_format(think_tag="reasoning", answer_tag="final", pass_score=2.0, fail_score=-1.0)
        assert call(reward, ["<reasoning>r</reasoning><final>4</final>", "<think>r</think><answer>4</answer>"]) == [
            2.0, -1.0]

    def test_bad_tag(self):
        with pytest.raises(ValueError):
            tags.think_answer_format(think_tag="<think>")


class TestTagCount:
    def test_partial_credit(self):
        reward = tags.tag_count()
        full = "<think>\nr\n</think>\n<answer>\n4\n</answer>"
        assert call(reward, [full, full + full, "r\n</think>\n4", ""]) == [1.0, 0.0, 0.25, 0.0]

    def test_custom_tags(self):
        reward = tags.tag_count(think_tag="reasoning", answer_tag="final")
        assert call(reward, ["<reasoning>\nr\n</reasoning>\n<final>\n4\n</final>"]) == [1.0]


class TestReasoningSteps:
    def test_markers(self):
        reward = reasoning_steps.reasoning_steps()
        completions = ["1. add\n2. carry\n3. done", "- a\n- b", "Next, go.", "no steps here", ""]
        assert call(reward, completions) == pytest.approx([1.0, 1 / 3, 1 / 3, 0.0, 0.0])

    def test_min_steps(self):
        assert call(reasoning_steps.reasoning_steps(min_steps=1), ["Step 1: x"]) == [1.0]
        with pytest.raises(ValueError):
            reasoning_steps.reasoning_steps(min_steps=0)
