"""Answer rewards: does the completion's final answer match the reference's (GSM8K-style math and short answers).

Finding a final answer (`extract_final_answer`), by answer_style:
- "tag":   the last <answer>...</answer> (tagname configurable);
- "boxed": the last \\boxed{...} (nested braces included) or \\boxed 5;
- "gsm8k": after the last "####": the number right after the marker ("#### 72 clips" -> "72", as the
           dataset is written and verl's strict scorer reads it), else the rest of that line;
- "auto":  the first of tag, boxed, gsm8k that is present.
When the marker is missing, a *reference* is taken as the answer itself (a bare "42" or "Paris" column),
while a *completion* only falls back under "auto": to its last stand-alone number (numeric mode), the
math-verify search of its text (math mode) or its whole answer text (exact mode). Choosing a specific
style therefore also rewards the model for using that marker.

Comparing (mode): "numeric" reads both answers as one exact number each (`parse_number`); "math" uses
math-verify for anything that is not a plain number on both sides (math_equivalence.py); "exact" compares
normalised text. A reference that mode cannot read is scored None, counted as
`rewards/<name>/unparsed_reference` and warned about once.
"""

from __future__ import annotations

import re
from fractions import Fraction

from ..columns import reads_columns
from ..registry import register_reward_function
from .common import UnparsedReferenceCounter, answer_text, column
from .math_equivalence import judge_pairs

ANSWER_STYLES = ("auto", "gsm8k", "boxed", "tag")
MODES = ("exact", "numeric", "math")

_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+"
_PLAIN_RE = re.compile(rf"({_NUMBER})(?:\s*/\s*({_NUMBER}))?")
_INTEGER_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_GSM8K_NUMBER_RE = re.compile(rf"\$?\s*({_NUMBER})(?![\d/^{{\\]|\.\d)")
_FRAC_RE = re.compile(r"\\[dt]?frac\s*(?:\{\s*([^{}]+?)\s*\}|(\d))\s*(?:\{\s*([^{}]+?)\s*\}|(\d))")
_UNIT_TEXT_RE = re.compile(r"\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}\s*$")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z]\w{0,2}\s*=\s*([^=]+)$")
_UNIT_WORDS_RE = re.compile(r"\s+([A-Za-z]{2,}(?:\s+[A-Za-z]+)*)\s*$")
_MATH_WORDS = {"pi", "sqrt", "log", "ln", "sin", "cos", "tan", "exp", "mod", "and", "or", "to", "times", "divided"}
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# characters that, touching a number, make it part of an expression rather than a stand-alone number
_EXPRESSION_BEFORE = set("^_{\\/*(") | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_EXPRESSION_AFTER = set("^_}\\/*(!+-") | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def extract_tag(text: str, tagname: str = "answer") -> str | None:
    """The content of the last complete <tagname>...</tagname>, stripped; None when there is none."""
    found = re.findall(rf"<{re.escape(tagname)}>(.*?)</{re.escape(tagname)}>", text, flags=re.DOTALL)
    return found[-1].strip() if found else None


def extract_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (braces inside it balanced) or \\boxed 5, stripped; None when none.

    >>> extract_boxed("so \\\\boxed{\\\\frac{1}{2}}"), extract_boxed("$\\\\boxed 5$"), extract_boxed("no box")
    ('\\\\frac{1}{2}', '5', None)
    """
    positions = [m.start() for m in re.finditer(r"\\boxed(?=\s*\{|\s+[^\s{])", text)]
    for start in reversed(positions):
        rest = text[start + len("\\boxed") :]
        if not rest.lstrip().startswith("{"):  # \boxed 5: up to the next space or $
            token = re.match(r"\s+([^\s$]+)", rest)
            return token.group(1).strip() if token else None
        opening = start + len("\\boxed") + rest.index("{")
        depth = 0
        for i in range(opening, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[opening + 1 : i].strip()
        # unclosed: try an earlier one
    return None


def extract_gsm8k(text: str) -> str | None:
    """After the last '####': the number right after it, else the rest of its line; None without a marker.

    >>> extract_gsm8k("48 + 24 = 72\\n#### 72 clips"), extract_gsm8k("#### 5 + 3 = 8"), extract_gsm8k("#### Paris")
    ('72', '5', 'Paris')
    """
    if "####" not in text:
        return None
    after = text.rsplit("####", 1)[1].strip()
    if not after:
        return None
    number = _GSM8K_NUMBER_RE.match(after)
    return number.group(1) if number else after.splitlines()[0].strip()


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


def _unwrap(text: str) -> str:
    text = text.strip()
    for opening, closing in _WRAPPERS:
        if len(text) > len(opening) + len(closing) and text.startswith(opening) and text.endswith(closing):
            return text[len(opening) : -len(closing)].strip()
    return text


def _plain_text(text: str) -> str:
    """`text` with what does not change a number's value removed: $, thousands {,}, units, %, degrees, x =."""
    cleaned = _unwrap((text or "").replace("\u2212", "-"))  # U+2212, the typeset minus sign
    cleaned = _FRAC_RE.sub(lambda m: f"{m.group(1) or m.group(2)}/{m.group(3) or m.group(4)}", cleaned)
    for mark in ("\\$", "$", "\\!", "\\,", "\\;", "^{\\circ}", "^\\circ", "°", "\\%", "%", "\\left", "\\right"):
        cleaned = cleaned.replace(mark, "")
    cleaned = cleaned.replace("{,}", ",")
    cleaned = _UNIT_TEXT_RE.sub("", cleaned).strip().rstrip(".").strip()
    assignment = _ASSIGNMENT_RE.match(cleaned)
    if assignment:
        cleaned = assignment.group(1).strip()
    units = _UNIT_WORDS_RE.search(cleaned)
    if units and not (set(units.group(1).lower().split()) & _MATH_WORDS):
        cleaned = cleaned[: units.start()].strip()
    return cleaned


