"""The one check every reward's result passes before it is combined: N real numbers, or None.

A reward returns one score per completion: a list or tuple (or a 1-D numpy array / torch tensor) of
real numbers, each a float, an int, a bool or a numpy / torch scalar. None, or NaN, means "no opinion"
(that completion is left out of this reward). Anything else is a RewardFunctionError that names the
reward, the dataset and what came back: inf (it would turn every advantage into NaN), a dict (it would
be trained on its keys), a string (on its characters), a bare None (a forgotten `return`), one number
for the whole batch, a 2-D array, a wrong count.

    >>> check_reward_result([1, 0.5, None, float("nan")], 4, "r", "d")
    [1.0, 0.5, None, None]
    >>> check_reward_result({"a": 1.0}, 1, "r", "d")
    Traceback (most recent call last):
    ...
    generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.results.RewardFunctionError: reward 'r' (dataset 'd') returned a dict ({'a': 1.0}); a reward returns a list of 1 number(s), None where it has no opinion
"""

from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from ..run.stop import RunStopError

_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 60, 60, 6, 4


class RewardFunctionError(RunStopError):
    """A reward raised, or returned something that is not N scores; names the reward and dataset.

    A RunStopError: the run saves a checkpoint and stops, so fixing the reward and resuming loses nothing.
    """


def check_reward_result(result: Any, expected: int, reward: str, dataset: str) -> list[Optional[float]]:
    """`result` as `expected` floats (None for no opinion), or RewardFunctionError naming `reward` and `dataset`."""
    where = f"reward '{reward}' (dataset '{dataset}')"
    contract = f"a reward returns a list of {expected} number(s), None where it has no opinion"
    scores = _as_sequence(result)
    if scores is None:
        raise RewardFunctionError(f"{where} returned {_describe(result)}; {contract}")
    if len(scores) != expected:
        raise RewardFunctionError(f"{where} returned {len(scores)} scores for {expected} completions; {contract}")
    checked = []
    for index, score in enumerate(scores):
        value = _as_real(score)
        if value is _INVALID:
            raise RewardFunctionError(f"{where} returned {_describe(score)} at position {index}; {contract}")
        if value is not None and math.isinf(value):
            raise RewardFunctionError(
                f"{where} returned {value} at position {index}: scores must be finite (None for no opinion)"
            )
        checked.append(value)
    return checked


_INVALID = object()


def _as_sequence(result: Any) -> Optional[Sequence]:
    """A list of per-completion items, or None when `result` is not one sequence of scores."""
    if hasattr(result, "ndim") and hasattr(result, "tolist"):  # numpy arrays, torch tensors
        return result.tolist() if result.ndim == 1 else None
    if isinstance(result, (str, bytes, Mapping)) or not isinstance(result, Sequence):
        return None
    return result


def _as_real(score: Any) -> Any:
    """float, None (None or NaN), or _INVALID."""
    if score is None:
        return None
    if hasattr(score, "ndim") and hasattr(score, "item"):  # numpy / torch scalars and 0-d arrays
        if score.ndim != 0:
            return _INVALID
        score = score.item()
    if not isinstance(score, numbers.Real):  # numpy's float/int types register as numbers.Real
        return _INVALID
    value = float(score)
    return None if math.isnan(value) else value


def _describe(value: Any) -> str:
    """'a dict ({...})', 'None', 'a 2-D ndarray (...)': what came back, short."""
    if value is None:
        return "None (a missing return statement?)"
    kind = type(value).__name__
    if hasattr(value, "ndim"):
        kind = f"{value.ndim}-D {kind}"
    article = "an" if kind[0].lower() in "aeiou" else "a"
    return f"{article} {kind} ({' '.join(_SHORT.repr(value).split())})"
