"""Format rewards: the reasoning layout (think_format) and a gate against parroting (similarity_gate)."""

from __future__ import annotations

from difflib import SequenceMatcher

from ..columns import reads_columns
from ..registry import register_reward_function
from ..reasoning_text import passes_cot_format, split_reasoning
from .common import as_text, last_user_message


@register_reward_function("think_format")
def think_format(
    cot_start: str = "<think>",
    cot_end: str = "</think>",
    pass_score: float = 1.0,
    fail_score: float = 0.0,
):
    """Rewards completions laid out as `<think> reasoning </think> answer`.

    A completion passes when it is not blank, holds exactly one cot_end and no cot_start after its start
    (the chat template usually prefills cot_start; see reasoning_text.passes_cot_format). With cot_end null every
    non-blank completion passes. Scores: pass_score or fail_score (default 1.0 / 0.0); never None.

    Config:
        reward_funcs:
          - name: think_format
            cot_start: "<think>"
            cot_end: "</think>"
            weight: 0.5

    >>> reward = think_format()
    >>> reward([[]] * 3, ["<think>6*7</think> 42", "42", "<think>a</think> b </think>"])
    [1.0, 0.0, 0.0]
    """

    def reward(prompts, completions, **columns) -> list[float]:
        return [
            pass_score if passes_cot_format(as_text(c), cot_start, cot_end) else fail_score for c in completions
        ]

    return reads_columns(reward)


def similarity(a: str, b: str) -> float:
    """difflib's ratio of two texts in [0, 1] (1.0: identical)."""
    return SequenceMatcher(None, a, b).ratio()


def _at_least(a: str, b: str, ratio: float) -> bool:
    """similarity(a, b) >= ratio, skipping the slow exact ratio when the cheap upper bounds already fall short."""
    matcher = SequenceMatcher(None, a, b)
    return matcher.real_quick_ratio() >= ratio and matcher.quick_ratio() >= ratio and matcher.ratio() >= ratio


@register_reward_function("similarity_gate")
def similarity_gate(
    threshold: float = 90,
    compare_to: str = "reasoning",
    cot_start: str | None = "<think>",
    cot_end: str | None = "</think>",
    penalty_score: float = 0.1,
    pass_score: float = 1.0,
):
    """Penalizes parroting: an answer that repeats its own reasoning, or (compare_to: prompt) the user's message.

    compare_to "reasoning" (the seed's check): the reasoning (before cot_end) and the answer (after it) are
    compared; a completion without cot_end, or with cot_end null, passes (nothing to compare).
    compare_to "prompt": the answer (the whole completion when there is no cot_end) is compared with the
    prompt's last user message, catching a model that copies its input.
    Texts whose difflib SequenceMatcher ratio is >= threshold / 100 score penalty_score (default 0.1, as in
    the seed), others pass_score (1.0); never None. threshold is a percentage (0-100).

    Config:
        reward_funcs:
          - name: similarity_gate
            threshold: 90          # percent
            compare_to: prompt     # or reasoning (default)
            cot_end: "</think>"

    >>> gate = similarity_gate()
    >>> gate([[]] * 2, ["<think>The sky is blue.</think> The sky is blue.",
    ...                 "<think>Blue light scatters.</think> Blue."])
    [0.1, 1.0]
    """
    if compare_to not in ("reasoning", "prompt"):
        raise ValueError(f"similarity_gate: compare_to must be 'reasoning' or 'prompt', not {compare_to!r}")
    if not 0 <= threshold <= 100:
        raise ValueError(f"similarity_gate: threshold is a percentage in [0, 100], not {threshold}")
    ratio = threshold / 100

    def score(prompt, completion) -> float:
        text = as_text(completion)
        if compare_to == "reasoning":
            if not cot_end or cot_end not in text:
                return pass_score
            reasoning, answer = split_reasoning(text, cot_start, cot_end)
            return penalty_score if _at_least(reasoning, answer, ratio) else pass_score
        answer = split_reasoning(text, cot_start, cot_end)[1]
        return penalty_score if _at_least(last_user_message(prompt).strip(), answer, ratio) else pass_score

    def reward(prompts, completions, **columns) -> list[float]:
        return [score(p, c) for p, c in zip(prompts, completions, strict=True)]

    return reads_columns(reward)
