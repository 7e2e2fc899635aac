"""A reward that takes its time, so that tests can stop a training subprocess mid-run reliably."""

import time

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function


@register_reward_function("test_slow_brevity")
def slow_brevity(seconds: float = 1.0):
    def reward(prompts, completions, **columns):
        time.sleep(seconds)
        return [1.0 / (1 + len(c.split())) for c in completions]

    return reward
