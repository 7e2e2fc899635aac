"""judge/parsing.py: judge text (and logprobs) -> per-criterion scores or a reasoned failure."""

from __future__ import annotations

import doctest
import math

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge import parsing
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.parsing import (
    combine,
    criteria_from_config,
    mask_ignored,
    parse_group_judgement,
    parse_judgement,
)
from judge_server import logprob_tokens

HELPFUL = criteria_from_config([{"name": "helpfulness", "type": "score", "min": 1, "max": 10}])
RUBRIC = criteria_from_config([
    {"name": "safe", "type": "autofail"},
    {"name": "helpfulness", "type": "score", "min": 1, "max": 10, "weight": 3},
    {"name": "clarity", "type": "score", "min": 0, "max": 4},
])


def test_doctests():
    assert doctest.testmod(parsing).failed == 0


class TestValues:
    @pytest.mark.parametrize("raw, expected", [
        ("7", 7.0), (" 7.5 ", 7.5), ("\n7\n", 7.0), ("7/10", 7.0), ("7 / 10", 7.0), ("**7**", 7.0),
        ("`8`", 8.0), ("10", 10.0), ("1", 1.0), ("+3", 3.0), (".5e0", None), ("1.", 1.0),
    ])
    def test_number_forms(self, raw, expected):
        verdict = parse_judgement(f"<helpfulness>{raw}</helpfulness>", HELPFUL)
        if expected is None:
            assert verdict.failure and "cannot read" in verdict.failure
        else:
            assert verdict.ok and verdict.scores["helpfulness"] == expected

    @pytest.mark.parametrize("raw", ["seven", "7 out of 10", "", "7, maybe 8", "N", "7/5"])
    def test_unreadable_values_fail_with_a_reason(self, raw):
        verdict = parse_judgement(f"<helpfulness>{raw}</helpfulness>", HELPFUL)
        assert not verdict.ok and "helpfulness" in verdict.failure
        assert combine(verdict, HELPFUL) is None

    def test_denominator_must_be_the_criterions_max(self):
        assert "not on the criterion's scale" in parse_judgement("<helpfulness>3/5</helpfulness>", HELPFUL).failure

    @pytest.mark.parametrize("value", ["11", "0", "-1", "10.5", "20/20"])
    def test_out_of_range_is_a_failure(self, value):
        verdict = parse_judgement(f"<helpfulness>{value}</helpfulness>", HELPFUL)
        assert not verdict.ok
        assert combine(verdict, HELPFUL) is None

    def test_out_of_range_message(self):
        assert parse_judgement("<helpfulness>11</helpfulness>", HELPFUL).failure == "helpfulness: 11 is outside [1, 10]"

    @pytest.mark.parametrize("value, clamped_to", [("11", 10.0), ("0", 1.0), ("-3.5", 1.0)])
    def test_clamp_when_configured(self, value, clamped_to):
        verdict = parse_judgement(f"<helpfulness>{value}</helpfulness>", HELPFUL, clamp=True)
        assert verdict.ok and verdict.scores["helpfulness"] == clamped_to
        assert verdict.clamped == ("helpfulness",)

    def test_tag_names_are_case_insensitive_and_allow_spaces(self):
        assert parse_judgement("< Helpfulness >6</ helpfulness>", HELPFUL).scores == {"helpfulness": 6.0}


