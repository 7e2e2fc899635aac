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
- Which columns it reads is checked against its dataset's rows at start-up (columns.py): a named
  parameter (`def reward(prompts, completions, tags, **columns)`) must be a column some row has, unless it
  has a default; built-ins whose columns depend on their settings declare them with `columns.reads_columns`.
It returns N floats, or None where it has no opinion (that completion is left out of this reward).
It may be `async def` (LLM judges are): all async rewards of a step run concurrently.

Rewards written for TRL (`f(completions, **kwargs)`, named by a dotted import path such as
`trl.rewards.think_format_reward`) and Augmentoolkit's per-completion rewards (`per_sample=True` below) are
adapted into this contract by adapters.py. Decorated rewards may also live in the user's own files, listed in
`reward.modules` (user_code.py).

An initializer decorated with `@typed_arguments` has its arguments checked against (and converted to) their
annotations when it runs, i.e. at start-up and at --dry-run: `temperature: abc` or `metric_name: [1]` is a
one-line error naming the argument, `cache: "false"` reads as false (pydantic's conversions).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, TypeVar, Union

from pydantic import ConfigDict, ValidationError, validate_call

from generation.errors import UserInputError
from generation.registry import Registry

from ..config.redaction import is_secret_key
from .adapters import per_sample_initializer
from .user_code import import_reward_modules

RewardOutput = Union[Sequence[Union[float, None]], Awaitable[Sequence[Union[float, None]]]]
RewardFunction = Callable[..., RewardOutput]
RewardInitializer = Callable[..., RewardFunction]

REWARD_FUNCTIONS: Registry[RewardInitializer] = Registry("reward function")

# Modules whose import registers rewards. reward_functions.py is the file users edit.
REWARD_MODULES = (
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin",
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.reward",
    "generation.core_pipelines.do_grpo_rl_with_a_prompt.reward_functions",
)


def register_reward_function(name: str, per_sample: bool = False) -> Callable[[RewardInitializer], RewardInitializer]:
    """Decorator: file a reward initializer under `name`, the name datasets use in `reward_funcs`.

    per_sample: the reward the initializer returns scores ONE completion, as Augmentoolkit's rewards do
    (`inner(prompts, completions, answer, **kwargs) -> float`, called once per completion with
    `completions[0]["content"]`, `prompts[-1]["content"]`, `answer` the reference text; adapters.py).
    """

    def decorator(initializer: RewardInitializer) -> RewardInitializer:
        registered = per_sample_initializer(initializer) if per_sample else initializer
        return REWARD_FUNCTIONS.register(name)(registered)

    return decorator


def load_reward_modules(modules: Sequence[str] = (), dirs: Sequence[Path] = ()) -> Registry[RewardInitializer]:
    """Import every module that registers rewards, then the user's `reward.modules` (files or module names,
    found in `dirs`); idempotent. Returns the registry."""
    for module in REWARD_MODULES:
        importlib.import_module(module)
    import_reward_modules(modules, dirs)
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


class RewardArgumentError(UserInputError, ValueError):
    """A reward initializer's argument that does not fit its annotation (the message is one line)."""


Initializer = TypeVar("Initializer", bound=Callable[..., Any])


def typed_arguments(initializer: Initializer, strict: bool = False) -> Initializer:
    """Decorator: validate and convert the initializer's arguments with pydantic's validate_call.

    A value of the wrong type raises RewardArgumentError naming each argument at fault, e.g.
    "eval_llm_api_key: Input should be a valid string, got an int (quote it in YAML: '...')"; the values of
    secret arguments are never shown. strict: nothing is converted ("false" is not a bool, "1e-6" not a float).
    """

    @functools.cache
    def validated() -> Callable[..., Any]:  # built at the first call: annotations may name what follows it
        return validate_call(config=ConfigDict(arbitrary_types_allowed=True, strict=strict))(initializer)

    @functools.wraps(initializer)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return validated()(*args, **kwargs)
        except ValidationError as error:
            if error.title != initializer.__name__:  # raised inside the initializer: not about its arguments
                raise
            raise RewardArgumentError("; ".join(_describe_argument_error(item) for item in error.errors())) from None

    return checked  # type: ignore[return-value]


def _describe_argument_error(item: dict) -> str:
    """'name: pydantic's message, got <value>' with a hint for numbers YAML read where text was meant."""
    name = str(item["loc"][0]) if item["loc"] else "arguments"
    location = ".".join(str(part) for part in item["loc"]) or name
    value = item.get("input")
    kind = type(value).__name__
    got = f"got {'an' if kind[0] in 'aeiou' else 'a'} {kind}" if is_secret_key(name) else f"got {kind} {value!r:.80}"
    hint = ""
    if item["type"] == "string_type" and isinstance(value, (int, float)) and not isinstance(value, bool):
        hint = " (YAML reads unquoted digits as a number: quote the value, e.g. '0123', to keep it as text)"
    elif item["type"] in ("float_type", "int_type") and isinstance(value, str) and _reads_as_number(value):
        hint = " (a quoted number, or YAML's reading of 1e-6 as text: write it unquoted, with a dot: 1.0e-6)"
    return f"{location}: {item['msg']}, {got}{hint}"


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
