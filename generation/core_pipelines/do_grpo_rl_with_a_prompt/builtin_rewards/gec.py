"""Grammatical error correction (seed 001): the F-score of the model's edits against the reference's edits.

The source is the sentence to correct (the prompt's last user message), the hypothesis the completion and
the target the reference correction (the `answer` column). Each text is split into words and punctuation;
an *edit* is one difflib opcode turning the source into that text, written (start, end, new tokens) over
source positions. The model's edits are scored against the target's like a GEC metric (M2 / ERRANT style):

    precision = shared edits / model's edits      recall = shared edits / target's edits
    F_beta    = (1 + beta^2) * P * R / (beta^2 * P + R)      (beta 0.5 weighs precision, the usual GEC choice)
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

from ..reward_registry import register_reward_function
from .common import answer_text, as_text, column, last_user_message

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

Edit = tuple[int, int, tuple[str, ...]]


def tokenize(text: str) -> list[str]:
    """Words and single punctuation marks: 'He go home.' -> ['He', 'go', 'home', '.']."""
    return _TOKEN_RE.findall(text)


def edits(source: list[str], corrected: list[str]) -> set[Edit]:
    """The edits that turn `source` into `corrected`: (source start, source end, replacement tokens).

    >>> sorted(edits(tokenize("He go home"), tokenize("He goes home .")))
    [(1, 2, ('goes',)), (3, 3, ('.',))]
    """
    opcodes = SequenceMatcher(None, source, corrected, autojunk=False).get_opcodes()
    return {(i1, i2, tuple(corrected[j1:j2])) for tag, i1, i2, j1, j2 in opcodes if tag != "equal"}


def edit_fscore(source: str, hypothesis: str, target: str, beta: float = 1.0) -> float:
    """F_beta of the hypothesis's edits against the target's, both made on `source`, in [0, 1].

    No-edit cases: neither edits -> 1.0 (correctly left alone); only one side edits -> 0.0.

    >>> edit_fscore("He go to school yesterday", "He went to school yesterday", "He went to school yesterday")
    1.0
    >>> edit_fscore("She like cats", "She like cats", "She likes cats")
    0.0
    """
    tokens = tokenize(source)
    hypothesis_edits, target_edits = edits(tokens, tokenize(hypothesis)), edits(tokens, tokenize(target))
    if not hypothesis_edits and not target_edits:
        return 1.0
    shared = len(hypothesis_edits & target_edits)
    if shared == 0:
        return 0.0
    precision, recall = shared / len(hypothesis_edits), shared / len(target_edits)
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def source_text(prompt, source_prefix: str | None) -> str:
    """The prompt's last user message, from just after the first `source_prefix` in it when one is set and found."""
    message = last_user_message(prompt)
    if source_prefix and source_prefix in message:
        message = message.split(source_prefix, 1)[1]
    return message.strip()


@register_reward_function("gec_edit_f1")
def gec_edit_f1(
    source_prefix: str | None = None,
    beta: float = 1.0,
    cot_start: str | None = None,
    cot_end: str | None = None,
):
    """Rewards grammar corrections that make the reference's edits and no others: edit F-score in [0, 1].

    Source: the last user message, or the text after `source_prefix` in it (e.g. "Correct this: ").
    Hypothesis: the completion, target: the `answer` column (both after cot_end when it is set and present). beta 1.0 gives F1,
    0.5 gives the F0.5 that GEC benchmarks report. Leaving a correct sentence alone scores 1.0; editing it,
    or leaving an incorrect one alone, 0.0. None when the row has no reference (empty `answer`).
    Tokens are words and punctuation marks, compared case-sensitively.

    Config:
        reward_funcs:
          - name: gec_edit_f1
            source_prefix: "Correct this: "
            beta: 0.5

    >>> reward = gec_edit_f1(source_prefix="Correct this: ")
    >>> prompts = [[{"role": "user", "content": "Correct this: She go to school."}]] * 3
    >>> reward(prompts, ["She goes to school.", "She go to school.", "She went to school."],
    ...        answer=["She goes to school."] * 3)
    [1.0, 0.0, 0.0]
    """
    if beta <= 0:
        raise ValueError(f"gec_edit_f1: beta must be positive, not {beta}")

    def score(prompt, completion, target) -> float | None:
        target = answer_text(target, cot_start, cot_end)
        if not target:
            return None
        hypothesis = answer_text(completion, cot_start, cot_end)
        return edit_fscore(source_text(prompt, source_prefix), hypothesis, target, beta)

    def reward(prompts, completions, **columns) -> list[float | None]:
        targets = column(columns, "answer", len(completions))
        return [score(p, c, t) for p, c, t in zip(prompts, completions, targets, strict=True)]

    return reward