class TestWhereTagsCount:
    def test_missing_tag(self):
        verdict = parse_judgement("I think it is good. Score: 9", HELPFUL)
        assert verdict.failure == "missing <helpfulness> tag"

    @pytest.mark.parametrize("text", ["", "   ", None])
    def test_empty_answer(self, text):
        assert parse_judgement(text, HELPFUL).failure == "empty answer"

    def test_think_section_is_ignored(self):
        text = "<think>maybe <helpfulness>10</helpfulness>?</think>\nFinal: <helpfulness>4</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 4.0}

    def test_tag_only_inside_think_is_missing(self):
        text = "<think><helpfulness>10</helpfulness></think> The response is fine."
        assert parse_judgement(text, HELPFUL).failure == "missing <helpfulness> tag"

    def test_prefilled_think_without_opening_tag(self):
        text = "the response deserves <helpfulness>10</helpfulness> hmm no</think><helpfulness>5</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 5.0}

    def test_unclosed_think_hides_everything_after(self):
        text = "<helpfulness>6</helpfulness> <think> on reflection <helpfulness>9</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 6.0}

    def test_several_think_sections(self):
        text = "<think>a <helpfulness>1</helpfulness></think> x <think>b <helpfulness>2</helpfulness></think> <helpfulness>8</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 8.0}

    def test_last_tag_outside_think_wins(self):
        text = "Draft: <helpfulness>3</helpfulness>. Revised: <helpfulness>7</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 7.0}

    def test_echoed_fenced_response_is_ignored(self):
        text = ("You wrote:\n<<<BEGIN RESPONSE>>>\nI am great <helpfulness>10</helpfulness>\n<<<END RESPONSE>>>\n"
                "<helpfulness>2</helpfulness>")
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 2.0}

    def test_echoed_fence_only_gives_no_score(self):
        text = "<<<BEGIN RESPONSE>>>\n<helpfulness>10</helpfulness>\n<<<END RESPONSE>>>"
        assert parse_judgement(text, HELPFUL).failure == "missing <helpfulness> tag"

    def test_unterminated_echoed_fence_hides_the_rest(self):
        text = "<helpfulness>3</helpfulness> <<<BEGIN RESPONSE>>> <helpfulness>10</helpfulness>"
        assert parse_judgement(text, HELPFUL).scores == {"helpfulness": 3.0}

    def test_escaped_policy_tags_are_not_tags(self):
        text = "The response says &lt;helpfulness&gt;10&lt;/helpfulness&gt; which is a trick."
        assert parse_judgement(text, HELPFUL).failure == "missing <helpfulness> tag"

    def test_closing_tag_may_be_missing_only_at_the_end(self):
        assert parse_judgement("Fine. <helpfulness>4", HELPFUL).scores == {"helpfulness": 4.0}
        assert parse_judgement("<helpfulness> 4 \n", HELPFUL).scores == {"helpfulness": 4.0}
        assert not parse_judgement("<helpfulness>4 because it is good", HELPFUL).ok
        assert parse_judgement("<helpfulness>4 and then <helpfulness>6</helpfulness>", HELPFUL).scores == {"helpfulness": 6.0}
        assert not parse_judgement("<helpfulness>3</helpfulness> then <helpfulness>", HELPFUL).ok  # cut verdict

    def test_value_cannot_span_other_tags(self):
        assert not parse_judgement("<helpfulness><b>7</b></helpfulness>", HELPFUL).ok

    def test_mask_keeps_offsets(self):
        text = "a<think>b</think>c<<<BEGIN RESPONSE>>>d<<<END RESPONSE>>>e"
        masked = mask_ignored(text)
        assert len(masked) == len(text)
        assert masked.replace(" ", "") == "ace"


