"""Token-length shaping: DAPO's soft overlong punishment and open-r1's cosine length-scaled correctness.

Both count a completion's length in tokens: TRL passes them as the `completion_ids` column. Called
without that column (outside TRL), the scores are None and the reward warns once.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..columns import reads_columns
from ..registry import register_reward_function
from .answers import answer_judge

logger = logging.getLogger(__name__)


def token_lengths(columns: dict[str, Any], count: int, warned: list[str], name: str) -> list[int] | None:
    """len() of each row's `completion_ids`, or None (warned about once via `warned`) when TRL did not pass them."""
    ids = columns.get("completion_ids")
    if ids is None or len(ids) != count:
        if not warned:
            warned.append(name)
            logger.warning("%s: no completion_ids column (TRL passes it); scores are None", name)
        return None
    return [len(row) for row in ids]


def overlong_penalty(length: int, max_completion_len: int, soft_punish_cache: int) -> float:
    """DAPO's Eq. 13: 0 up to max - cache tokens, then falling linearly to -1 at max, -1 beyond.

    >>> [overlong_penalty(n, 100, 20) for n in (50, 80, 90, 100, 110)]
    [0.0, 0.0, -0.5, -1.0, -1.0]
    """
    if length <= max_completion_len - soft_punish_cache:
        return 0.0
    if length <= max_completion_len:
        return (max_completion_len - soft_punish_cache - length) / soft_punish_cache
    return -1.0


@register_reward_function("soft_overlong_punishment")
def soft_overlong_punishment(max_completion_len: int = 1024, soft_punish_cache: int = 256):
    """Penalizes completions that run into the length limit (DAPO, as TRL's get_soft_overlong_punishment).

    0.0 for a completion of at most max_completion_len - soft_punish_cache tokens, then linearly down to
    -1.0 at max_completion_len tokens, and -1.0 beyond. A penalty (range [-1, 0]): it never rewards
    brevity, it only stops truncated completions from looking as good as finished ones. Set
    max_completion_len to training_parameters.max_completion_length. Does not read `answer`.

    Config:
        reward_funcs:
          - name: soft_overlong_punishment
            max_completion_len: 1024    # = training_parameters.max_completion_length
            soft_punish_cache: 256

    >>> soft_overlong_punishment(100, 20)([[]] * 3, ["a", "b", "c"], completion_ids=[[1] * 50, [1] * 90, [1] * 110])
    [0.0, -0.5, -1.0]
    """
    if soft_punish_cache < 0 or max_completion_len <= soft_punish_cache:
        raise ValueError(
            "soft_overlong_punishment: needs 0 <= soft_punish_cache < max_completion_len, got "
            f"soft_punish_cache={soft_punish_cache}, max_completion_len={max_completion_len}"
        )
    warned: list[str] = []

    def reward(prompts, completions, **columns) -> list[float | None]:
        lengths = token_lengths(columns, len(completions), warned, "soft_overlong_punishment")
        if lengths is None:
            return [None] * len(completions)
        return [overlong_penalty(n, max_completion_len, soft_punish_cache) for n in lengths]

    return reads_columns(reward)


def cosine_scale(length: int, max_len: int, correct: bool, bounds: tuple[float, float, float, float]) -> float:
    """open-r1's cosine schedule over length / max_len (clamped at 1, as TRL does): a right answer falls from
    max_value_correct to min_value_correct, a wrong one rises from min_value_wrong to max_value_wrong.

    >>> [round(cosine_scale(n, 100, ok, (-1.0, -0.5, 0.5, 1.0)), 3) for n, ok in ((0, True), (50, True), (200, False))]
    [1.0, 0.75, -0.5]
    """
    min_wrong, max_wrong, min_correct, max_correct = bounds
    low, high = (min_correct, max_correct) if correct else (max_wrong, min_wrong)
    progress = min(length / max_len, 1.0)
    return low + 0.5 * (high - low) * (1.0 + math.cos(progress * math.pi))


@register_reward_function("cosine_scaled_correctness")
def cosine_scaled_correctness(
    max_len: int = 1000,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    mode: str = "math",
    answer_style: str = "auto",
    tagname: str = "answer",
    cot_start: str | None = None,
    cot_end: str | None = None,
    timeout_s: int = 2,
):
    """Correctness scaled by length (open-r1's cosine reward, as TRL's get_cosine_scaled_reward): short right
    answers earn most, short wrong answers lose most (a long wrong one is penalized less: it explored).

    Correctness is final_answer_match's verdict (mode math by default, as open-r1 and TRL; the answer
    options are the same); the length is the completion's tokens (`completion_ids`), over max_len. Empty
    `answer`: None; a reference the mode cannot read: None, counted as
    rewards/cosine_scaled_correctness/unparsed_reference. Unlike open-r1 (characters, no clamp) the length
    is in tokens and clamped at max_len, as in TRL.

    Config:
        reward_funcs:
          - name: cosine_scaled_correctness
            max_len: 1000          # tokens; e.g. training_parameters.max_completion_length
            cot_end: "</think>"

    >>> reward = cosine_scaled_correctness(max_len=100)
    >>> reward([[]] * 2, ["\\\\boxed{\\\\frac{1}{3}}", "\\\\boxed{\\\\frac{1}{2}}"], answer=["\\\\frac13"] * 2,
    ...        completion_ids=[[1] * 50, [1] * 50])
    [0.75, -0.75]
    """
    if max_len <= 0:
        raise ValueError(f"cosine_scaled_correctness: max_len must be positive, not {max_len}")
    judge = answer_judge("cosine_scaled_correctness", mode, answer_style, tagname, cot_start, cot_end, True, timeout_s)
    bounds = (min_value_wrong, max_value_wrong, min_value_correct, max_value_correct)
    warned: list[str] = []

    def reward(prompts, completions, **columns) -> list[float | None]:
        lengths = token_lengths(columns, len(completions), warned, "cosine_scaled_correctness")
        verdicts = judge(completions, columns)
        if lengths is None:
            return [None] * len(completions)
        return [None if v is None else cosine_scale(n, max_len, v, bounds) for n, v in zip(lengths, verdicts)]

    return reads_columns(reward, "answer")
