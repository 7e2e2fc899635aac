"""Rewards written for TRL or for Augmentoolkit, run as this node's own rewards.

Each adapter turns such a function into an ordinary inner reward, `reward(prompts, completions, **columns)`
with the completions as text (registry.py), so everything the node does for its own rewards applies unchanged:
private copies of the inputs, time limits, result checks, weights, per-reward metrics, several processes.

- **TRL reward functions** (`trl.rewards`, open-r1, most tutorials): `f(completions, **kwargs) -> list[float]`,
  named in `reward_funcs` by a dotted import path, or by the short names TRL's `grpo` script takes
  (`accuracy_reward`, `think_format_reward`, ...: TRL_SCRIPT_NAMES). Called as TRL's GRPOTrainer calls a
  reward function: `prompts` (message lists), `completions` (for conversational prompts each a list of one
  `{"role": "assistant", "content": text}` message, else the text), `completion_ids`, every column under its
  own name, `trainer_state`, `log_metric`; the entry's other keys are bound as keyword arguments.
- **Factories** (`trl.rewards.get_soft_overlong_punishment(max_completion_len, soft_punish_cache)`): called
  once with the entry's keys; the function they return is run as a TRL reward function.
  How the two are told apart: a callable that names `prompts`, `completions` or `completion_ids` among its
  parameters, or takes `**kwargs`, is a reward function; a class, or a callable that takes only settings, is
  a factory.
- **Per-sample rewards** (Augmentoolkit's): `@register_reward_function("name", per_sample=True)`. The inner
  function is called once per completion with upstream's shapes: `prompts` = that completion's prompt
  (its messages), `completions` = a list of one assistant message (`completions[0]["content"]`), `answer` =
  its reference text, every other column its value for that row (`trainer_state`, `log_metric` as they are);
  it returns one float, or None. Async ones run concurrently (all of a batch at once), like the judge's calls.

A function that takes no `**kwargs` gets only the arguments it names.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Optional, Sequence

from generation.errors import UserInputError
from generation.registry import Registry

from ..data.columns import TRL_REWARD_ARGUMENTS
from .user_code import import_object

TRL_REWARD_INPUTS = ("prompts", "completions", "completion_ids")
"""Parameters that make a callable a reward function (not a factory)."""
TRL_SCRIPT_NAMES: dict[str, dict[str, Any]] = {
    "accuracy_reward": {}, "reasoning_accuracy_reward": {}, "think_format_reward": {},
    "get_soft_overlong_punishment": {"max_completion_len": 1280, "soft_punish_cache": 256},
}
"""The short names TRL's `trl grpo --reward_funcs` script takes (trl/scripts/grpo.py), with the settings that script
binds (an entry's own keys win): each is the function of that name in `trl.rewards`."""
ORIGIN = "reward_origin"
"""Attribute an adapted initializer carries: how the plan describes where the reward came from."""


def trl_completions(prompts: Sequence[Any], texts: Sequence[str]) -> list:
    """The completions as TRL passes them: one-message lists for conversational prompts, else the texts.

    >>> trl_completions([[{"role": "user", "content": "q"}]], ["a"])
    [[{'role': 'assistant', 'content': 'a'}]]
    >>> trl_completions(["q"], ["a"])
    ['a']
    """
    if prompts and isinstance(prompts[0], list):
        return [[{"role": "assistant", "content": text}] for text in texts]
    return list(texts)


def is_factory(target: Any) -> bool:
    """True for a class or a callable that takes only settings; False for a reward function (module doc).

    >>> is_factory(lambda completions, **kwargs: []), is_factory(lambda max_len, cache=0: None)
    (False, True)
    """
    if inspect.isclass(target):
        return True
    parameters = _parameters(target)
    if parameters is None:  # no signature to read: call it as a reward
        return False
    return not any(p.kind is p.VAR_KEYWORD or p.name in TRL_REWARD_INPUTS for p in parameters.values())


def find_initializer(name: str, registry: Registry, dirs: Sequence[Any]) -> Callable[..., Any]:
    """The initializer for a `reward_funcs` name: a registered name, one of TRL_SCRIPT_NAMES, or a dotted import
    path adapted here.

    A dotted path to a registered initializer (a decorated reward in the user's module) is that initializer.
    Raises UnknownNameError / UserInputError (with the nearest registered names) when nothing is found.
    """
    if name in registry:
        return registry.get(name)
    if name in TRL_SCRIPT_NAMES:
        defaults, name = TRL_SCRIPT_NAMES[name], f"trl.rewards.{name}"
        target = import_object(name, dirs, registry.names())
        target = functools.partial(target, **defaults) if defaults else target
    elif "." not in name:
        return registry.get(name)
    else:
        target = import_object(name, dirs, registry.names())
    if any(registry.get(known) is target for known in registry.names()):
        return target
    if not callable(target):
        raise UserInputError(f"reward function '{name}' is {type(target).__name__} {target!r:.60}, not a function")
    return factory_initializer(name, target) if is_factory(target) else function_initializer(name, target)


def function_initializer(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """An initializer for a TRL reward function: its keyword arguments are the entry's keys, bound to it.

    Its signature lists the function's own named parameters (not TRL's arguments), so that a key the function
    does not name is refused at start-up like any initializer argument.
    """

    def initializer(**bound: Any) -> Callable[..., Any]:
        return trl_reward(function, bound)

    settable = [p.replace(kind=p.KEYWORD_ONLY, default=None if p.default is p.empty else p.default)
                for p in (_parameters(function) or {}).values()
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in TRL_REWARD_ARGUMENTS]
    initializer.__signature__ = inspect.Signature(settable)  # type: ignore[attr-defined]
    initializer.__name__ = initializer.__qualname__ = name
    setattr(initializer, ORIGIN, f"TRL reward function {name}")
    return initializer


def factory_initializer(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
    """An initializer for a factory: called once with the entry's keys; what it returns runs as a TRL reward."""

    @functools.wraps(factory, updated=())
    def initializer(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        made = factory(*args, **kwargs)
        if not callable(made):
            raise TypeError(f"the factory returned {type(made).__name__} {made!r:.60}, not a reward function")
        return trl_reward(made, {})

    setattr(initializer, ORIGIN, f"TRL reward factory {name}")
    return initializer


def trl_reward(function: Callable[..., Any], bound: dict[str, Any]) -> Callable[..., Any]:
    """`function` (a TRL reward function) as an inner reward of this node, `bound` passed on every call.

    Its signature shows the columns it reads (rewards/columns.py): the function's named parameters that are
    neither TRL's arguments nor bound.
    """
    accepts = _accepts(function)

    def arguments(prompts: list, completions: list, columns: dict) -> dict:
        given = {**columns, "prompts": prompts, "completions": trl_completions(prompts, completions), **bound}
        return accepts(given)

    if is_async_callable(function):
        async def reward(prompts: list, completions: list, **columns: Any) -> Any:
            return await function(**arguments(prompts, completions, columns))
    else:
        def reward(prompts: list, completions: list, **columns: Any) -> Any:
            return function(**arguments(prompts, completions, columns))

    columns = [p.replace(kind=p.KEYWORD_ONLY) for p in (_parameters(function) or {}).values()
               if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in TRL_REWARD_ARGUMENTS
               and p.name not in bound]
    own = inspect.signature(reward).parameters
    reward.__signature__ = inspect.Signature([own["prompts"], own["completions"], *columns, own["columns"]])  # type: ignore[attr-defined]
    reward.__name__ = getattr(function, "__name__", type(function).__name__)
    return reward


def per_sample_initializer(initializer: Callable[..., Any]) -> Callable[..., Any]:
    """`initializer`, with the reward it returns (which scores one completion) run over the whole batch."""

    @functools.wraps(initializer)
    def batch_initializer(*args: Any, **kwargs: Any) -> Callable[..., Any]:
        return per_sample_reward(initializer(*args, **kwargs))

    setattr(batch_initializer, ORIGIN, "per sample")
    return batch_initializer


def per_sample_reward(inner: Callable[..., Any]) -> Callable[..., Any]:
    """An inner reward that calls `inner` once per completion, with Augmentoolkit's shapes (module doc).

    Its signature is `inner`'s (functools.wraps), so the columns it reads are its named parameters.
    """
    accepts = _accepts(inner)

    def calls(prompts: list, completions: list, columns: dict) -> list[dict]:
        count = len(completions)
        rows = []
        for i in range(count):
            row = {key: value[i] if isinstance(value, list) and len(value) == count else value
                   for key, value in columns.items()}
            row.update(prompts=prompts[i], completions=trl_completions([prompts[i]], [completions[i]])[0])
            rows.append(accepts(row))
        return rows

    if is_async_callable(inner):
        @functools.wraps(inner)
        async def reward(prompts: list, completions: list, **columns: Any) -> list:
            return list(await asyncio.gather(*(inner(**row) for row in calls(prompts, completions, columns))))
    else:
        @functools.wraps(inner)
        def reward(prompts: list, completions: list, **columns: Any) -> Any:
            scores = [inner(**row) for row in calls(prompts, completions, columns)]
            if any(inspect.isawaitable(score) for score in scores):  # a sync function handing back coroutines
                return _gathered(scores)
            return scores

    return reward


async def _gathered(scores: list) -> list:
    return list(await asyncio.gather(*(_value(score) for score in scores)))


async def _value(score: Any) -> Any:
    return await score if inspect.isawaitable(score) else score


def _accepts(function: Callable[..., Any]) -> Callable[[dict], dict]:
    """A filter keeping the arguments `function` takes: all of them with **kwargs, else the ones it names."""
    parameters = _parameters(function)
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return lambda arguments: arguments
    named = {name for name, p in parameters.items() if p.kind is not p.VAR_POSITIONAL}
    return lambda arguments: {key: value for key, value in arguments.items() if key in named}


def _parameters(function: Any) -> Optional[dict[str, inspect.Parameter]]:
    try:
        return dict(inspect.signature(function).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return None


def is_async_callable(function: Any) -> bool:
    """True for an async function or an object whose __call__ is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))