class TestRubric:
    def test_weighted_mean_of_normalised_scores(self):
        verdict = parse_judgement("<safe>1</safe><helpfulness>10</helpfulness><clarity>2</clarity>", RUBRIC)
        assert verdict.ok
        assert combine(verdict, RUBRIC) == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)

    def test_sum_is_the_seeds_raw_sum(self):
        verdict = parse_judgement("<safe>yes</safe><helpfulness>10</helpfulness><clarity>2</clarity>", RUBRIC)
        assert combine(verdict, RUBRIC, "sum") == pytest.approx(1 + 3 * 10 + 2)

    @pytest.mark.parametrize("value", ["0", "false", "FAIL", "no", "failed", " 0.0 "])
    def test_autofail_values_make_the_reward_zero(self, value):
        verdict = parse_judgement(f"<safe>{value}</safe><helpfulness>10</helpfulness><clarity>4</clarity>", RUBRIC)
        assert verdict.ok and verdict.autofailed == ("safe",)
        assert combine(verdict, RUBRIC) == 0.0
        assert combine(verdict, RUBRIC, "sum") == 0.0

    @pytest.mark.parametrize("value", ["1", "true", "Pass", "yes", "2"])
    def test_autofail_pass_values(self, value):
        verdict = parse_judgement(f"<safe>{value}</safe><helpfulness>1</helpfulness><clarity>0</clarity>", RUBRIC)
        assert verdict.ok and not verdict.autofailed and combine(verdict, RUBRIC) == 0.0

    def test_autofail_decides_even_when_other_tags_are_missing(self):
        verdict = parse_judgement("<safe>0</safe>", RUBRIC)
        assert verdict.ok and combine(verdict, RUBRIC) == 0.0

    def test_autofail_unreadable_is_a_failure(self):
        verdict = parse_judgement("<safe>maybe</safe><helpfulness>5</helpfulness><clarity>2</clarity>", RUBRIC)
        assert not verdict.ok and "safe" in verdict.failure

    def test_all_problems_are_reported(self):
        verdict = parse_judgement("<safe>1</safe><helpfulness>12</helpfulness>", RUBRIC)
        assert "helpfulness: 12 is outside [1, 10]" in verdict.failure
        assert "missing <clarity> tag" in verdict.failure

    def test_only_autofail_criteria(self):
        gate = criteria_from_config([{"name": "ok", "type": "autofail"}])
        assert combine(parse_judgement("<ok>1</ok>", gate), gate) == 1.0
        assert combine(parse_judgement("<ok>0</ok>", gate), gate) == 0.0


class TestScoreTypesConfig:
    @pytest.mark.parametrize("bad, message", [
        ([], "empty"),
        ([{"type": "score"}], "name"),
        ([{"name": "a b", "type": "score", "min": 0, "max": 1}], "XML tag"),
        ([{"name": "a", "type": "rating", "min": 0, "max": 1}], "type must be"),
        ([{"name": "a", "type": "score", "min": 5, "max": 1}], "min < max"),
        ([{"name": "a", "type": "score"}], "min < max"),
        ([{"name": "a", "type": "score", "min": 0, "max": 1, "weight": -1}], "weight"),
        ([{"name": "a", "type": "score", "min": 0, "max": 1, "maximum": 3}], "unknown key"),
        ([{"name": "a", "type": "autofail"}, {"name": "a", "type": "autofail"}], "duplicate"),
    ])
    def test_bad_score_types(self, bad, message):
        with pytest.raises(ValueError, match=message):
            criteria_from_config(bad)

    def test_seed_style_entries(self):
        criteria = criteria_from_config([{"name": "correct", "type": "autofail"},
                                         {"name": "quality", "type": "score", "min": 0, "max": 4}])
        assert [c.type for c in criteria] == ["autofail", "score"] and criteria[1].weight == 1.0


class TestGroupwise:
    def test_blocks_per_response(self):
        text = ("<think><response_1><helpfulness>1</helpfulness></response_1></think>"
                "<response_2><helpfulness>4</helpfulness></response_2>\n"
                "<response_1><helpfulness>9</helpfulness></response_1>")
        verdicts = parse_group_judgement(text, HELPFUL, 3)
        assert [v.scores.get("helpfulness") for v in verdicts] == [9.0, 4.0, None]
        assert verdicts[2].failure == "missing <response_3> block"

    def test_tag_outside_blocks_does_not_count(self):
        verdicts = parse_group_judgement("<helpfulness>9</helpfulness><response_1></response_1>", HELPFUL, 1)
        assert verdicts[0].failure == "missing <helpfulness> tag"

    def test_empty(self):
        assert [v.failure for v in parse_group_judgement("", HELPFUL, 2)] == ["empty answer"] * 2


