"""Rewards that break on purpose from a given step, so that tests can drive runs that stop early."""

import threading

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function


def _step(columns: dict) -> int:
    """The step being scored (1-based)."""
    return getattr(columns.get("trainer_state"), "global_step", 0) + 1


@register_reward_function("test_hangs_from_step")
def hangs_from_step(step: int = 2):
    """Scores brevity until `step`, then never returns (a stuck API call, a deadlock)."""

    def reward(prompts, completions, **columns):
        if _step(columns) >= step:
            threading.Event().wait()
        return [1.0 / (1 + len(c.split())) for c in completions]

    return reward


@register_reward_function("test_raises_from_step")
def raises_from_step(step: int = 2):
    """Scores brevity until `step`, then raises (a bug in a user's reward)."""

    def reward(prompts, completions, **columns):
        if _step(columns) >= step:
            raise ValueError("broken on purpose")
        return [1.0 / (1 + len(c.split())) for c in completions]

    return reward


@register_reward_function("test_judge_fails_on_rank")
def judge_fails_on_rank(rank: int = 1, step: int = 2):
    """Scores brevity, but on process `rank` only, from `step` on, fails like a judge that gave up."""
    import os

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge import JudgeFailureError

    def reward(prompts, completions, **columns):
        if int(os.environ.get("RANK", "0")) == rank and _step(columns) >= step:
            raise JudgeFailureError(f"judge on rank {rank} gave up (on purpose)")
        return [1.0 / (1 + len(c.split())) for c in completions]

    return reward
