"""Post-processors: how one completion's per-reward scores become one number, and how a batch is scaled.

From reward functions to the GRPO update, in order:

1. Per-reward scores. Each entry of a dataset's `reward_funcs` scores every completion: a float, or None
   when it has no opinion (e.g. final_answer_match on a row with no reference answer).
2. Combination (`reward.combination_function`, one completion at a time): a COMBINATION_FUNCTIONS entry
   `fn(scores, weights) -> float | None` turns that completion's scores into one reward, using each entry's
   `weight`. None scores are skipped (NaN counts as None); when every score is None the result is None.
3. Scaling (`reward.scaling_function` with `reward.scaling_kwargs`, one batch at a time): a
   SCALING_FUNCTIONS entry `fn(rewards, group_ids, **kwargs) -> rewards` rescales the combined rewards;
   `group_ids` say which completions answer the same prompt. None stays None.
4. TRL's advantages. TRL receives the scaled rewards as a single reward function, so its own
   `reward_weights` are not used (weights live in `reward_funcs`). It computes, within each prompt's group,
   advantage = reward - group mean, then divides by the group's standard deviation (or the batch's, with
   scale_rewards "batch") unless scale_rewards is "none". A None reward reaches TRL as NaN: it is left out
   of the group mean and std and its advantage is 0 (the completion teaches nothing).

Double scaling: scalers marked `normalizes_groups` (group_standardize, rank) already normalize within each
group, so TRL's scale_rewards must be "none" with them. The pipeline sets it to "none" when the config does
not say; a config that asks for "group" or "batch" together with such a scaler is an error
(training.effective_scale_rewards applies this rule). With the other scalers TRL's setting is used as given.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from typing import Any, Callable, Hashable, Optional, Sequence

from generation.registry import Registry

Score = Optional[float]
CombinationFunction = Callable[[Sequence[Score], Optional[Sequence[float]]], Score]
ScalingFunction = Callable[..., list[Score]]

COMBINATION_FUNCTIONS: Registry[CombinationFunction] = Registry("combination function")
SCALING_FUNCTIONS: Registry[ScalingFunction] = Registry("scaling function")

INTERPLAY = """\
How rewards become the training signal:
  1. each reward function scores each completion (None = no opinion);
  2. reward.combination_function merges one completion's scores, using each reward's `weight`
     (None scores are skipped; all None -> None);
  3. reward.scaling_function rescales the batch, group by group (None stays None);
  4. TRL computes advantages: reward - mean of the prompt's group, divided by the group's std unless
     scale_rewards is "none". A None reward gets advantage 0.
TRL's reward_weights are not used: weights live in reward_funcs. group_standardize and rank already
normalize each group, so with them TRL's scale_rewards is set to "none"; asking for "group" or "batch"
together with them is an error."""


def describe_interplay() -> str:
    """The short explanation above, for the README and `--help` texts."""
    return INTERPLAY


def register_combination_function(name: str) -> Callable[[CombinationFunction], CombinationFunction]:
    """Decorator: file `fn(scores, weights) -> float | None` under `name` (reward.combination_function)."""
    return COMBINATION_FUNCTIONS.register(name)


def register_scaling_function(
    name: str, normalizes_groups: bool = False
) -> Callable[[ScalingFunction], ScalingFunction]:
    """Decorator: file `fn(rewards, group_ids, **kwargs) -> rewards` under `name` (reward.scaling_function).

    normalizes_groups: True when the function already centres/normalizes each group, so that TRL's own
    std scaling must be off (scale_rewards "none"); stored as the function's `normalizes_groups` attribute.
    """

    def decorator(fn: ScalingFunction) -> ScalingFunction:
        fn.normalizes_groups = normalizes_groups  # type: ignore[attr-defined]
        return SCALING_FUNCTIONS.register(name)(fn)

    return decorator


def get_combination_function(name: str) -> CombinationFunction:
    """The combination function called `name`; UnknownNameError listing the valid names otherwise."""
    return COMBINATION_FUNCTIONS.get(name)


def get_scaling_function(name: str) -> ScalingFunction:
    """The scaling function called `name`; UnknownNameError listing the valid names otherwise."""
    return SCALING_FUNCTIONS.get(name)


def check_scaling_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Raise TypeError naming the scaling function when `kwargs` do not fit it (call before the model loads)."""
    signature = inspect.signature(get_scaling_function(name))
    try:
        signature.bind([], [], **kwargs)
    except TypeError as error:
        accepted = list(signature.parameters)[2:]
        raise TypeError(
            f"scaling function '{name}': {error}; it accepts: {', '.join(accepted) or 'no arguments'}"
        ) from None


# ------------------------------------------------------------------------------------------ combination


def _present(scores: Sequence[Score], weights: Optional[Sequence[float]]) -> list[tuple[float, float]]:
    """(score, weight) pairs of the scores that are not None/NaN; weights default to 1."""
    if weights is None:
        weights = [1.0] * len(scores)
    if len(weights) != len(scores):
        raise ValueError(f"{len(scores)} scores but {len(weights)} weights")
    return [(float(s), float(w)) for s, w in zip(scores, weights) if s is not None and not math.isnan(s)]


