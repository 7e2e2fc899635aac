"""Per-step judge counters, the scalars logged from them, and the stop-the-run failure policy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import JudgeFailureError
from .client import CallOutcome
from .parsing import Verdict

COUNTERS = ("calls", "cache_hits", "retries", "http_429", "timeouts", "parse_failures", "autofails",
            "failed", "format_gated", "prompt_tokens", "completion_tokens")


@dataclass
class StepStats:
    """Counters of one reward call (one training step's batch).

    calls: requests sent to the judge (cache hits aside); judged: completions scored by those calls;
    failed: judged completions that got no score (API failure after retries, or a parse failure).
    """

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    http_429: int = 0
    timeouts: int = 0
    parse_failures: int = 0
    autofails: int = 0
    failed: int = 0
    format_gated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judged: int = 0
    latencies: list[float] = field(default_factory=list)
    last_error: Optional[str] = None

    def add_call(self, outcome: CallOutcome, verdicts: list[Verdict]) -> None:
        """Count one judge call (or cache hit) and the verdicts it produced (empty when it failed)."""
        if outcome.cached:
            self.cache_hits += 1
        else:
            self.calls += 1
            self.retries += outcome.retries
            self.http_429 += outcome.http_429
            self.timeouts += outcome.timeouts
            self.latencies.append(outcome.latency)
            if outcome.response is not None:
                self.prompt_tokens += outcome.response.prompt_tokens
                self.completion_tokens += outcome.response.completion_tokens
        if outcome.error is not None:
            self.last_error = outcome.error
        for verdict in verdicts:
            if verdict.failure is not None:
                self.parse_failures += 1
                self.last_error = f"unreadable judge answer: {verdict.failure}"
            if verdict.autofailed:
                self.autofails += 1

    def add_judged(self, count: int, unscored: int, cached: bool) -> None:
        if not cached:
            self.judged += count
            self.failed += unscored

    @property
    def failure_share(self) -> float:
        return self.failed / self.judged if self.judged else 0.0

    def metrics(self, price_per_prompt_token: Optional[float] = None,
                price_per_completion_token: Optional[float] = None) -> dict[str, float]:
        values = {name: float(getattr(self, name)) for name in COUNTERS}
        if self.latencies:
            ordered = sorted(self.latencies)
            values["latency_mean"] = sum(ordered) / len(ordered)
            values["latency_p95"] = ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
        if price_per_prompt_token is not None or price_per_completion_token is not None:
            values["cost"] = (self.prompt_tokens * (price_per_prompt_token or 0.0)
                              + self.completion_tokens * (price_per_completion_token or 0.0))
        return values


def log_step(name: str, stats: StepStats, prices: tuple, log_metric: Optional[Callable[[str, float], None]]) -> None:
    """Send the step's `judge/<name>/<metric>` scalars through `log_metric`, when the caller passed one.

    Through the reward call's StepMetrics (rewards/step.py), the counters are summed and the latencies pooled
    over every process of the step; through a plain log_metric (TRL's), this process's values are sent.
    """
    if log_metric is None:
        return
    count, samples = getattr(log_metric, "count", None), getattr(log_metric, "samples", None)
    for key, value in stats.metrics(*prices).items():
        if count is None or samples is None:
            log_metric(f"judge/{name}/{key}", value)
        elif not key.startswith("latency_"):
            count(f"judge/{name}/{key}", value)
    if samples is not None and count is not None:
        samples(f"judge/{name}/latency", stats.latencies)


class FailureWatch:
    """Raise JudgeFailureError when more than `max_share` of judged completions fail `max_steps` steps running.

    Steps where nothing was sent to the judge (all gated or cached) leave the streak as it is.
    `max_steps` of 0 or None turns the watch off.
    """

    def __init__(self, name: str, max_share: float, max_steps: Optional[int]):
        self.name, self.max_share, self.max_steps = name, max_share, max_steps
        self.streak = 0

    def observe(self, stats: StepStats) -> None:
        if not self.max_steps or stats.judged == 0:
            return
        self.streak = self.streak + 1 if stats.failure_share > self.max_share else 0
        if self.streak >= self.max_steps:
            raise JudgeFailureError(
                f"judge reward '{self.name}': more than {self.max_share:.0%} of judge calls failed in each of the "
                f"last {self.streak} steps (this step: {stats.failed}/{stats.judged}); last error: {stats.last_error}. "
                "Stopping instead of training on missing rewards: check the judge's URL, key, model and prompt."
            )
