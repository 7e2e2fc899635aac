"""Combination and scaling functions: None handling, groups, ties, all-None; and the scale_rewards rule."""

from __future__ import annotations

import doctest
import math

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import post_processors as pp
from generation.registry import UnknownNameError

NAN = float("nan")


class TestRegistries:
    def test_names(self):
        assert pp.COMBINATION_FUNCTIONS.names() == ["mean", "min", "normalize_then_sum", "sum", "weighted_mean",
                                                   "weighted_sum"]
        assert pp.SCALING_FUNCTIONS.names() == [
            "clip", "group_standardize", "grpo", "grpo_passk", "identity", "rank", "reinforce_plus_plus",
            "reinforce_plus_plus_baseline", "rloo",
        ]

    def test_unknown_names_list_valid_ones(self):
        with pytest.raises(UnknownNameError, match="did you mean 'mean'.*known: mean, min, normalize_then_sum, sum"):
            pp.get_combination_function("maen")
        with pytest.raises(UnknownNameError, match="known: clip, group_standardize, grpo, grpo_passk, identity"):
            pp.get_scaling_function("none")

    def test_normalizes_groups_flags(self):
        flags = {name: pp.get_scaling_function(name).normalizes_groups for name in pp.SCALING_FUNCTIONS.names()}
        assert flags == {"clip": False, "group_standardize": True, "grpo": True, "grpo_passk": True,
                         "identity": False, "rank": True, "reinforce_plus_plus": False,
                         "reinforce_plus_plus_baseline": True, "rloo": True}

    def test_each_scaler_declares_the_scale_rewards_it_needs(self):
        needs = {name: pp.required_scale_rewards(name) for name in pp.SCALING_FUNCTIONS.names()}
        assert needs == {"clip": None, "group_standardize": "none", "grpo": "none", "grpo_passk": "none",
                         "identity": None, "rank": "none", "reinforce_plus_plus": "batch",
                         "reinforce_plus_plus_baseline": "none", "rloo": "none"}

    def test_a_group_normaliser_cannot_ask_for_batch_scaling(self):
        with pytest.raises(ValueError, match="must be 'none'"):
            pp.register_scaling_function("_test_bad", normalizes_groups=True, trl_scale_rewards="batch")

    def test_register_custom(self, monkeypatch):
        # work on copies so that the test names do not stay in the real registries
        monkeypatch.setattr(pp.SCALING_FUNCTIONS, "_entries", dict(pp.SCALING_FUNCTIONS._entries))
        monkeypatch.setattr(pp.COMBINATION_FUNCTIONS, "_entries", dict(pp.COMBINATION_FUNCTIONS._entries))

        @pp.register_scaling_function("_test_double", normalizes_groups=False)
        def double(rewards, group_ids):
            return [None if r is None else 2 * r for r in rewards]

        assert pp.get_scaling_function("_test_double")([1.0, None], [0, 0]) == [2.0, None]
        assert double.normalizes_groups is False

        @pp.register_combination_function("_test_first")
        def first(scores, weights=None):
            return scores[0]

        assert pp.get_combination_function("_test_first")([3.0], [1.0]) == 3.0

    def test_interplay_text(self):
        text = pp.describe_interplay()
        assert "scale_rewards" in text and "reward_weights" in text and "weight" in text

    def test_doctests(self):
        assert doctest.testmod(pp).failed == 0


class TestSum:
    def test_plain_and_weighted(self):
        assert pp.get_combination_function("sum")([1.0, 2.0, 0.5]) == 3.5
        assert pp.get_combination_function("sum")([1.0, 2.0], [2.0, -1.0]) == 0.0
        assert pp.get_combination_function("weighted_sum")([1.0, 2.0], [0.5, 3.0]) == 6.5

    def test_none_and_nan_skipped(self):
        assert pp.weighted_sum([None, 2.0, NAN], [5.0, 1.0, 5.0]) == 2.0

    def test_all_none(self):
        assert pp.weighted_sum([None, None], [1.0, 1.0]) is None
        assert pp.weighted_sum([], []) is None

    def test_length_mismatch(self):
        with pytest.raises(ValueError):
            pp.weighted_sum([1.0, 2.0], [1.0])


class TestMean:
    def test_ignores_weights(self):
        assert pp.mean([1.0, 0.0, 0.5], [10.0, 1.0, 1.0]) == 0.5

    def test_none(self):
        assert pp.mean([1.0, None, 0.0]) == 0.5
        assert pp.mean([None]) is None


class TestWeightedMean:
    def test_values(self):
        assert pp.weighted_mean([1.0, 0.0], [3.0, 1.0]) == 0.75
        assert pp.weighted_mean([1.0, 0.0, None], [3.0, 1.0, 100.0]) == 0.75  # the None's weight is left out
        assert pp.weighted_mean([1.0, 1.0], [1.0, -1.0]) == 0.0  # |weights| in the denominator

    def test_none_cases(self):
        assert pp.weighted_mean([None, None], [1.0, 1.0]) is None
        assert pp.weighted_mean([1.0], [0.0]) is None


class TestMin:
    def test_values(self):
        assert pp.minimum([0.9, None, 0.2, NAN], [1.0, 1.0, 9.0, 1.0]) == 0.2
        assert pp.minimum([-1.0]) == -1.0
        assert pp.minimum([None]) is None


