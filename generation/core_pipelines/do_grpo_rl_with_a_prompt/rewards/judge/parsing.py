"""Pure parsing: a judge's answer (text, and optionally its logprobs) -> per-criterion scores or a failure.

The judge is asked for one `<name>value</name>` tag per criterion of `score_types`. What is read:
- only the judge's own answer: everything inside `<think>…</think>` (also a leading `…</think>` whose
  opening tag the server prefilled, and an unclosed trailing `<think>`) and any echo of a fenced response
  (`<<<BEGIN RESPONSE…>>> … <<<END RESPONSE…>>>`, see prompt.py) is ignored;
- the last remaining tag of each criterion (judges restate their verdict at the end); at the very end
  of the answer the closing tag may be missing ("…<score>4", cut by max_tokens);
- values like "7", " 7.5 ", "**7**" and "7/10" (the denominator must be the criterion's max);
- autofail values 0/false/fail/no (fail) and 1/true/pass/yes or any non-zero number (pass);
- with logprobs (score_mode: logprobs), a score is the expectation over the in-range numbers among the
  top alternatives of the value's token, when the value is one token (else the text is read).
A missing tag, an unreadable value or one outside [min, max] is a failure with its reason (or, with
clamp=True, an out-of-range value is clamped and reported in `clamped`). Nothing is silently dropped.

>>> criteria = criteria_from_config([{"name": "helpfulness", "type": "score", "min": 1, "max": 10}])
>>> verdict = parse_judgement("<think><helpfulness>2</helpfulness></think> <helpfulness>7/10</helpfulness>", criteria)
>>> verdict.scores, combine(verdict, criteria)
({'helpfulness': 7.0}, 0.6666666666666666)
>>> parse_judgement("<helpfulness>11</helpfulness>", criteria).failure
'helpfulness: 11 is outside [1, 10]'
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Sequence

FENCE_OPEN = "<<<BEGIN RESPONSE{label}>>>"
FENCE_CLOSE = "<<<END RESPONSE{label}>>>"

_FENCED = re.compile(r"<<<BEGIN RESPONSE[^>]*>>>.*?(?:<<<END RESPONSE[^>]*>>>|\Z)", re.S)
_THINK_PAIR = re.compile(r"<think>.*?</think>", re.S | re.I)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_VALUE = re.compile(rf"^({_NUMBER})(?:\s*/\s*({_NUMBER}))?$")
_FAIL_WORDS = {"false", "fail", "failed", "no"}
_PASS_WORDS = {"true", "pass", "passed", "yes"}


@dataclass(frozen=True)
class Criterion:
    """One entry of score_types: a `score` on [min, max] with a weight, or an `autofail` gate."""

    name: str
    type: Literal["score", "autofail"] = "score"
    min: float = 0.0
    max: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """What one judge answer says about one completion.

    scores: criterion -> value on the criterion's own scale (autofail: 1.0 pass, 0.0 fail);
    failure: why the answer cannot be used (None when it can); autofailed / clamped: criterion names;
    from_logprobs: criteria whose score is the expectation over the judge's top logprobs.
    """

    scores: dict[str, float] = field(default_factory=dict)
    failure: Optional[str] = None
    autofailed: tuple[str, ...] = ()
    clamped: tuple[str, ...] = ()
    from_logprobs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.failure is None


def criteria_from_config(score_types: Iterable[dict[str, Any]]) -> list[Criterion]:
    """Validate the `score_types` kwarg; a ValueError names the bad entry."""
    if isinstance(score_types, dict):
        score_types = [score_types]
    criteria: list[Criterion] = []
    for index, item in enumerate(score_types or []):
        where = f"score_types[{index}]"
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"{where}: expected a mapping with at least 'name', got {item!r}")
        unknown = set(item) - {"name", "type", "min", "max", "weight"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: name, type, min, max, weight")
        name, kind = str(item["name"]), item.get("type", "score")
        if not _NAME.match(name):
            raise ValueError(f"{where}: name {name!r} cannot be an XML tag (letters, digits, _ . -)")
        if kind not in ("score", "autofail"):
            raise ValueError(f"{where} ({name}): type must be 'score' or 'autofail', got {kind!r}")
        weight = float(item.get("weight", 1.0))
        if weight < 0 or math.isnan(weight):
            raise ValueError(f"{where} ({name}): weight must be >= 0")
        low, high = float(item.get("min", 0.0)), float(item.get("max", 1.0))
        if kind == "score" and ("min" not in item or "max" not in item or not low < high):
            raise ValueError(f"{where} ({name}): a score needs numeric min < max")
        criteria.append(Criterion(name, kind, low, high, weight))
    if not criteria:
        raise ValueError("score_types is empty: list at least one criterion")
    names = [c.name for c in criteria]
    if len(set(names)) != len(names):
        raise ValueError(f"score_types has duplicate names: {names}")
    return criteria


def mask_ignored(text: str) -> str:
    """`text` with the judge's thinking and echoed fenced responses blanked out (same length: offsets hold)."""
    spans: list[tuple[int, int]] = []
    first_close, first_open = _THINK_CLOSE.search(text), _THINK_OPEN.search(text)
    if first_close and (not first_open or first_close.start() < first_open.start()):
        spans.append((0, first_close.end()))  # "...</think>": the server prefilled the opening tag
    spans += [m.span() for m in _THINK_PAIR.finditer(text, spans[0][1] if spans else 0)]
    last_open = None
    for last_open in _THINK_OPEN.finditer(text):
        pass
    if last_open and not _THINK_CLOSE.search(text, last_open.end()):
        spans.append((last_open.start(), len(text)))  # thinking that never ended
    spans += [m.span() for m in _FENCED.finditer(text)]
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def parse_value(raw: str, criterion: Criterion) -> tuple[Optional[float], Optional[str]]:
    """(value, None) or (None, reason) for one tag's content, before range checks."""
    text = raw.strip().strip("*`'\"").strip()
    if criterion.type == "autofail":
        if text.lower() in _FAIL_WORDS:
            return 0.0, None
        if text.lower() in _PASS_WORDS:
            return 1.0, None
    match = _VALUE.match(text)
    if not match:
        return None, f"{criterion.name}: cannot read {raw.strip()!r} as a number"
    value = float(match.group(1))
    if match.group(2) is not None and float(match.group(2)) != criterion.max:
        return None, f"{criterion.name}: {text!r} is not on the criterion's scale (max {_fmt(criterion.max)})"
    if criterion.type == "autofail":
        return (0.0 if value == 0 else 1.0), None
    return value, None


