"""verl's advantage estimators as scaling functions: their math on hand-made groups, worked out by hand.

Each estimator is checked twice: the values it hands TRL, and the advantages TRL trains on after its own
group centring (advantage_metrics.trl_advantages mirrors TRL's formula; tests/test_training_modes.py checks
that mirror against the advantages a real GRPOTrainer run wrote).
"""

from __future__ import annotations

import doctest
import math

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import advantage_metrics as am
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import post_processors as pp
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import effective_scale_rewards
from generation.errors import UserInputError


def trained_on(name: str, rewards, groups, **kwargs):
    """What TRL trains on when the estimator `name` scales `rewards` (with the scale_rewards it declares)."""
    scaled = pp.get_scaling_function(name)(rewards, groups, **kwargs)
    return am.trl_advantages(scaled, groups, pp.required_scale_rewards(name) or "group")


def close(actual, expected, tolerance=1e-6):
    assert len(actual) == len(expected), (actual, expected)
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None, (actual, expected)
        else:
            assert a is not None and math.isclose(a, e, abs_tol=tolerance), (actual, expected)


class TestGrpo:
    def test_is_group_standardize(self):
        assert pp.get_scaling_function("grpo") is pp.get_scaling_function("group_standardize")

    def test_z_scores_within_each_group(self):
        # group a: mean 1, sample std 1; group b: one reward -> 0
        close(pp.get_scaling_function("grpo")([0.0, 1.0, 2.0, 7.0], ["a", "a", "a", "b"], eps=0.0), [-1, 0, 1, 0])
        close(trained_on("grpo", [0.0, 1.0, 2.0, 7.0], ["a", "a", "a", "b"], eps=0.0), [-1, 0, 1, 0])


class TestRloo:
    def test_leave_one_out_baseline(self):
        # n = 4, mean 0.5: (r - 0.5) * 4/3; for r = 1 the others' mean is 1/3, so 1 - 1/3 = 2/3
        close(pp.rloo([1.0, 0.0, 0.0, 1.0], [0] * 4), [2 / 3, -2 / 3, -2 / 3, 2 / 3])

    def test_none_is_left_out_of_the_group(self):
        # present: 3 and 1 (n = 2): 3 - 1 = 2 and 1 - 3 = -2
        close(pp.rloo([3.0, None, 1.0], [0, 0, 0]), [2.0, None, -2.0])

    def test_trl_centring_keeps_it(self):
        close(trained_on("rloo", [1.0, 0.0, 0.0, 1.0, 5.0, 1.0], [0, 0, 0, 0, 1, 1]),
              [2 / 3, -2 / 3, -2 / 3, 2 / 3, 4.0, -4.0])


class TestReinforcePlusPlus:
    def test_baseline_variant_centres_groups_then_whitens_the_batch(self):
        # centred: [-1, 1, 0, 0]; batch mean 0, sample variance 2/3 -> divide by sqrt(2/3) = 0.816497
        expected = [-1.224744, 1.224744, 0.0, 0.0]
        close(pp.reinforce_plus_plus_baseline([0.0, 2.0, 1.0, 1.0], ["a", "a", "b", "b"]), expected)
        close(trained_on("reinforce_plus_plus_baseline", [0.0, 2.0, 1.0, 1.0], ["a", "a", "b", "b"]), expected)

    def test_batch_normalised_variant_divides_by_the_batch_std(self):
        # rewards pass unchanged; TRL (scale_rewards batch): (r - group mean) / (batch sample std + 1e-4)
        rewards, groups = [0.0, 2.0, 4.0, 4.0], ["a", "a", "b", "b"]
        assert pp.reinforce_plus_plus(rewards, groups) == rewards
        batch_std = math.sqrt(((0 - 2.5) ** 2 + (2 - 2.5) ** 2 + 2 * (4 - 2.5) ** 2) / 3)  # 1.914854
        close(trained_on("reinforce_plus_plus", rewards, groups), [-1 / (batch_std + 1e-4), 1 / (batch_std + 1e-4), 0, 0])


