"""Length rewards: a length near a target (length_reward) and brevity under a limit (max_length).

Lengths are counted on the answer (after cot_end when cot_end is set, else the whole completion), in
characters ("chars") or whitespace-separated words ("words").
"""

from __future__ import annotations

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import answer_text

UNITS = ("chars", "words")


def measure(text: str, unit: str) -> int:
    """len(text) in characters, or its number of whitespace-separated words."""
    return len(text.split()) if unit == "words" else len(text)


def plateau_score(length: float, target_length: float, plateau: float) -> float:
    """1.0 within target ± plateau, falling linearly to 0.0 at length 0 and at 2 * target_length.

         1.0 |        ________
             |      /          \\
         0.0 |____/______________\\______
             0   T-p    T    T+p   2T

    >>> [plateau_score(n, 100, 20) for n in (0, 40, 80, 100, 120, 160, 200, 300)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    """
    low, high = target_length - plateau, target_length + plateau
    if low <= length <= high:
        return 1.0
    if length < low:
        return max(0.0, length / low)
    return max(0.0, (2 * target_length - length) / (2 * target_length - high))


@register_reward_function("length_reward")
def length_reward(
    target_length: int = 100,
    plateau: int = 20,
    unit: str = "words",
    cot_start: str | None = None,
    cot_end: str | None = None,
):
    """Rewards answers near target_length: 1.0 inside [target - plateau, target + plateau], falling linearly
    to 0.0 at length 0 and at 2 * target_length (0.0 beyond). Range [0, 1]; never None.
    Needs 0 <= plateau < target_length.

    Config:
        reward_funcs:
          - name: length_reward
            target_length: 150
            plateau: 30
            unit: words            # or chars
            cot_end: "</think>"    # measure only the answer

    >>> length_reward(target_length=4, plateau=1)([[]] * 3, ["a b c d", "a b", ""])
    [1.0, 0.6666666666666666, 0.0]
    """
    if unit not in UNITS:
        raise ValueError(f"length_reward: unit must be one of {', '.join(UNITS)}, not {unit!r}")
    if not 0 <= plateau < target_length:
        raise ValueError(
            f"length_reward: needs 0 <= plateau < target_length, got plateau={plateau}, target_length={target_length}"
        )

    def reward(prompts, completions, **columns) -> list[float]:
        lengths = [measure(answer_text(c, cot_start, cot_end), unit) for c in completions]
        return [plateau_score(n, target_length, plateau) for n in lengths]

    return reads_columns(reward)


def brevity_score(length: float, limit: float) -> float:
    """1.0 up to `limit`, then falling linearly to 0.0 at 2 * limit.

    >>> [brevity_score(n, 50) for n in (0, 50, 75, 100, 500)]
    [1.0, 1.0, 0.5, 0.0, 0.0]
    """
    return 1.0 if length <= limit else max(0.0, 1.0 - (length - limit) / limit)


@register_reward_function("max_length")
def max_length(
    max_words: int | None = None,
    max_chars: int | None = None,
    cot_start: str | None = None,
    cot_end: str | None = None,
):
    """Rewards brevity: 1.0 for an answer within the limit, falling linearly to 0.0 at twice the limit.

    Give max_words, max_chars or both (then the lower of the two scores counts). Range [0, 1]; never None.
    A blank answer scores 0.0: saying nothing is not brevity. This reward says nothing about content, so
    as the only reward it teaches short answers, not right ones.

    Config:
        reward_funcs:
          - name: max_length
            max_words: 50
            cot_end: "</think>"    # limit only the answer, not the reasoning

    >>> max_length(max_words=2)([[]] * 4, ["Yes.", "Yes it is.", "Yes it is so.", ""])
    [1.0, 0.5, 0.0, 0.0]
    """
    if max_words is None and max_chars is None:
        raise ValueError("max_length: give max_words, max_chars or both")
    for key, limit in (("max_words", max_words), ("max_chars", max_chars)):
        if limit is not None and limit <= 0:
            raise ValueError(f"max_length: {key} must be positive, not {limit}")

    def score(completion) -> float:
        text = answer_text(completion, cot_start, cot_end)
        if not text:
            return 0.0
        scores = [1.0]
        if max_words is not None:
            scores.append(brevity_score(measure(text, "words"), max_words))
        if max_chars is not None:
            scores.append(brevity_score(measure(text, "chars"), max_chars))
        return min(scores)

    def reward(prompts, completions, **columns) -> list[float]:
        return [score(c) for c in completions]

    return reads_columns(reward)