def parse_judgement(
    text: Optional[str], criteria: Sequence[Criterion], *, clamp: bool = False, logprobs: Optional[list] = None
) -> Verdict:
    """Scores of one judge answer. `logprobs`: OpenAI-style token list for score_mode=logprobs."""
    if text is None or not text.strip():
        return Verdict(failure="empty answer")
    return _parse_span(text, mask_ignored(text), 0, len(text), criteria, clamp, _TokenIndex.build(text, logprobs))


def parse_group_judgement(
    text: Optional[str], criteria: Sequence[Criterion], count: int, *, clamp: bool = False,
    logprobs: Optional[list] = None,
) -> list[Verdict]:
    """Verdicts for `count` responses judged together: one `<response_k>…</response_k>` block each."""
    if text is None or not text.strip():
        return [Verdict(failure="empty answer")] * count
    masked, tokens = mask_ignored(text), _TokenIndex.build(text, logprobs)
    verdicts = []
    for k in range(1, count + 1):
        blocks = list(re.finditer(rf"<response_{k}>(.*?)</response_{k}>", masked, re.S | re.I))
        if not blocks:
            verdicts.append(Verdict(failure=f"missing <response_{k}> block"))
            continue
        verdicts.append(_parse_span(text, masked, blocks[-1].start(1), blocks[-1].end(1), criteria, clamp, tokens))
    return verdicts


def combine(verdict: Verdict, criteria: Sequence[Criterion], aggregate: str = "weighted_mean") -> Optional[float]:
    """One reward from a verdict: None on failure, 0.0 on autofail.

    weighted_mean: weighted mean of (value - min) / (max - min) over the score criteria, in [0, 1]
    (1.0 when there are only autofail criteria and all pass). sum: the seed's raw sum of the values
    (times their weights), passed autofails counting 1.
    """
    if verdict.failure is not None:
        return None
    if verdict.autofailed:
        return 0.0
    scored = [c for c in criteria if c.type == "score"]
    if aggregate == "sum":
        return float(sum(c.weight * verdict.scores[c.name] for c in criteria))
    total_weight = sum(c.weight for c in scored)
    if not scored or total_weight == 0:
        return 1.0
    return sum(c.weight * (verdict.scores[c.name] - c.min) / (c.max - c.min) for c in scored) / total_weight