def parse_number(text: str | None) -> Fraction | None:
    """The number `text` states, as an exact Fraction; None unless the whole text is one number.

    Accepted around the number: $ and \\$, thousands commas, a trailing period, %, degrees, a unit
    ('18 dollars', '3.5 \\text{ cm}'), 'x = ' in front, and fractions '3/4', '\\frac{3}{4}', '\\dfrac34'.
    Not a number: '\\sqrt{2}', '(1,2)', 'x^2+1', '5/0', 'about 5'. Use mode "math" for such answers.

    >>> parse_number("$1,000.0"), parse_number("\\\\frac{3}{4}"), parse_number("x = 5"), parse_number("\\\\sqrt{2}")
    (Fraction(1000, 1), Fraction(3, 4), Fraction(5, 1), None)
    """
    match = _PLAIN_RE.fullmatch(_plain_text(text or ""))
    if match is None:
        return None
    try:
        value = _to_fraction(match.group(1))
        return value / _to_fraction(match.group(2)) if match.group(2) else value
    except ZeroDivisionError:
        return None


def last_number(text: str) -> Fraction | None:
    """The last stand-alone number in free text ('... so 24 + 48 = 72.' -> 72); numbers inside an expression
    (x^2, \\sqrt2, 2x, {3}) do not count. None when there is none.

    >>> last_number("24 + 48 = 72 apples."), last_number("it is \\\\sqrt{2}"), last_number("so \\\\frac{3}{4}")
    (Fraction(72, 1), None, Fraction(3, 4))
    """
    cleaned = _FRAC_RE.sub(lambda m: f" {m.group(1) or m.group(2)}/{m.group(3) or m.group(4)} ", text or "")
    cleaned = cleaned.replace("\\$", "$").replace("{,}", ",").replace("\u2212", "-")
    for match in reversed(list(re.finditer(rf"({_NUMBER})(?:\s*/\s*({_NUMBER}))?", cleaned))):
        before = cleaned[match.start() - 1] if match.start() else " "
        after = cleaned[match.end()] if match.end() < len(cleaned) else " "
        binary_minus = match.group(0)[0] in "+-" and (before.isalnum() or before == ")")  # 10-3: an expression
        if before in _EXPRESSION_BEFORE or after in _EXPRESSION_AFTER or binary_minus:
            continue
        return parse_number(match.group(0))
    return None


def normalize_exact(text: str, ignore_case: bool = True) -> str:
    """Text for exact comparison: whitespace runs collapsed, trimmed, one trailing period dropped, case folded."""
    collapsed = " ".join(text.split()).removesuffix(".").strip()
    return collapsed.casefold() if ignore_case else collapsed


