"""Are two math answers equivalent? Hugging Face's math-verify (LaTeX -> sympy, then equivalence), bounded in time.

math-verify (the verifier behind open-r1 and TRL's accuracy_reward) parses LaTeX and plain expressions
into sympy and compares them: 0.5 == \\frac{1}{2} == 1/2, \\dfrac, 50\\% == 50, 90^\\circ == 90, x = 5 == 5,
intervals [1,2), sets \\{1,2\\} == \\{2,1\\}, 2\\sqrt{3} == \\sqrt{12}. Its time limits use signal.alarm,
which only works in a process's main thread. Our rewards are usually called from TRL's event-loop
thread, so there a batch's distinct pairs are judged in helper processes (math_worker.py, started on
first use, one per core up to 4; each reference's pairs go to one of them, which caches its parse), in
whose main threads the limits hold; called from the main thread, they are judged in-process.
Either way each parse and each comparison is cut off after `timeout_s` seconds (cut off: not
equivalent), and a helper that does not answer at all is killed and replaced.

    >>> [bool(v) for v in judge_pairs([("\\\\frac{1}{2}", "0.5", True), ("(1,2)", "2", True)], timeout_s=2)]
    [True, False]
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from .math_worker import judge_here, quiet_math_verify

logger = logging.getLogger(__name__)

# (reference answer, given answer or None, whether the given answer was marked (boxed/tag/####))
Pair = tuple[str, "str | None", bool]

HELPERS = max(1, min(4, os.cpu_count() or 1))
_WORKER_SCRIPT = Path(__file__).with_name("math_worker.py")


class _Helper:
    """One math_worker.py process; ask() sends a request and waits for its line, killing it on a time-out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(_WORKER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            bufsize=1,
        )

    def send(self, pairs: list[Pair], timeout_s: int) -> None:
        self.process.stdin.write(json.dumps({"pairs": pairs, "timeout_s": timeout_s}) + "\n")
        self.process.stdin.flush()

    def receive(self, deadline: float) -> list[bool | None] | None:
        """The verdict line, or None when the helper died or missed the deadline (it is then killed)."""
        ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.close()
            return None
        return json.loads(line)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait()


_helpers: list[_Helper] = []
_helpers_lock = threading.Lock()  # one batch at a time uses the helpers


def _close_helpers() -> None:
    for helper in _helpers:
        helper.close()


atexit.register(_close_helpers)


def _chunks(pairs: list[Pair], count: int) -> list[list[Pair]]:
    """`pairs` in up to `count` chunks of similar size, the pairs of one reference kept together."""
    by_reference: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_reference.setdefault(pair[0], []).append(pair)
    chunks: list[list[Pair]] = [[] for _ in range(min(count, len(by_reference)))]
    for group in sorted(by_reference.values(), key=len, reverse=True):
        min(chunks, key=len).extend(group)
    return chunks


def _judge_in_helpers(pairs: list[Pair], timeout_s: int) -> dict[Pair, bool | None]:
    chunks = _chunks(pairs, HELPERS)
    verdicts: dict[Pair, bool | None] = {}
    with _helpers_lock:
        _helpers[:] = [h for h in _helpers if h.alive()]
        while len(_helpers) < len(chunks):
            _helpers.append(_Helper())
        for helper, chunk in zip(_helpers, chunks):
            helper.send(chunk, timeout_s)
        # a generous wall-clock guard on top of the per-operation limits the helpers enforce themselves
        deadline = time.monotonic() + 30 + 4 * timeout_s * max(len(chunk) for chunk in chunks)
        for helper, chunk in zip(_helpers, chunks):
            answer = helper.receive(deadline)
            if answer is None:
                logger.warning("math-verify helper did not answer; replaced, its %d pairs count as not equivalent",
                               len(chunk))
                answer = [False] * len(chunk)
            verdicts.update(zip(chunk, answer))
    return verdicts


def judge_pairs(pairs: list[Pair], timeout_s: int = 2) -> list[bool | None]:
    """For each (reference, given, marked): True/False whether they are equivalent, None when the reference
    does not parse as math. A given None or '' is not equivalent. Each parse and comparison gets timeout_s s;
    each distinct pair of the batch is judged once."""
    distinct = list(dict.fromkeys((reference, given, bool(marked)) for reference, given, marked in pairs))
    if not distinct:
        return []
    if threading.current_thread() is threading.main_thread():
        quiet_math_verify()
        verdicts = dict(zip(distinct, judge_here(distinct, timeout_s)))
    else:
        verdicts = _judge_in_helpers(distinct, timeout_s)
    return [verdicts[(reference, given, bool(marked))] for reference, given, marked in pairs]
