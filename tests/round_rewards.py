"""Rewards for the judged-rounds tests (overlap_judging, dynamic_sampling): ties on chosen prompts, a latency."""

import asyncio
import time

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

EVENTS: list = []  # (time, "start" | "end", first prompt's text) of every call, for in-process tests


def _prompt_text(prompt) -> str:
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


def _spread_scores(prompts, completions, marker):
    """0.5 for every completion of a prompt holding `marker` (a tie); else a score that differs within a group."""
    return [0.5 if marker in _prompt_text(p) else (len(c) % 5) + 0.01 * i for i, (p, c) in enumerate(zip(prompts, completions))]


@register_reward_function("test_ties_on_marked_prompts")
def ties_on_marked_prompts(marker: str = "TIE", latency: float = 0.0):
    """Async, like a judge: waits `latency` seconds, then ties on prompts holding `marker`."""

    async def reward(prompts, completions, **columns):
        EVENTS.append((time.monotonic(), "start", _prompt_text(prompts[0])))
        await asyncio.sleep(latency)
        EVENTS.append((time.monotonic(), "end", _prompt_text(prompts[0])))
        return _spread_scores(prompts, completions, marker)

    return reward


@register_reward_function("test_sync_ties_on_marked_prompts")
def sync_ties_on_marked_prompts(marker: str = "TIE"):
    """The same ties, programmatic (sync)."""

    def reward(prompts, completions, **columns):
        return _spread_scores(prompts, completions, marker)

    return reward
