"""Are two math answers equivalent? Hugging Face's math-verify (LaTeX -> sympy, then equivalence), bounded in time.

math-verify (the verifier behind open-r1 and TRL's accuracy_reward) parses LaTeX and plain expressions
into sympy and compares them: 0.5 == \\frac{1}{2} == 1/2, \\dfrac, 50\\% == 50, 90^\\circ == 90, x = 5 == 5,
intervals [1,2), sets \\{1,2\\} == \\{2,1\\}, 2\\sqrt{3} == \\sqrt{12}. Its time limits use signal.alarm,
which only works in a process's main thread. Our rewards are usually called from TRL's event-loop
thread, so there the pairs are judged in one helper process (started on first use), in whose main
thread the limits hold; from the main thread they are judged in-process. Either way each parse and
each comparison is cut off after `timeout_s` seconds (a cut-off pair counts as not equivalent).

    >>> [bool(v) for v in judge_pairs([("\\\\frac{1}{2}", "0.5", True), ("(1,2)", "2", True)], timeout_s=2)]
    [True, False]
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

logger = logging.getLogger(__name__)

# (reference answer, given answer or None, whether the given answer was marked (boxed/tag/####))
Pair = tuple[str, "str | None", bool]

_DELIMITERS = re.compile(r"^\s*(?:\$\$?(.*?)\$\$?|\\\((.*?)\\\)|\\\[(.*?)\\\])\s*$", re.DOTALL)
_worker: ProcessPoolExecutor | None = None
_worker_lock = threading.Lock()


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


def _judge_here(pairs: list[Pair], timeout_s: int | None) -> list[bool | None]:
    from math_verify import verify

    results: list[bool | None] = []
    for reference, given, marked in pairs:
        gold = _parse_reference(reference, timeout_s)
        if not gold:
            results.append(None)
            continue
        predicted = _parse_given(given, marked, timeout_s) if given else []
        results.append(bool(predicted) and bool(verify(list(gold), predicted, timeout_seconds=timeout_s)))
    return results


def _quiet_math_verify() -> None:
    # "Timeout during comparison" is logged per pathological pair; we count them as not equivalent instead.
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _judge_in_worker(pairs: list[Pair], timeout_s: int) -> list[bool | None]:
    """Runs in the helper process's main thread, where signal-based time limits work."""
    _quiet_math_verify()
    return _judge_here(pairs, timeout_s)


def _helper() -> ProcessPoolExecutor:
    global _worker
    with _worker_lock:
        if _worker is None:
            # spawn, not fork: the trainer's process holds threads (and maybe CUDA) that must not be forked
            _worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return _worker


def _discard_helper() -> None:
    global _worker
    with _worker_lock:
        worker, _worker = _worker, None
    if worker is not None:
        for process in list(getattr(worker, "_processes", {}).values()):
            process.kill()
        worker.shutdown(wait=False, cancel_futures=True)


def judge_pairs(pairs: list[Pair], timeout_s: int = 2) -> list[bool | None]:
    """For each (reference, given, marked): True/False whether they are equivalent, None when the reference
    does not parse as math. A given None or '' is not equivalent. Each parse and comparison gets timeout_s s."""
    if not pairs:
        return []
    _quiet_math_verify()
    if threading.current_thread() is threading.main_thread():
        return _judge_here(pairs, timeout_s)
    # a generous wall-clock guard on top of the per-operation limits the helper enforces itself
    budget = 30 + 4 * timeout_s * len(pairs)
    try:
        return _helper().submit(_judge_in_worker, pairs, timeout_s).result(timeout=budget)
    except (FutureTimeout, BrokenProcessPool) as error:
        logger.warning("math-verify helper failed (%r); restarting it, this batch's %d pairs count as not equivalent",
                       error, len(pairs))
        _discard_helper()
        return [False] * len(pairs)