class TestGrpoPassk:
    def test_only_the_best_gets_best_minus_second(self):
        # best 5, second 4: a = 1; handed to TRL as a * 3/2 so that after centring the best trains with 1
        close(pp.grpo_passk([3.0, 5.0, 4.0], [0, 0, 0], norm_by_std=False), [0.0, 1.5, 0.0])
        close(trained_on("grpo_passk", [3.0, 5.0, 4.0], [0, 0, 0], norm_by_std=False), [-0.5, 1.0, -0.5])

    def test_divided_by_the_group_std(self):
        # [1, 0, 0, 0]: a = 1 - 0 = 1, sample std 0.5 -> a = 2 (eps 1e-6); TRL: best 2, others -2/3
        close(trained_on("grpo_passk", [1.0, 0.0, 0.0, 0.0], [0] * 4), [2.0, -2 / 3, -2 / 3, -2 / 3], 1e-5)

    def test_ties_and_lone_rewards_teach_nothing(self):
        close(pp.grpo_passk([1.0, 1.0, 0.0, 2.0, None], [0, 0, 0, 1, 1]), [0.0, 0.0, 0.0, 0.0, None])


class TestTrlAdvantages:
    def test_group_scaling_as_trl(self):
        # mean 0.5, sample std sqrt(0.5) = 0.707107, plus TRL's 1e-4
        close(am.trl_advantages([1.0, 0.0], [0, 0], "group"), [0.5 / (0.707107 + 1e-4), -0.5 / (0.707107 + 1e-4)], 1e-5)

    def test_none_reward_gets_zero_and_leaves_the_mean(self):
        close(am.trl_advantages([4.0, None, 2.0], [0, 0, 0], "none"), [1.0, 0.0, -1.0])

    def test_metrics(self):
        metrics = am.advantage_metrics([1.0, -1.0, 0.0, 0.0], ["a", "a", "b", "b"])
        assert metrics == {"advantages/mean": 0.0, "advantages/std": math.sqrt(0.5), "advantages/min": -1.0,
                           "advantages/max": 1.0, "advantages/zero_group_share": 0.5}

    def test_doctests(self):
        assert doctest.testmod(am).failed == 0 and doctest.testmod(pp).failed == 0


def config_with(scaling_function: str, **training):
    return validate_config({
        "model": {"base_model_name": "m"},
        "reward": {"scaling_function": scaling_function},
        "training_parameters": training,
        "datasets": [{"path": "d.jsonl"}],
    })


class TestScaleRewardsRule:
    @pytest.mark.parametrize("name, expected", [("rloo", "none"), ("grpo", "none"), ("grpo_passk", "none"),
                                                ("reinforce_plus_plus_baseline", "none"),
                                                ("reinforce_plus_plus", "batch"), ("identity", "group")])
    def test_each_estimator_sets_trls_scale_rewards(self, name, expected):
        assert effective_scale_rewards(config_with(name)) == expected

    def test_a_conflicting_scale_rewards_is_refused(self):
        with pytest.raises(UserInputError, match="'reinforce_plus_plus' needs TRL's scale_rewards 'batch'.*'group'"):
            effective_scale_rewards(config_with("reinforce_plus_plus", scale_rewards="group"))
        with pytest.raises(UserInputError, match="'rloo' already normalises.*scale twice"):
            effective_scale_rewards(config_with("rloo", scale_rewards="batch"))
        assert effective_scale_rewards(config_with("reinforce_plus_plus", scale_rewards="batch")) == "batch"

    def test_normalize_then_sum_would_ignore_the_batch_scaling(self):
        with pytest.raises(UserInputError, match="normalize_then_sum"):
            effective_scale_rewards(config_with("reinforce_plus_plus", multi_objective_aggregation="normalize_then_sum"))
