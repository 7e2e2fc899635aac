"""Your reward functions. Copy one, rename it, edit it, and name it in a dataset's `reward_funcs`.

How a reward works (the full contract is in rewards/registry.py):
- `@register_reward_function("name")` files an *initializer* under that name. Its keyword arguments are
  the keys written next to `name` in the config; it runs once per run and returns the reward.
- The reward gets a batch: `prompts` (lists of chat messages), `completions` (the model's answers, as
  text) and `**columns`, which hold `answer` (the dataset's own reply to that prompt), `dataset_name` and
  the row's other columns. It returns one float per completion, or None for "no opinion".
- It may be `async def` if it waits on something (an API, a sandbox): async rewards run concurrently.
- Coming from Augmentoolkit (a reward that scores ONE completion, `completions[0]["content"]`, and returns one
  float): paste it here unchanged and write `@register_reward_function("name", per_sample=True)`.
- Rewards written for TRL (`f(completions, **kwargs)`) need no registration: name them by their import path in
  `reward_funcs` (`trl.rewards.think_format_reward`, `my_rewards.brevity` for my_rewards.py beside the config).

    datasets:
      - path: inputs/my_data.jsonl
        reward_funcs:
          - name: mentions_keyword
            keyword: thanks
            weight: 0.5

Built-in rewards (format gates, answer matching, length, repetition, grammar-correction F1) live in
rewards/builtin/, LLM judges in rewards/judge/. Run `python run_augmentoolkit.py --dry-run` to check your config.
"""

from __future__ import annotations

from .rewards.registry import register_reward_function


@register_reward_function("mentions_keyword")
def mentions_keyword(keyword: str, score: float = 1.0):
    """`score` when the completion mentions `keyword` (any case), else 0."""
    keyword = keyword.lower()

    def reward(prompts, completions, **columns):
        return [score if keyword in completion.lower() else 0.0 for completion in completions]

    return reward


@register_reward_function("matches_reference_start")
def matches_reference_start(words: int = 3):
    """1.0 when the completion starts with the same `words` words as the dataset's answer; None without one."""

    def first_words(text: str) -> list[str]:
        return [word.strip(".,!?;:").lower() for word in text.split()[:words]]

    def reward(prompts, completions, answer, **columns):
        return [
            (1.0 if first_words(completion) == first_words(reference) else 0.0) if reference else None
            for completion, reference in zip(completions, answer)
        ]

    return reward
