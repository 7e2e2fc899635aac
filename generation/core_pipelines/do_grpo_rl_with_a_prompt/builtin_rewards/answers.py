"""Answer rewards: does the completion's final answer match the reference's (GSM8K-style math and short answers).

Finding a final answer (`extract_final_answer`), by answer_style:
- "tag":   the last <answer>...</answer> (tagname configurable);
- "boxed": the last \\boxed{...}, nested braces included;
- "gsm8k": the line after the last "####" (GSM8K references: reasoning, then "#### 42");
- "auto":  the first of tag, boxed, gsm8k that is present.
When the marker is missing, a *reference* is taken as the answer itself (a bare "42" or "Paris" column),
while a *completion* only falls back under "auto": to its last number (numeric mode) or its whole answer
text (exact mode). Choosing a specific style therefore also rewards the model for using that marker.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ..reward_registry import register_reward_function
from .common import answer_text, column

ANSWER_STYLES = ("auto", "gsm8k", "boxed", "tag")
MODES = ("exact", "numeric")

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
NUMBER_RE = re.compile(rf"(?<![\w.])({_NUMBER})(?:\s*/\s*({_NUMBER}))?")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_INTEGER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)")


def extract_tag(text: str, tagname: str = "answer") -> str | None:
    """The content of the last complete <tagname>...</tagname>, stripped; None when there is none."""
    found = re.findall(rf"<{re.escape(tagname)}>(.*?)</{re.escape(tagname)}>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces inside it balanced), stripped; None when there is none."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth = 0
        for i in range(start + len("\\boxed"), len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start + len("\\boxed{") : i].strip()
        start = text.rfind("\\boxed{", 0, start)  # unclosed: try an earlier one
    return None


def extract_gsm8k(text: str) -> str | None:
    """The first line after the last '####', stripped; None when there is no '####' or nothing follows it."""
    if "####" not in text:
        return None
    after = text.rsplit("####", 1)[1].strip()
    return after.splitlines()[0].strip() if after else None


def extract_final_answer(text: str, answer_style: str = "auto", tagname: str = "answer") -> str | None:
    """The marked final answer of `text` in `answer_style` (see the module docstring); None when unmarked."""
    extractors = {
        "tag": lambda: extract_tag(text, tagname),
        "boxed": lambda: extract_boxed(text),
        "gsm8k": lambda: extract_gsm8k(text),
    }
    for style in ("tag", "boxed", "gsm8k") if answer_style == "auto" else (answer_style,):
        found = extractors[style]()
        if found:
            return found
    return None


def _to_fraction(number: str) -> Fraction:
    return Fraction(number.replace(",", "").lstrip("+"))


def parse_number(text: str) -> Fraction | None:
    """The number `text` states, as an exact Fraction; None when it states none.

    '$1,234.50' -> 1234.5, '18.0' -> 18, '3/4' and '\\frac{3}{4}' -> 3/4, '-2' -> -2. When the whole text is not
    one number ('18 dollars', 'x = 5'), its last number is used.

    >>> parse_number("$1,000.0"), parse_number("\\\\frac{3}{4}"), parse_number("about 5 apples"), parse_number("none")
    (Fraction(1000, 1), Fraction(3, 4), Fraction(5, 1), None)
    """
    cleaned = _FRAC_RE.sub(r"\1/\2", text or "")
    cleaned = cleaned.replace("$", "").replace("\\!", "").replace("{,}", ",").strip().rstrip(".")
    matches = list(NUMBER_RE.finditer(cleaned))
    whole = [m for m in matches if m.group(0) == cleaned]
    for match in reversed(whole or matches):
        numerator, denominator = match.group(1), match.group(2)
        try:
            value = _to_fraction(numerator)
            return value / _to_fraction(denominator) if denominator else value
        except ZeroDivisionError:
            continue
    return None


def normalize_exact(text: str, ignore_case: bool = True) -> str:
    """Text for exact comparison: whitespace runs collapsed, trimmed, one trailing period dropped, case folded."""
    collapsed = " ".join(text.split()).removesuffix(".").strip()
    return collapsed.casefold() if ignore_case else collapsed


def _completion_answer(text: str, answer_style: str, tagname: str) -> str | None:
    """The marked answer; under "auto" an unmarked text is its own answer (parse_number then takes its last number)."""
    found = extract_final_answer(text, answer_style, tagname)
    if found is not None or answer_style != "auto":
        return found
    return text.strip() or None


def _reference_answer(text: str, answer_style: str, tagname: str) -> str | None:
    found = extract_final_answer(text, answer_style, tagname)
    return found if found is not None else (text.strip() or None)


@register_reward_function("final_answer_match")
def final_answer_match(
    mode: str = "numeric",
    answer_style: str = "auto",
    tagname: str = "answer",
    cot_start: str | None = None,
    cot_end: str | None = None,
    correct_score: float = 1.0,
    wrong_score: float = 0.0,
    ignore_case: bool = True,
):
    """Rewards a final answer equal to the reference's (the `answer` column).

    The answer is looked for after cot_end when cot_end is set (the whole completion when it lacks cot_end;
    think_format polices the layout); a reference with a reasoning section is read the same way. mode "numeric" compares numbers exactly ('$1,000' == '1000.0',
    '3/4' == '0.75'); mode "exact" compares text after collapsing whitespace, dropping a trailing period and,
    with ignore_case, case. Scores correct_score or wrong_score (also when the completion has no answer);
    None when the reference has no answer to compare with (empty, or no number in numeric mode).

    Config:
        reward_funcs:
          - name: final_answer_match
            mode: numeric          # or exact
            answer_style: auto     # gsm8k (#### 42), boxed (\\boxed{42}), tag (<answer>42</answer>)
            cot_end: "</think>"
            correct_score: 1.0

    >>> reward = final_answer_match()
    >>> reward([[]] * 3, ["<think>6*7</think> #### 42", "The answer is \\\\boxed{41}", "forty-two"],
    ...        answer=["6 times 7 is 42.\\n#### 42"] * 3)
    [1.0, 0.0, 0.0]
    """
    if mode not in MODES:
        raise ValueError(f"final_answer_match: mode must be one of {', '.join(MODES)}, not {mode!r}")
    if answer_style not in ANSWER_STYLES:
        raise ValueError(
            f"final_answer_match: answer_style must be one of {', '.join(ANSWER_STYLES)}, not {answer_style!r}"
        )

    def score(completion, reference) -> float | None:
        expected = _reference_answer(answer_text(reference, cot_start, cot_end), answer_style, tagname)
        if mode == "numeric":
            expected_number = parse_number(expected) if expected else None
            if expected_number is None:
                return None
            given = _completion_answer(answer_text(completion, cot_start, cot_end), answer_style, tagname)
            return correct_score if given is not None and parse_number(given) == expected_number else wrong_score
        if expected is None:
            return None
        given = _completion_answer(answer_text(completion, cot_start, cot_end), answer_style, tagname)
        same = given is not None and normalize_exact(given, ignore_case) == normalize_exact(expected, ignore_case)
        return correct_score if same else wrong_score

    def reward(prompts, completions, **columns) -> list[float | None]:
        references = column(columns, "answer", len(completions))
        return [score(c, r) for c, r in zip(completions, references)]

    return reward


@register_reward_function("gsm8k_correctness")
@register_reward_function("gsm8k_reward")
def gsm8k_correctness(
    tagname: str = "answer",
    answer_style: str = "auto",
    cot_start: str | None = None,
    cot_end: str | None = None,
    correct_score: float = 2.0,
    wrong_score: float = 0.0,
):
    """The seed's GSM8K names: final_answer_match in numeric mode, scoring 2.0 for a right answer as upstream did.

    Config:
        reward_funcs:
          - name: gsm8k_correctness
            cot_end: "</think>"
    """
    return final_answer_match(
        mode="numeric", answer_style=answer_style, tagname=tagname, cot_start=cot_start, cot_end=cot_end,
        correct_score=correct_score, wrong_score=wrong_score,
    )


@register_reward_function("gsm8k_integerresponse")
def gsm8k_integerresponse(
    tagname: str = "answer",
    answer_style: str = "auto",
    cot_start: str | None = None,
    cot_end: str | None = None,
    score: float = 0.5,
):
    """Rewards a final answer that is an integer ('42', '-3', '1,000', '$18'): `score` (0.5, as the seed), else 0.0.

    The answer is found as in final_answer_match (exact mode: under "auto" an unmarked completion's whole
    answer text must be the integer). Never None.

    Config:
        reward_funcs:
          - name: gsm8k_integerresponse
            weight: 0.5

    >>> gsm8k_integerresponse()([[]] * 3, ["<answer>42</answer>", "<answer>4.5</answer>", "about 42"])
    [0.5, 0.0, 0.0]
    """
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"gsm8k_integerresponse: answer_style must be one of {', '.join(ANSWER_STYLES)}")

    def is_integer(completion) -> bool:
        given = _completion_answer(answer_text(completion, cot_start, cot_end), answer_style, tagname)
        return given is not None and _INTEGER_RE.fullmatch(given.replace("$", "").strip().rstrip(".")) is not None

    def reward(prompts, completions, **columns) -> list[float]:
        return [score if is_integer(c) else 0.0 for c in completions]

    return reward
