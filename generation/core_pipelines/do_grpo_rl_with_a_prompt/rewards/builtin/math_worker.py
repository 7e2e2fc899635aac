"""math-verify's judging of (reference, given) pairs, importable and runnable as a helper process.

Run as a script (`python math_worker.py`) it reads one JSON request per line on stdin,
{"pairs": [[reference, given, marked], ...], "timeout_s": 2}, and writes one JSON line of verdicts
(true, false, or null for a reference that is not math). It runs in its own main thread, where
math-verify's signal-based time limits work, and imports nothing but the standard library and math-verify,
so it starts the same way from any program (no __main__ re-import, unlike multiprocessing's spawn).

    >>> judge_here([("\\\\frac{1}{2}", "0.5", True), ("forty two", "42", True)], timeout_s=2)
    [True, None]
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys

_DELIMITERS = re.compile(r"^\s*(?:\$\$?(.*?)\$\$?|\\\((.*?)\\\)|\\\[(.*?)\\\])\s*$", re.DOTALL)


def as_boxed(answer: str) -> str:
    """An extracted answer as `\\boxed{...}` (its $...$ or \\(...\\) dropped), which math-verify reads as LaTeX.

    >>> as_boxed("$\\\\frac12$")
    '\\\\boxed{\\\\frac12}'
    """
    match = _DELIMITERS.match(answer)
    inner = next((g for g in match.groups() if g is not None), answer) if match else answer
    return "\\boxed{" + inner.strip() + "}"


def looks_like_words(answer: str) -> bool:
    """True when `answer` holds a word of 3+ letters outside LaTeX commands and \\text{...} ('forty two',
    'Paris'): math-verify would read it as a product of symbols (f*o*r*t*y), so it is not taken as math.

    >>> looks_like_words("forty two"), looks_like_words("\\\\sqrt{12} \\\\text{ cm}"), looks_like_words("2x + y")
    (True, False, False)
    """
    bare = re.sub(r"\\(?:text|mathrm|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+", " ", answer)
    return re.search(r"[A-Za-z]{3,}", bare) is not None


def quiet_math_verify() -> None:
    """math-verify logs every cut-off pair; we count them as not equivalent instead."""
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


@functools.lru_cache(maxsize=4096)
def _parse_reference(reference: str, timeout_s: int | None) -> tuple:
    from math_verify import parse

    if looks_like_words(reference):
        return ()
    return tuple(parse(as_boxed(reference), parsing_timeout=timeout_s))


def _parse_given(given: str, marked: bool, timeout_s: int | None) -> list:
    from math_verify import parse

    # A marked answer is the answer; an unmarked text is searched the way math-verify does (its last expression).
    return parse(as_boxed(given) if marked else given, parsing_timeout=timeout_s)


def same_text(a: str, b: str) -> bool:
    """The two answers are written the same way (spaces, $...$, \\left / \\right and \\dfrac aside).

    >>> same_text("$\\\\dfrac{1}{2}$", "\\\\frac{1}{ 2}"), same_text("x^2", "x^3")
    (True, False)
    """
    def plain(text: str) -> str:
        text = as_boxed(text)
        for mark in ("\\left", "\\right", " "):
            text = text.replace(mark, "")
        return text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")

    return plain(a) == plain(b)


def judge_here(pairs: list, timeout_s: int | None) -> list[bool | None]:
    """Verdicts for (reference, given, marked) pairs in this thread (time limits need the main thread)."""
    from math_verify import verify

    results: list[bool | None] = []
    for reference, given, marked in pairs:
        gold = _parse_reference(reference, timeout_s)
        if not gold:
            results.append(None)
            continue
        if given and marked and same_text(reference, given):  # written as the reference is: no sympy needed
            results.append(True)
            continue
        predicted = _parse_given(given, marked, timeout_s) if given else []
        results.append(bool(predicted) and bool(verify(list(gold), predicted, timeout_seconds=timeout_s)))
    return results


def serve() -> None:
    """The helper process's loop: one request line in, one verdict line out, until stdin closes."""
    quiet_math_verify()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.write(json.dumps(judge_here(request["pairs"], request["timeout_s"])) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