def _completion_answer(text: str, answer_style: str, tagname: str) -> tuple[str | None, bool]:
    """(answer, marked): the marked answer, or under "auto" the whole unmarked text (each mode then searches it)."""
    found = extract_final_answer(text, answer_style, tagname)
    if found is not None or answer_style != "auto":
        return found, True
    return (text.strip() or None), False


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
    timeout_s: int = 2,
):
    """Rewards a final answer equal to the reference's (the `answer` column).

    The answer is looked for after cot_end when cot_end is set (the whole completion when it lacks cot_end;
    think_format polices the layout); a reference with a reasoning section is read the same way.
    - mode "numeric": both answers must each be one number, compared exactly ('$1,000' == '1000.0',
      '3/4' == '0.75' == '\\frac34', 'x = 5' == '5'); a reference that is not one number ('\\sqrt{2}',
      '(1,2)', 'x^2+1') cannot be read in this mode.
    - mode "math": math-verify equivalence (0.5 == \\frac{1}{2}, \\dfrac, \\%, ^\\circ, x = 5 == 5, intervals,
      sets, \\sqrt{12} == 2\\sqrt{3}); two plain numbers take the fast exact path. Each parse or comparison
      is cut off after timeout_s seconds (an integer; cut off counts as wrong).
    - mode "exact": text after collapsing whitespace, dropping a trailing period and, with ignore_case, case.
    Scores correct_score or wrong_score (also when the completion has no answer). Empty `answer` (or no
    `answer` column): None. A reference the mode cannot read: None, counted in the metric
    `rewards/final_answer_match/unparsed_reference` and warned about once.

    Config:
        reward_funcs:
          - name: final_answer_match
            mode: math             # numeric (default) or exact
            answer_style: auto     # gsm8k (#### 42), boxed (\\boxed{42}), tag (<answer>42</answer>)
            cot_end: "</think>"
            correct_score: 1.0

    >>> reward = final_answer_match()
    >>> reward([[]] * 3, ["<think>6*7</think> #### 42", "The answer is \\\\boxed{41}", "forty-two"],
    ...        answer=["6 times 7 is 42.\\n#### 42"] * 3)
    [1.0, 0.0, 0.0]
    >>> math = final_answer_match(mode="math")
    >>> math([[]] * 2, ["\\\\boxed{0.5}", "\\\\boxed{2}"], answer=["\\\\frac12", "\\\\sqrt{2}"])
    [1.0, 0.0]
    """
    judge = answer_judge("final_answer_match", mode, answer_style, tagname, cot_start, cot_end, ignore_case, timeout_s)

    def reward(prompts, completions, **columns) -> list[float | None]:
        return [None if v is None else correct_score if v else wrong_score for v in judge(completions, columns)]

    return reads_columns(reward, "answer")


def answer_judge(
    name: str,
    mode: str = "numeric",
    answer_style: str = "auto",
    tagname: str = "answer",
    cot_start: str | None = None,
    cot_end: str | None = None,
    ignore_case: bool = True,
    timeout_s: int = 2,
):
    """`judge(completions, columns) -> [True | False | None]`: final_answer_match's verdicts (None: no
    reference, or one the mode cannot read: counted as rewards/<name>/unparsed_reference). Rewards built on
    correctness (cosine_scaled_correctness) share it. Raises ValueError naming `name` on bad settings."""
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {', '.join(MODES)}, not {mode!r}")
    if answer_style not in ANSWER_STYLES:
        raise ValueError(f"{name}: answer_style must be one of {', '.join(ANSWER_STYLES)}, not {answer_style!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1:
        raise ValueError(f"{name}: timeout_s must be a whole number of seconds >= 1, not {timeout_s!r}")
    problems = {"numeric": "are not one number (try mode: math)", "math": "do not parse as math", "exact": "are empty"}
    counter = UnparsedReferenceCounter(name, problems[mode])

    def verdicts(pairs: list[tuple[str | None, str | None, bool]]) -> list[bool | None]:
        """One verdict per (reference answer, given answer, marked): None when the reference cannot be read."""
        results: list[bool | None] = [None] * len(pairs)
        slow: list[int] = []
        for i, (expected, given, marked) in enumerate(pairs):
            if expected is None:
                continue
            if mode == "exact":
                results[i] = given is not None and (
                    normalize_exact(given, ignore_case) == normalize_exact(expected, ignore_case))
                continue
            expected_number = parse_number(expected)
            given_number = None if given is None else parse_number(given) if marked else last_number(given)
            if mode == "numeric":
                results[i] = None if expected_number is None else given_number == expected_number
            elif expected_number is not None and (given_number is not None or given is None):
                results[i] = given_number == expected_number  # fast path: two plain numbers
            else:
                slow.append(i)
        for i, verdict in zip(slow, judge_pairs([pairs[i] for i in slow], timeout_s)):
            results[i] = verdict
        return results

    def judge(completions, columns) -> list[bool | None]:
        references = column(columns, "answer", len(completions))
        expected = [_reference_answer(answer_text(r, cot_start, cot_end), answer_style, tagname) for r in references]
        given = [_completion_answer(answer_text(c, cot_start, cot_end), answer_style, tagname) for c in completions]
        results = verdicts([(e, g, marked) for e, (g, marked) in zip(expected, given)])
        counter.report([e if e is not None and v is None else None for e, v in zip(expected, results)], columns)
        return results

    return judge


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

    Empty `answer`: None; a reference that is not one number: None, counted and warned about (see
    final_answer_match).

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
        given, _ = _completion_answer(answer_text(completion, cot_start, cot_end), answer_style, tagname)
        return given is not None and _INTEGER_RE.fullmatch(given.replace("$", "").strip().rstrip(".")) is not None

    def reward(prompts, completions, **columns) -> list[float]:
        return [score if is_integer(c) else 0.0 for c in completions]

    return reads_columns(reward)