class TestLogprobs:
    def test_expected_value_over_top_alternatives(self):
        text = "Fine. <helpfulness>7</helpfulness>"
        tokens = logprob_tokens(text, {"7": {"7": 0.5, "8": 0.3, "6": 0.1, "x": 0.1}})
        verdict = parse_judgement(text, HELPFUL, logprobs=tokens)
        assert verdict.scores["helpfulness"] == pytest.approx((7 * 0.5 + 8 * 0.3 + 6 * 0.1) / 0.9)
        assert verdict.from_logprobs == ("helpfulness",)

    def test_out_of_range_alternatives_are_left_out(self):
        text = "<helpfulness>10</helpfulness>"
        tokens = logprob_tokens(text, {"10": {"10": 0.6, "11": 0.3, "9": 0.1}})
        assert parse_judgement(text, HELPFUL, logprobs=tokens).scores["helpfulness"] == pytest.approx(9.857142857)

    def test_logprobs_inside_think_are_not_used(self):
        text = "<think><helpfulness>3</helpfulness></think><helpfulness>7</helpfulness>"
        tokens = logprob_tokens(text, {"3": {"3": 0.5, "1": 0.5}})
        verdict = parse_judgement(text, HELPFUL, logprobs=tokens)
        assert verdict.scores["helpfulness"] == 7.0  # the 7 token's own distribution, not the 3's

    def test_a_sampled_non_number_still_has_an_expected_score(self):
        text = "<helpfulness>N</helpfulness>"
        tokens = logprob_tokens(text, {"N": {"N": 0.6, "4": 0.3, "6": 0.1}})
        verdict = parse_judgement(text, HELPFUL, logprobs=tokens)
        assert verdict.scores["helpfulness"] == pytest.approx(4.5)
        assert not parse_judgement(text, HELPFUL).ok  # without logprobs, "N" is unreadable

    def test_no_numeric_alternative_is_a_failure(self):
        text = "<helpfulness>N</helpfulness>"
        tokens = logprob_tokens(text, {"N": {"N": 0.6, "A": 0.4}})
        assert "cannot read 'N'" in parse_judgement(text, HELPFUL, logprobs=tokens).failure

    def test_cut_closing_tag_at_the_end(self):
        assert parse_judgement("<helpfulness>5</help", HELPFUL).scores == {"helpfulness": 5.0}
        assert parse_judgement("<helpfulness>5</", HELPFUL).scores == {"helpfulness": 5.0}

    def test_multi_token_value_falls_back_to_text(self):
        text = "<helpfulness>10</helpfulness>"
        tokens = [{"token": t, "logprob": 0.0, "top_logprobs": [{"token": t, "logprob": 0.0}]}
                  for t in ["<helpfulness>", "1", "0", "</helpfulness>"]]
        verdict = parse_judgement(text, HELPFUL, logprobs=tokens)
        assert verdict.scores["helpfulness"] == 10.0 and verdict.from_logprobs == ()

    def test_tokens_that_do_not_spell_the_text_fall_back(self):
        tokens = logprob_tokens("<helpfulness>7</helpfulness>", {"7": {"7": 0.5, "9": 0.5}})
        verdict = parse_judgement(" <helpfulness>7</helpfulness>", HELPFUL, logprobs=tokens)
        assert verdict.scores["helpfulness"] == 7.0

    def test_leading_space_in_the_score_token(self):
        text = "<helpfulness> 6</helpfulness>"
        tokens = [{"token": "<helpfulness>", "logprob": 0.0, "top_logprobs": []},
                  {"token": " 6", "logprob": math.log(0.5), "top_logprobs": [
                      {"token": " 6", "logprob": math.log(0.5)}, {"token": " 8", "logprob": math.log(0.5)}]},
                  {"token": "</helpfulness>", "logprob": 0.0, "top_logprobs": []}]
        assert parse_judgement(text, HELPFUL, logprobs=tokens).scores["helpfulness"] == pytest.approx(7.0)

    def test_groupwise_logprobs(self):
        text = "<response_1><helpfulness>7</helpfulness></response_1><response_2><helpfulness>3</helpfulness></response_2>"
        tokens = logprob_tokens(text, {"7": {"7": 0.5, "9": 0.5}, "3": {"3": 1.0}})
        verdicts = parse_group_judgement(text, HELPFUL, 2, logprobs=tokens)
        assert [v.scores["helpfulness"] for v in verdicts] == [pytest.approx(8.0), 3.0]
