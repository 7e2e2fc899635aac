"""Grammatical error correction (seed 001): the F-score of the model's edits against the reference's edits.

The source is the sentence to correct (the prompt's last user message), the hypothesis the completion and
the target the reference correction (the `answer` column; a list there means several references). Each
text is split into words and punctuation and aligned to the source token by token, the way ERRANT aligns
(Damerau-Levenshtein without transpositions; a substitution costs less between words of one class, e.g.
two prepositions, or one stem, so "sat at mat" -> "sat on the mat" aligns at->on, then inserts "the").
Each substitution is one *edit*; a run of adjacent insertions and deletions is one edit (ERRANT's merge
rule for them; its spaCy-based rules are not reproduced). Edits are (source start, source end, new tokens)
over source positions, as in an M2 file, and the model's are scored against each reference's:

    precision = shared edits / model's edits      recall = shared edits / reference's edits
    F_beta    = (1 + beta^2) * P * R / (beta^2 * P + R)

with the best-scoring reference counting (as m2scorer and ERRANT pick the best annotator). beta defaults
to 0.5, the F0.5 of CoNLL-2014 and BEA-2019; the seed's reward reported F1 (beta: 1.0).
"""

from __future__ import annotations

import functools
import re
from difflib import SequenceMatcher
from typing import Any

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import answer_text, column, last_user_message

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")

Edit = tuple[int, int, tuple[str, ...]]

# A coarse word class for closed-class words, standing in for ERRANT's spaCy part-of-speech tags.
_WORD_CLASSES = {
    "DET": "a an the this that these those my your his her its our their some any no every each either neither",
    "ADP": "at on in of to for with by from about into onto over under between through during before after "
           "among against without within upon toward towards across behind beyond above below near since until",
    "PRON": "i you he she it we they me him us them myself yourself himself herself itself ourselves themselves "
            "who whom whose which what",
    "AUX": "is are was were be been being am has have had do does did will would can could shall should may "
           "might must",
    "CONJ": "and or but nor so yet because although though if while whereas unless",
}
_CLASS_OF = {word: name for name, words in _WORD_CLASSES.items() for word in words.split()}


def tokenize(text: str) -> list[str]:
    """Words and single punctuation marks: 'He go home.' -> ['He', 'go', 'home', '.']."""
    return _TOKEN_RE.findall(text)


def _word_class(token: str) -> str:
    if not token[0].isalnum() and token[0] != "_":
        return "PUNCT"
    return _CLASS_OF.get(token.lower(), "CONTENT")


def _stem(token: str) -> str:
    word = token.lower()
    for suffix in ("ies", "ing", "es", "ed", "s", "d"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=65536)
def substitution_cost(a: str, b: str) -> float:
    """ERRANT's substitution cost, with stems and word classes for its lemmas and tags: in [0, 2).

    >>> substitution_cost("at", "on") < substitution_cost("at", "the")
    True
    """
    if a.lower() == b.lower():
        return 0.0
    lemma = 0.0 if _stem(a) == _stem(b) else 0.499
    class_a, class_b = _word_class(a), _word_class(b)
    pos = 0.0 if class_a == class_b != "CONTENT" else 0.25 if class_a == class_b else 0.5
    return lemma + pos + 1.0 - SequenceMatcher(None, a.lower(), b.lower()).ratio()


def align(source: list[str], corrected: list[str]) -> list[tuple[str, int, int]]:
    """The cheapest alignment as (op, source index, corrected index) with op M(atch), S(ub), D(el), I(ns)."""
    prefix = 0
    while prefix < min(len(source), len(corrected)) and source[prefix] == corrected[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(source), len(corrected)) - prefix and source[-1 - suffix] == corrected[-1 - suffix]:
        suffix += 1
    middle = _align_large(source[prefix : len(source) - suffix], corrected[prefix : len(corrected) - suffix])
    return (
        [("M", i, i) for i in range(prefix)]
        + [(op, i + prefix, j + prefix) for op, i, j in middle]
        + [("M", len(source) - suffix + k, len(corrected) - suffix + k) for k in range(suffix)]
    )