class TestIdentity:
    def test_values(self):
        assert pp.identity([1.0, None, NAN, -2.0], [0, 0, 1, 1]) == [1.0, None, None, -2.0]

    def test_length_mismatch(self):
        with pytest.raises(ValueError):
            pp.identity([1.0], [0, 0])


class TestGroupStandardize:
    def test_per_group(self):
        scaled = pp.group_standardize([0.0, 1.0, 2.0, 10.0, 30.0], ["a", "a", "a", "b", "b"], eps=0.0)
        assert scaled[:3] == [-1.0, 0.0, 1.0]
        assert scaled[3:] == pytest.approx([-1 / math.sqrt(2), 1 / math.sqrt(2)])

    def test_default_eps_matches_trl(self):
        # TRL: (r - mean) / (std + 1e-4) with the sample std
        unit = 1 / (math.sqrt(2) + 1e-4)
        assert pp.group_standardize([0.0, 2.0], [0, 0]) == pytest.approx([-unit, unit])

    def test_none_excluded_from_stats(self):
        scaled = pp.group_standardize([0.0, None, 2.0, NAN], [0, 0, 0, 0], eps=0.0)
        assert scaled[1] is None and scaled[3] is None
        assert scaled[0] == pytest.approx(-1 / math.sqrt(2)) and scaled[2] == pytest.approx(1 / math.sqrt(2))

    def test_degenerate_groups(self):
        assert pp.group_standardize([3.0, 3.0, 5.0], [0, 0, 1], eps=0.0) == [0.0, 0.0, 0.0]
        assert pp.group_standardize([None, None], [0, 0]) == [None, None]
        assert pp.group_standardize([], []) == []

    def test_interleaved_groups(self):
        unit = 1 / math.sqrt(2)
        assert pp.group_standardize([0.0, 5.0, 2.0, 5.0], [0, 1, 0, 1], eps=0.0) == [-unit, 0.0, unit, 0.0]

    def test_bad_eps(self):
        with pytest.raises(ValueError):
            pp.group_standardize([1.0], [0], eps=-1.0)


class TestRank:
    def test_order(self):
        assert pp.rank([10.0, 30.0, 20.0], [0, 0, 0]) == [0.0, 1.0, 0.5]

    def test_ties_averaged(self):
        assert pp.rank([3.0, 1.0, 3.0, 0.0, 3.0], [0] * 5) == [0.75, 0.25, 0.75, 0.0, 0.75]
        assert pp.rank([2.0, 2.0], [0, 0]) == [0.5, 0.5]

    def test_groups_none_and_singletons(self):
        assert pp.rank([3.0, 1.0, None, 7.0, NAN], [0, 0, 0, 1, 1]) == [1.0, 0.0, None, 0.5, None]
        assert pp.rank([None, None], [0, 0]) == [None, None]


class TestClip:
    def test_bounds(self):
        assert pp.clip([-3.0, 0.5, 9.0, None], [0] * 4, low=0.0, high=1.0) == [0.0, 0.5, 1.0, None]
        assert pp.clip([-3.0, 9.0], [0, 0], high=1.0) == [-3.0, 1.0]
        assert pp.clip([-3.0, 9.0], [0, 0], low=0.0) == [0.0, 9.0]
        assert pp.clip([-3.0, 9.0], [0, 0]) == [-3.0, 9.0]

    def test_bad_bounds(self):
        with pytest.raises(ValueError):
            pp.clip([1.0], [0], low=2.0, high=1.0)


class TestScalingKwargs:
    def test_valid(self):
        pp.check_scaling_kwargs("clip", {"low": 0.0, "high": 1.0})
        pp.check_scaling_kwargs("group_standardize", {"eps": 1e-6})
        pp.check_scaling_kwargs("identity", {})

    def test_invalid(self):
        with pytest.raises(TypeError, match="scaling function 'identity'.*no arguments"):
            pp.check_scaling_kwargs("identity", {"low": 0.0})
        with pytest.raises(TypeError, match="it accepts: low, high"):
            pp.check_scaling_kwargs("clip", {"lo": 0.0})

    @pytest.mark.parametrize("name, kwargs, message", [
        ("clip", {"low": 1, "high": 0}, r"scaling function 'clip': clip: low \(1.0\) is above high \(0.0\)"),
        ("group_standardize", {"eps": -1.0}, "group_standardize: eps must not be negative"),
        ("clip", {"low": "abc"}, "scaling function 'clip': low: Input should be a valid number, got str 'abc'"),
        ("grpo", {"eps": "1e-6"}, r"eps: Input should be a valid number, got str '1e-6' \(.*write it unquoted, "
                                  r"with a dot: 1.0e-6\)"),
        ("grpo_passk", {"norm_by_std": "false"}, "norm_by_std: Input should be a valid boolean"),  # "false" is truthy
    ])
    def test_values_the_function_itself_refuses_are_found_before_the_run(self, name, kwargs, message):
        # the function's own checks (and its annotations) are what the dry run applies: no copy of them
        with pytest.raises(ValueError, match=message):
            pp.check_scaling_kwargs(name, kwargs)
