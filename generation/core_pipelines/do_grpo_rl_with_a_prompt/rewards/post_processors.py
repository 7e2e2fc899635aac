"""Post-processors: how one completion's per-reward scores become one number, and how a batch is scaled.

From reward functions to the GRPO update, in order:

1. Per-reward scores. Each entry of a dataset's `reward_funcs` scores every completion: a float, or None
   when it has no opinion (e.g. final_answer_match on a row with no reference answer).
2. Combination (`reward.combination_function`): a COMBINATION_FUNCTIONS entry `fn(scores, weights) -> float |
   None` turns one completion's scores into one reward, using each entry's `weight`. None scores are skipped
   (NaN counts as None); when every score is None the result is None. A combination registered with
   `per_group=True` sees a prompt's whole group instead (`normalize_then_sum`: each reward standardised
   within the group first, GDPO).
3. Scaling (`reward.scaling_function` with `reward.scaling_kwargs`, one batch at a time): a
   SCALING_FUNCTIONS entry `fn(rewards, group_ids, **kwargs) -> rewards` rescales the combined rewards;
   `group_ids` say which completions answer the same prompt. None stays None.
4. TRL's advantages. TRL receives the scaled rewards as a single reward function, so its own
   `reward_weights` are not used (weights live in `reward_funcs`). It computes, within each prompt's group,
   advantage = reward - group mean, then divides by the group's standard deviation (or the batch's, with
   scale_rewards "batch") unless scale_rewards is "none". A None reward reaches TRL as NaN: it is left out
   of the group mean and std and its advantage is 0 (the completion teaches nothing).

Double scaling: scalers marked `normalizes_groups` (group_standardize, rank, and the advantage estimators
grpo, rloo, reinforce_plus_plus_baseline, grpo_passk) already normalize within each group, so TRL's
scale_rewards must be "none" with them; reinforce_plus_plus needs "batch". Each scaler declares the setting
it needs (`trl_scale_rewards`); the pipeline sets it when the config does not say, and a config that asks for
another value is an error (trainer/grpo_args.effective_scale_rewards applies this rule). With the other scalers
TRL's setting is used as given. The per-group combination normalize_then_sum needs "batch" the same way.

Advantage estimators (verl's `algorithm.adv_estimator`, verl/trainer/ppo/core_algos.py): TRL always
subtracts each group's mean from what it receives, so an estimator passes TRL values whose group-centred
form is the estimator's advantage. grpo, rloo and reinforce_plus_plus_baseline come out exactly;
reinforce_plus_plus and grpo_passk as closely as group-centring allows (their docstrings say how).
remax is not offered: its baseline is the reward of one extra greedy completion per prompt, which only the
trainer's generation step could produce (a reward function gets no model), so it needs a trainer subclass.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from typing import Any, Callable, Hashable, Optional, Sequence

from generation.registry import Registry

from .registry import typed_arguments

Score = Optional[float]
CombinationFunction = Callable[..., Any]  # (scores, weights) -> Score; per group: (scores[], weights[], group_ids)
ScalingFunction = Callable[..., list[Score]]

COMBINATION_FUNCTIONS: Registry[CombinationFunction] = Registry("combination function")
SCALING_FUNCTIONS: Registry[ScalingFunction] = Registry("scaling function")
GROUP_STD_EPS = 1e-4
"""TRL's `std + 1e-4` when it standardises a group."""

INTERPLAY = """\
How rewards become the training signal:
  1. each reward function scores each completion (None = no opinion);
  2. reward.combination_function merges one completion's scores, using each reward's `weight`
     (None scores are skipped; all None -> None);
  3. reward.scaling_function rescales the batch, group by group (None stays None);
  4. TRL computes advantages: reward - mean of the prompt's group, divided by the group's std unless
     scale_rewards is "none". A None reward gets advantage 0.
TRL's reward_weights are not used: weights live in reward_funcs. group_standardize, rank and the advantage
estimators (grpo, rloo, reinforce_plus_plus_baseline, grpo_passk) already normalize each group, so with them
TRL's scale_rewards is set to "none" (reinforce_plus_plus: "batch"); asking for another value together with
them is an error."""


def describe_interplay() -> str:
    """The short explanation above, for the README and `--help` texts."""
    return INTERPLAY