MAX_CELLS = 40_000  # above this many DP cells (a rewrite, not a correction) difflib's anchors split the work


def _align_large(source: list[str], corrected: list[str]) -> list[tuple[str, int, int]]:
    """The exact alignment when small; otherwise difflib's matching blocks as anchors, aligned between them
    exactly where small and position by position where even a block is too large."""
    if len(source) * len(corrected) <= MAX_CELLS:
        return _align_middle(source, corrected)
    ops: list[tuple[str, int, int]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, source, corrected, autojunk=False).get_opcodes():
        if tag == "equal":
            ops += [("M", i1 + k, j1 + k) for k in range(i2 - i1)]
        elif (i2 - i1) * (j2 - j1) <= MAX_CELLS:
            ops += [(op, i + i1, j + j1) for op, i, j in _align_middle(source[i1:i2], corrected[j1:j2])]
        else:
            shared = min(i2 - i1, j2 - j1)
            ops += [("S" if source[i1 + k] != corrected[j1 + k] else "M", i1 + k, j1 + k) for k in range(shared)]
            ops += [("D", i, j1 + shared) for i in range(i1 + shared, i2)]
            ops += [("I", i1 + shared, j) for j in range(j1 + shared, j2)]
    return ops


def _align_middle(source: list[str], corrected: list[str]) -> list[tuple[str, int, int]]:
    rows, cols = len(source) + 1, len(corrected) + 1
    cost = [[0.0] * cols for _ in range(rows)]
    for i in range(1, rows):
        cost[i][0] = float(i)
    for j in range(1, cols):
        cost[0][j] = float(j)
    for i in range(1, rows):
        for j in range(1, cols):
            a, b = source[i - 1], corrected[j - 1]
            diagonal = cost[i - 1][j - 1] + (0.0 if a == b else substitution_cost(a, b))
            cost[i][j] = min(diagonal, cost[i - 1][j] + 1.0, cost[i][j - 1] + 1.0)
    ops: list[tuple[str, int, int]] = []
    i, j = len(source), len(corrected)
    while i or j:
        a = source[i - 1] if i else None
        b = corrected[j - 1] if j else None
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (0.0 if a == b else substitution_cost(a, b)):
            ops.append(("M" if a == b else "S", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1.0:
            ops.append(("D", i - 1, j))
            i -= 1
        else:
            ops.append(("I", i, j - 1))
            j -= 1
    return ops[::-1]


def edits(source: list[str], corrected: list[str]) -> set[Edit]:
    """The edits that turn `source` into `corrected`: (source start, source end, replacement tokens).

    >>> sorted(edits(tokenize("The cat sat at mat ."), tokenize("The cat sat on the mat .")))
    [(3, 4, ('on',)), (4, 4, ('the',))]
    """
    found: set[Edit] = set()
    run: list[tuple[str, int, int]] = []  # adjacent insertions / deletions, merged into one edit

    def close_run() -> None:
        if run:
            start = min(i for op, i, _ in run)
            end = max(i + 1 if op == "D" else i for op, i, _ in run)
            found.add((start, max(start, end), tuple(corrected[j] for op, _, j in run if op == "I")))
            run.clear()

    for op, i, j in align(source, corrected):
        if op in ("D", "I"):
            run.append((op, i, j))
            continue
        close_run()
        if op == "S":
            found.add((i, i + 1, (corrected[j],)))
    close_run()
    return found


def edit_counts(source: str, hypothesis: str, target: str) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of the hypothesis's edits against the target's;
    summed over sentences they give corpus-level P / R / F as m2scorer reports them."""
    tokens = tokenize(source)
    hypothesis_edits, target_edits = edits(tokens, tokenize(hypothesis)), edits(tokens, tokenize(target))
    shared = len(hypothesis_edits & target_edits)
    return shared, len(hypothesis_edits) - shared, len(target_edits) - shared


def fscore(true_positives: int, false_positives: int, false_negatives: int, beta: float = 0.5) -> float:
    """F_beta from edit counts, in [0, 1]; 1.0 when there were no edits to make and none were made."""
    if true_positives + false_positives + false_negatives == 0:
        return 1.0
    if true_positives == 0:
        return 0.0
    precision = true_positives / (true_positives + false_positives)
    recall = true_positives / (true_positives + false_negatives)
    return (1 + beta**2) * precision * recall / (beta**2 * precision + recall)


def edit_fscore(source: str, hypothesis: str, target: str, beta: float = 0.5) -> float:
    """F_beta of the hypothesis's edits against the target's, both made on `source`, in [0, 1].

    No-edit cases: neither edits -> 1.0 (correctly left alone); only one side edits -> 0.0.

    >>> edit_fscore("He go to school yesterday", "He went to school yesterday", "He went to school yesterday")
    1.0
    >>> edit_fscore("She like cats", "She like cats", "She likes cats")
    0.0
    >>> round(edit_fscore("The cat sat at mat .", "The cat sat on mat .", "The cat sat on the mat ."), 3)
    0.833
    """
    return fscore(*edit_counts(source, hypothesis, target), beta=beta)


def references(value: Any) -> list[str]:
    """A row's reference corrections: a list or tuple as several, a string as one; blanks dropped."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values if v is not None and str(v).strip()]


def source_text(prompt, source_prefix: str | None) -> str:
    """The prompt's last user message, from just after the first `source_prefix` in it when one is set and found."""
    message = last_user_message(prompt)
    if source_prefix and source_prefix in message:
        message = message.split(source_prefix, 1)[1]
    return message.strip()


@register_reward_function("gec_edit_f1")
def gec_edit_f1(
    source_prefix: str | None = None,
    beta: float = 0.5,
    cot_start: str | None = None,
    cot_end: str | None = None,
    references_column: str = "answer",
):
    """Rewards grammar corrections that make the reference's edits and no others: edit F-score in [0, 1].

    Source: the last user message, or the text after `source_prefix` in it (e.g. "Correct this: ").
    Hypothesis: the completion; references: the `answer` column, or the column references_column names
    (a string, or a list of alternative corrections: the best-matching one counts, as in m2scorer), each
    after cot_end when it is set and present. beta 0.5 (default) gives the F0.5 that GEC benchmarks report,
    1.0 the F1 of the seed's reward. Leaving a correct sentence alone scores 1.0; editing it, or leaving an
    incorrect one alone, 0.0; a partial correction gets partial credit. Empty `answer` (no reference): None.
    Tokens are words and punctuation marks, compared case-sensitively.

    Config:
        reward_funcs:
          - name: gec_edit_f1
            source_prefix: "Correct this: "
            beta: 0.5                       # 1.0 for the seed's F1
            references_column: references   # optional: a column holding a list of corrections

    >>> reward = gec_edit_f1(source_prefix="Correct this: ")
    >>> prompts = [[{"role": "user", "content": "Correct this: She go to school."}]] * 3
    >>> reward(prompts, ["She goes to school.", "She go to school.", "She went to school."],
    ...        answer=["She goes to school."] * 3)
    [1.0, 0.0, 0.0]
    """
    if beta <= 0:
        raise ValueError(f"gec_edit_f1: beta must be positive, not {beta}")

    def score(prompt, completion, value) -> float | None:
        targets = [t for t in (answer_text(r, cot_start, cot_end) for r in references(value)) if t]
        if not targets:
            return None
        source, hypothesis = source_text(prompt, source_prefix), answer_text(completion, cot_start, cot_end)
        return max(edit_fscore(source, hypothesis, target, beta) for target in targets)

    def reward(prompts, completions, **columns) -> list[float | None]:
        targets = column(columns, references_column, len(completions))
        return [score(p, c, t) for p, c, t in zip(prompts, completions, targets, strict=True)]

    return reads_columns(reward, references_column)
