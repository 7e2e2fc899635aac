"""The reward-function registry and the contract every reward follows.

A reward is registered as an *initializer*: a function that takes the keyword arguments written next to
its name in a dataset's `reward_funcs` list and returns the reward itself. The initializer runs once per
run (before the model loads); the reward it returns is called once per batch:

    @register_reward_function("max_length")
    def max_length(max_words: int = 50):
        def reward(prompts, completions, **columns):
            return [1.0 if len(c.split()) <= max_words else 0.0 for c in completions]
        return reward

The returned reward is called as `reward(prompts, completions, **columns)` where, for N completions:
- prompts: N lists of chat messages ({"role", "content"}) that the model answered;
- completions: N strings (the model's answers, as plain text);
- columns: `answer` (N strings: the reference answer, i.e. the dataset's own assistant turn that the
  model is answering in its place; "" when none), `dataset_name` (N strings) and the row's other columns, plus TRL's extras (`trainer_state`, ...);
  accept `**columns` so that new columns never break your function. A column may hold text, a number, a
  list or a list of objects (JSON values, as the row has them).
- Which columns it reads is checked against its dataset's rows at start-up (reward_columns.py): a named
  parameter (`def reward(prompts, completions, tags, **columns)`) must be a column some row has, unless it
  has a default; built-ins whose columns depend on their settings declare them with `reads_columns`.
It returns N floats, or None where it has no opinion (that completion is left out of this reward).
It may be `async def` (LLM judges are): all async rewards of a step run concurrently.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Awaitable, Callable, Sequence, Union

from generation.errors import UserInputError
from generation.registry import Registry

from .reward_columns import reads_columns  # noqa: F401  (part of the contract: built-ins declare their columns)

RewardOutput = Union[Sequence[Union[float, None]], Awaitable[Sequence[Union[float, None]]]]
RewardFunction = Callable[..., RewardOutput]
RewardInitializer = Callable[..., RewardFunction]

REWARD_FUNCTIONS: Registry[RewardInitializer] = Registry("reward function")

# Modules whose import registers rewards. reward_functions.py is the file users edit.
REWARD_MODULES = (
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.builtin_rewards",
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.judge.reward",
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.reward_functions",
)


def register_reward_function(name: str) -> Callable[[RewardInitializer], RewardInitializer]:
    """Decorator: file a reward initializer under `name`, the name datasets use in `reward_funcs`."""
    return REWARD_FUNCTIONS.register(name)


def load_reward_modules() -> Registry[RewardInitializer]:
    """Import every module that registers rewards (idempotent) and return the registry."""
    for module in REWARD_MODULES:
        importlib.import_module(module)
    return REWARD_FUNCTIONS


def check_initializer_kwargs(name: str, initializer: RewardInitializer, kwargs: dict[str, Any]) -> None:
    """Raise UserInputError naming the reward when `kwargs` do not fit its initializer's signature."""
    signature = inspect.signature(initializer)
    try:
        signature.bind(**kwargs)
    except TypeError as error:
        accepted = [name for name, p in signature.parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise UserInputError(
            f"reward function '{name}': {error}; it accepts: {', '.join(accepted) or 'no arguments'}"
        ) from None