@register_combination_function("sum")
@register_combination_function("weighted_sum")
def weighted_sum(scores: Sequence[Score], weights: Optional[Sequence[float]] = None) -> Score:
    """Sum of weight * score over the present scores; with the default weight 1 a plain sum (the seed's "sum").

    >>> weighted_sum([1.0, None, 0.5], [2.0, 1.0, 1.0])
    2.5
    """
    present = _present(scores, weights)
    return sum(w * s for s, w in present) if present else None


@register_combination_function("mean")
def mean(scores: Sequence[Score], weights: Optional[Sequence[float]] = None) -> Score:
    """Plain mean of the present scores; weights are ignored (use weighted_mean for them).

    >>> mean([1.0, None, 0.0], [5.0, 1.0, 1.0])
    0.5
    """
    present = _present(scores, weights)
    return sum(s for s, _ in present) / len(present) if present else None


@register_combination_function("weighted_mean")
def weighted_mean(scores: Sequence[Score], weights: Optional[Sequence[float]] = None) -> Score:
    """sum(weight * score) / sum(|weight|) over the present scores; None when all of them weigh 0.

    Dividing by |weight| keeps a negative weight meaning "this reward counts against".

    >>> weighted_mean([1.0, 0.0, None], [3.0, 1.0, 4.0])
    0.75
    """
    present = _present(scores, weights)
    total_weight = sum(abs(w) for _, w in present)
    return sum(w * s for s, w in present) / total_weight if total_weight else None


@register_combination_function("min")
def minimum(scores: Sequence[Score], weights: Optional[Sequence[float]] = None) -> Score:
    """The lowest present score, weights ignored: every reward must be satisfied (a gate).

    >>> minimum([0.9, None, 0.2])
    0.2
    """
    present = _present(scores, weights)
    return min(s for s, _ in present) if present else None


# --------------------------------------------------------------------------------------------- scaling


def _groups(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    """Group id -> indices of that group's present (not None/NaN) rewards."""
    if len(rewards) != len(group_ids):
        raise ValueError(f"{len(rewards)} rewards but {len(group_ids)} group ids")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for index, (reward, group) in enumerate(zip(rewards, group_ids)):
        if reward is not None and not math.isnan(reward):
            groups[group].append(index)
    return groups


def _clean(rewards: Sequence[Score]) -> list[Score]:
    return [None if r is None or math.isnan(r) else float(r) for r in rewards]


@register_scaling_function("identity")
def identity(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> list[Score]:
    """The rewards unchanged (NaN becomes None). The seed's "none" means this."""
    _groups(rewards, group_ids)  # checks the lengths
    return _clean(rewards)


@register_scaling_function("group_standardize", normalizes_groups=True)
def group_standardize(rewards: Sequence[Score], group_ids: Sequence[Hashable], eps: float = 1e-4) -> list[Score]:
    """(reward - group mean) / (group std + eps), over each group's present rewards.

    The std is the sample std (n - 1), as TRL's; a group with one present reward, or all equal, gives 0.0.
    eps (default 1e-4, TRL's) keeps the division finite.

    >>> group_standardize([0.0, 1.0, 2.0, None, 5.0], ["a", "a", "a", "a", "b"], eps=0.0)
    [-1.0, 0.0, 1.0, None, 0.0]
    """
    if eps < 0:
        raise ValueError(f"group_standardize: eps must not be negative, not {eps}")
    scaled = _clean(rewards)
    for indices in _groups(rewards, group_ids).values():
        values = [scaled[i] for i in indices]
        centre = sum(values) / len(values)
        std = math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        for i in indices:
            scaled[i] = (scaled[i] - centre) / (std + eps) if std + eps > 0 else 0.0
    return scaled


@register_scaling_function("rank", normalizes_groups=True)
def rank(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> list[Score]:
    """Each reward's rank within its group mapped to [0, 1] (lowest 0.0, highest 1.0); ties share their mean rank.

    A group with one present reward gives 0.5. Only the order counts, so outliers cannot dominate.

    >>> rank([3.0, 1.0, 3.0, None, 7.0], [0, 0, 0, 0, 1])
    [0.75, 0.0, 0.75, None, 0.5]
    """
    scaled = _clean(rewards)
    for indices in _groups(rewards, group_ids).values():
        if len(indices) == 1:
            scaled[indices[0]] = 0.5
            continue
        ordered = sorted(indices, key=lambda i: scaled[i])
        ranks: dict[int, float] = {}
        start = 0
        while start < len(ordered):
            end = start
            while end + 1 < len(ordered) and scaled[ordered[end + 1]] == scaled[ordered[start]]:
                end += 1
            for position in range(start, end + 1):
                ranks[ordered[position]] = (start + end) / 2
            start = end + 1
        for i in indices:
            scaled[i] = ranks[i] / (len(indices) - 1)
    return scaled


@register_scaling_function("clip")
def clip(
    rewards: Sequence[Score], group_ids: Sequence[Hashable], low: float | None = None, high: float | None = None
) -> list[Score]:
    """Each reward limited to [low, high] (either bound may be left out).

    >>> clip([-3.0, 0.5, 9.0, None], [0, 0, 0, 0], low=0.0, high=1.0)
    [0.0, 0.5, 1.0, None]
    """
    if low is not None and high is not None and low > high:
        raise ValueError(f"clip: low ({low}) is above high ({high})")
    _groups(rewards, group_ids)  # checks the lengths
    scaled = _clean(rewards)
    for i, value in enumerate(scaled):
        if value is not None:
            value = max(value, low) if low is not None else value
            scaled[i] = min(value, high) if high is not None else value
    return scaled