def register_combination_function(
    name: str, per_group: bool = False, trl_scale_rewards: Optional[str] = None
) -> Callable[[CombinationFunction], CombinationFunction]:
    """Decorator: file `fn(scores, weights) -> float | None` under `name` (reward.combination_function).

    per_group: the function combines a whole step instead, `fn(scores_per_completion, weights_per_completion,
    group_ids) -> list`, seeing each prompt's group (stored as `per_group`). trl_scale_rewards: the TRL
    scale_rewards it needs, if any (stored as `trl_scale_rewards`).
    """

    def decorator(fn: CombinationFunction) -> CombinationFunction:
        fn.per_group = per_group  # type: ignore[attr-defined]
        fn.trl_scale_rewards = trl_scale_rewards  # type: ignore[attr-defined]
        return COMBINATION_FUNCTIONS.register(name)(fn)

    return decorator


def combine_step(function: CombinationFunction, scores: Sequence[Sequence[Score]],
                 weights: Sequence[Sequence[float]], group_ids: Sequence[Hashable]) -> list[Score]:
    """One combined reward per completion (`scores[i]`, `weights[i]`: completion i's rewards and their weights)."""
    if getattr(function, "per_group", False):
        return function(scores, weights, group_ids)
    return [function(row, row_weights) for row, row_weights in zip(scores, weights)]


def register_scaling_function(
    name: str, normalizes_groups: bool = False, trl_scale_rewards: Optional[str] = None
) -> Callable[[ScalingFunction], ScalingFunction]:
    """Decorator: file `fn(rewards, group_ids, **kwargs) -> rewards` under `name` (reward.scaling_function).

    normalizes_groups: True when the function already centres/normalizes each group, so that TRL's own
    std scaling must be off (scale_rewards "none"); stored as the function's `normalizes_groups` attribute.
    trl_scale_rewards: the TRL scale_rewards the function needs ("none" when normalizes_groups, else None:
    the user's choice); stored as `trl_scale_rewards`.
    """
    if normalizes_groups and trl_scale_rewards not in (None, "none"):
        raise ValueError(f"scaling function '{name}' normalizes groups, so TRL's scale_rewards must be 'none'")

    def decorator(fn: ScalingFunction) -> ScalingFunction:
        fn.normalizes_groups = normalizes_groups  # type: ignore[attr-defined]
        fn.trl_scale_rewards = "none" if normalizes_groups else trl_scale_rewards  # type: ignore[attr-defined]
        return SCALING_FUNCTIONS.register(name)(fn)

    return decorator


def required_scale_rewards(name: str) -> Optional[str]:
    """The TRL scale_rewards that scaling function `name` needs, or None when any value works."""
    return getattr(get_scaling_function(name), "trl_scale_rewards", None)


def combination_scale_rewards(name: str) -> Optional[str]:
    """The TRL scale_rewards that combination function `name` needs, or None when any value works."""
    return getattr(get_combination_function(name), "trl_scale_rewards", None)


def get_combination_function(name: str) -> CombinationFunction:
    """The combination function called `name`; UnknownNameError listing the valid names otherwise."""
    return COMBINATION_FUNCTIONS.get(name)


def get_scaling_function(name: str) -> ScalingFunction:
    """The scaling function called `name`; UnknownNameError listing the valid names otherwise."""
    return SCALING_FUNCTIONS.get(name)