# ---------------------------------------------------------------------------------------------- internals


def _parse_span(
    text: str, masked: str, start: int, end: int, criteria: Sequence[Criterion], clamp: bool,
    tokens: Optional["_TokenIndex"],
) -> Verdict:
    scores: dict[str, float] = {}
    problems: list[str] = []
    autofailed: list[str] = []
    clamped: list[str] = []
    from_logprobs: list[str] = []
    window = masked[start:end]
    for criterion in criteria:
        name = re.escape(criterion.name)
        # The closing tag may be missing, or cut, only at the very end (an answer stopped by max_tokens).
        matches = list(re.finditer(rf"<\s*{name}\s*>([^<]*?)(?:<\s*/\s*{name}\s*>|<[^<>]*\Z|\s*\Z)", window, re.I))
        if not matches:
            problems.append(f"missing <{criterion.name}> tag")
            continue
        raw = matches[-1].group(1)
        expected = None
        if tokens is not None and criterion.type == "score":
            expected = tokens.expected_value(start + matches[-1].start(1), raw, criterion)
        if expected is not None:
            value = expected
            from_logprobs.append(criterion.name)
        else:
            value, problem = parse_value(raw, criterion)
            if problem:
                problems.append(problem)
                continue
        if criterion.type == "autofail":
            scores[criterion.name] = value
            if value == 0.0:
                autofailed.append(criterion.name)
            continue
        if not criterion.min <= value <= criterion.max:
            if not clamp:
                problems.append(f"{criterion.name}: {_fmt(value)} is outside [{_fmt(criterion.min)}, {_fmt(criterion.max)}]")
                continue
            value = min(max(value, criterion.min), criterion.max)
            clamped.append(criterion.name)
        scores[criterion.name] = value
    if autofailed:  # an autofail decides the reward whatever else went wrong
        return Verdict(scores, None, tuple(autofailed), tuple(clamped), tuple(from_logprobs))
    return Verdict(scores, "; ".join(problems) or None, (), tuple(clamped), tuple(from_logprobs))


class _TokenIndex:
    """Judge answer tokens with their character offsets, to read the distribution over a score token."""

    def __init__(self, starts: list[int], tokens: list[dict]):
        self.starts, self.tokens = starts, tokens

    @classmethod
    def build(cls, text: str, logprobs: Optional[list]) -> Optional["_TokenIndex"]:
        if not logprobs:
            return None
        tokens = [_as_dict(token) for token in logprobs]
        if "".join(str(t.get("token", "")) for t in tokens) != text:
            return None  # tokens do not spell the answer (e.g. a server that trims): use the text
        starts, offset = [], 0
        for token in tokens:
            starts.append(offset)
            offset += len(token["token"])
        return cls(starts, tokens)

    def expected_value(self, value_start: int, raw: str, criterion: Criterion) -> Optional[float]:
        """Probability-weighted score over the in-range numbers among the value token's top alternatives.

        The value must be one token (else None: text parsing). As in G-Eval, the numbers are renormalised
        among themselves, so a sampled non-number ("N" in "<score>N") still yields the expected score.
        """
        stripped = raw.strip()
        position = value_start + (len(raw) - len(raw.lstrip()))
        index = bisect.bisect_right(self.starts, position) - 1
        if index < 0 or self.tokens[index]["token"].strip() != stripped:
            return None
        weights: dict[float, float] = {}
        for alternative in self.tokens[index].get("top_logprobs") or []:
            alternative = _as_dict(alternative)
            match = _VALUE.match(str(alternative.get("token", "")).strip())
            if not match or match.group(2) is not None:
                continue
            value = float(match.group(1))
            if criterion.min <= value <= criterion.max:
                weights[value] = weights.get(value, 0.0) + math.exp(float(alternative["logprob"]))
        total = sum(weights.values())
        if total <= 0:
            return None
        return sum(value * weight for value, weight in weights.items()) / total


def _as_dict(item: Any) -> dict:
    if isinstance(item, dict):
        return item
    return item.model_dump() if hasattr(item, "model_dump") else dict(vars(item))


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