def check_scaling_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Check `kwargs` for scaling function `name` before the model loads: TypeError for a name it does not
    accept, ValueError for a value it refuses. It runs on an empty batch with them: its own checks (clip's
    low <= high) apply, after its annotations (strictly: what passes is what the run passes it)."""
    function = get_scaling_function(name)
    signature = inspect.signature(function)
    try:
        signature.bind([], [], **kwargs)
    except TypeError as error:
        accepted = list(signature.parameters)[2:]
        raise TypeError(
            f"scaling function '{name}': {error}; it accepts: {', '.join(accepted) or 'no arguments'}"
        ) from None
    try:
        typed_arguments(function, strict=True)([], [], **kwargs)
    except (ValueError, TypeError) as error:
        raise ValueError(f"scaling function '{name}': {error}") from None


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


@register_combination_function("normalize_then_sum", per_group=True, trl_scale_rewards="batch")
def normalize_then_sum(scores: Sequence[Sequence[Score]], weights: Sequence[Sequence[float]],
                       group_ids: Sequence[Hashable]) -> list[Score]:
    """Each reward standardised within its prompt group, then the weighted sum (GDPO, arXiv 2601.05242).

    TRL's multi_objective_aggregation 'normalize_then_sum' (verl's gdpo), for the rewards our one reward function
    combines: per group and per reward, (score - group mean) / (group sample std + 1e-4) over the present scores;
    a reward with fewer than two scores in a group adds nothing there, one that does not vary adds 0. Then the
    weighted sum (None only when every score of the completion is None). TRL's scale_rewards 'batch' (set for
    you) then divides by the batch's std, as TRL's option does, so no reward drowns another by its scale.

    >>> [round(v, 3) for v in normalize_then_sum([[1.0, 0.0], [0.0, 0.0], [5.0, 2.0], [5.0, None]],
    ...                                          [[1.0, 1.0]] * 4, ["a", "a", "b", "b"])]
    [0.707, -0.707, 0.0, 0.0]
    """
    standardised: list[list[Optional[float]]] = [[None] * len(row) for row in scores]
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, group in enumerate(group_ids):
        members[group].append(index)
    for indices in members.values():
        for k in range(len(scores[indices[0]])):
            present = [i for i in indices if scores[i][k] is not None and not math.isnan(scores[i][k])]
            if len(present) < 2:
                continue
            centre = sum(scores[i][k] for i in present) / len(present)
            spread = math.sqrt(sum((scores[i][k] - centre) ** 2 for i in present) / (len(present) - 1))
            for i in present:
                standardised[i][k] = (scores[i][k] - centre) / (spread + GROUP_STD_EPS)
    combined: list[Score] = []
    for row, row_weights, normalised in zip(scores, weights, standardised):
        if not _present(row, row_weights):
            combined.append(None)
            continue
        combined.append(sum(w * v for v, w in zip(normalised, row_weights) if v is not None))
    return combined


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


@register_scaling_function("grpo", normalizes_groups=True)
@register_scaling_function("group_standardize", normalizes_groups=True)
def group_standardize(rewards: Sequence[Score], group_ids: Sequence[Hashable], eps: float = 1e-4) -> list[Score]:
    """(reward - group mean) / (group std + eps), over each group's present rewards.

    The std is the sample std (n - 1), as TRL's; a group with one present reward, or all equal, gives 0.0.
    eps (default 1e-4, TRL's) keeps the division finite.

    Also registered as `grpo`: verl's compute_grpo_outcome_advantage (core_algos.py, adv_estimator "grpo"),
    whose eps is 1e-6 (pass scaling_kwargs {eps: 1.0e-6} for the same numbers) and which keeps a lone
    completion's raw reward where this gives 0. verl's norm_adv_by_std_in_grpo false (Dr. GRPO) is
    scaling_function identity with TRL's scale_rewards "none".

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


# ------------------------------------------------------------------------------- advantage estimators


@register_scaling_function("rloo", normalizes_groups=True)
def rloo(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> list[Score]:
    """REINFORCE leave-one-out: each reward minus the mean of the *other* rewards of its group.

    verl's compute_rloo_outcome_advantage (verl/trainer/ppo/core_algos.py, adv_estimator "rloo",
    https://arxiv.org/abs/2402.14740): r_i * n / (n - 1) - mean * n / (n - 1) = r_i - mean of the others.
    The values already have group mean 0, so TRL's centring keeps them (scale_rewards "none"). A group with
    one present reward gives 0.0 (verl keeps the raw reward; TRL would centre it to 0 anyway).

    >>> rloo([1.0, 0.0, 0.0, None, 3.0], ["a", "a", "a", "a", "b"])
    [1.0, -0.5, -0.5, None, 0.0]
    """
    scaled = _clean(rewards)
    for indices in _groups(rewards, group_ids).values():
        n = len(indices)
        centre = sum(scaled[i] for i in indices) / n
        for i in indices:
            scaled[i] = (scaled[i] - centre) * n / (n - 1) if n > 1 else 0.0
    return scaled


@register_scaling_function("reinforce_plus_plus_baseline", normalizes_groups=True)
def reinforce_plus_plus_baseline(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> list[Score]:
    """REINFORCE++ with a group baseline: reward minus its group's mean, then whitened over the whole batch.

    verl's compute_reinforce_plus_plus_baseline_outcome_advantage (core_algos.py, adv_estimator
    "reinforce_plus_plus_baseline", https://arxiv.org/abs/2501.03262): centred = r - group mean, then
    masked_whiten: (centred - batch mean) / sqrt(batch variance (n - 1) + 1e-8). verl's batch statistics
    weight each completion by its token count; here each completion counts once. Fewer than two present
    rewards give 0.0.

    >>> [round(a, 4) for a in reinforce_plus_plus_baseline([0.0, 2.0, 1.0, 1.0], ["a", "a", "b", "b"])]
    [-1.2247, 1.2247, 0.0, 0.0]
    """
    centred = _clean(rewards)
    for indices in _groups(rewards, group_ids).values():
        centre = sum(centred[i] for i in indices) / len(indices)
        for i in indices:
            centred[i] -= centre
    return _whiten(centred)


@register_scaling_function("reinforce_plus_plus", trl_scale_rewards="batch")
def reinforce_plus_plus(rewards: Sequence[Score], group_ids: Sequence[Hashable]) -> list[Score]:
    """REINFORCE++ (batch-normalised advantages): the rewards unchanged, with TRL's scale_rewards "batch".

    verl's compute_reinforce_plus_plus_outcome_advantage (core_algos.py, adv_estimator "reinforce_plus_plus",
    https://arxiv.org/abs/2501.03262) whitens the returns over the batch: (r - batch mean) / batch std, with
    the batch mean as the only baseline. TRL always centres each prompt group, so the advantage trained on is
    (r - group mean) / (batch std + 1e-4): verl's batch normalisation with a group baseline in place of the
    batch one (the batch baseline alone cannot be had without a trainer subclass). TRL's "batch" does the
    division over the rewards of every process, so the rewards pass here unchanged.

    >>> reinforce_plus_plus([0.0, 2.0, None], [0, 0, 0])
    [0.0, 2.0, None]
    """
    _groups(rewards, group_ids)  # checks the lengths
    return _clean(rewards)


@register_scaling_function("grpo_passk", normalizes_groups=True)
def grpo_passk(
    rewards: Sequence[Score], group_ids: Sequence[Hashable], norm_by_std: bool = True, eps: float = 1e-6
) -> list[Score]:
    """Pass@k advantage: only each group's best completion is pushed, by (best - second best) [/ group std].

    verl's compute_grpo_passk_outcome_advantage (core_algos.py, adv_estimator "grpo_passk",
    https://arxiv.org/abs/2503.19595): the best gets a = r_max - r_second (divided by the group's sample std
    + eps unless norm_by_std is false), every other completion 0. TRL subtracts each group's mean from what
    it receives, and a vector whose group sum is not 0 cannot pass through that unchanged, so the best gets
    a * n / (n - 1) here: after TRL's centring it trains with exactly verl's a, and the other n - 1 share
    -a / (n - 1) each (a small push away from every non-best answer). Groups of fewer than two present
    rewards give 0.0; ties for the best give 0.0 to everyone.

    >>> grpo_passk([1.0, 0.0, 0.0, 0.0], ["a"] * 4, norm_by_std=False)
    [1.3333333333333333, 0.0, 0.0, 0.0]
    """
    scaled = _clean(rewards)
    for indices in _groups(rewards, group_ids).values():
        for i in indices:
            scaled[i] = 0.0
        n = len(indices)
        if n < 2:
            continue
        ordered = sorted(indices, key=lambda i: -float(rewards[i]))
        best, second = float(rewards[ordered[0]]), float(rewards[ordered[1]])
        advantage = best - second
        if norm_by_std:
            centre = sum(float(rewards[i]) for i in indices) / n
            std = math.sqrt(sum((float(rewards[i]) - centre) ** 2 for i in indices) / (n - 1))
            advantage /= std + eps
        scaled[ordered[0]] = advantage * n / (n - 1)
    return scaled


def _whiten(values: list[Score]) -> list[Score]:
    """verl's masked_whiten over the present values: (v - mean) / sqrt(sample variance + 1e-8)."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return [None if v is None else 0.0 for v in values]
    centre = sum(present) / len(present)
    variance = sum((v - centre) ** 2 for v in present) / (len(present) - 1)
    scale = 1.0 / math.sqrt(variance + 1e-8)
    return [None if v is None else (v - centre) * scale for v in values]
