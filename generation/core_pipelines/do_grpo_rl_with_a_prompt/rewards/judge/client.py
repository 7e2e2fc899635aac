"""The judge's HTTP side: one OpenAI-compatible client per endpoint, bounded, rate-limited, retried.

- One `JudgeClient` per (base_url, api_key) for the whole process (`get_client`); rewards that share an
  endpoint share its concurrency and rate budgets, the strictest configured value winning.
- Each event loop gets its own AsyncOpenAI, semaphore and rate limiter, made on first use inside that
  loop: TRL awaits async rewards on a loop in a daemon thread, and asyncio objects belong to one loop.
- Retries (tenacity) on 408/409/429/5xx, dropped connections, timeouts and unreadable bodies, with
  jittered exponential backoff; a Retry-After (or retry-after-ms) header on 429/503 is honoured as the
  least wait. Client errors (400, 401, 404, …) are not retried. The concurrency slot is released while
  waiting, so one throttled call never holds up the others.
- `complete` never raises for an API failure: it returns a CallOutcome with `error` set (keys redacted)
  and the counters the reward turns into metrics. Anything else (a bug) propagates.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 120.0
"""A server asking for a longer wait than this is waited on for this long."""
RETRYABLE_STATUS = (408, 409, 429)

_SECRETS: set[str] = set()
_CLIENTS: dict[tuple[str, str], "JudgeClient"] = {}
_CLIENTS_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------ data shapes


@dataclass(frozen=True)
class JudgeRequest:
    """One chat completion to ask for: the same shape for HTTP and local judges, and the cache key."""

    model: str
    messages: list[dict]
    sampling: dict[str, Any]  # temperature, top_p, max_tokens, and logprobs / top_logprobs when asked

    def cache_fields(self) -> dict[str, Any]:
        return {"model": self.model, "messages": self.messages, "sampling": self.sampling}


@dataclass
class JudgeResponse:
    text: Optional[str]
    logprobs: Optional[list[dict]] = None  # OpenAI shape: [{token, logprob, top_logprobs: [{token, logprob}]}]
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class CallOutcome:
    """What one judge call came to, retries included."""

    response: Optional[JudgeResponse] = None
    error: Optional[str] = None
    attempts: int = 0
    http_429: int = 0
    timeouts: int = 0
    latency: float = 0.0
    cached: bool = False

    @property
    def retries(self) -> int:
        return max(self.attempts - 1, 0)


@dataclass
class Limits:
    max_concurrency: int = 16
    requests_per_minute: Optional[float] = None
    tokens_per_minute: Optional[float] = None

    def per_process(self, processes: int) -> "Limits":
        """This process's share when `processes` processes run the same judge: the configured limits hold for
        the whole run (each process gets 1/N of the concurrency and of the per-minute budgets)."""
        if processes <= 1:
            return self
        if self.max_concurrency < processes:
            raise ValueError(f"max_concurrency {self.max_concurrency} is below the {processes} processes of this run: "
                             f"each needs at least one request slot (set max_concurrency >= {processes})")
        return Limits(
            self.max_concurrency // processes,
            self.requests_per_minute / processes if self.requests_per_minute else None,
            self.tokens_per_minute / processes if self.tokens_per_minute else None,
        )

    def tighten(self, other: "Limits") -> None:
        """Keep the strictest of both (None means no limit)."""
        self.max_concurrency = min(self.max_concurrency, other.max_concurrency)
        for name in ("requests_per_minute", "tokens_per_minute"):
            values = [v for v in (getattr(self, name), getattr(other, name)) if v]
            setattr(self, name, min(values) if values else None)


class MalformedResponse(Exception):
    """The server answered 2xx with a body that is not a chat completion."""


# ------------------------------------------------------------------------------------------- redaction


def register_secret(secret: Optional[str]) -> None:
    """Remember an API key so that `redact` hides it from every message this package writes."""
    if secret and len(secret) >= 4:
        _SECRETS.add(secret)


def redact(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


# ----------------------------------------------------------------------------------------------- client


def get_client(base_url: str, api_key: Optional[str], limits: Limits) -> "JudgeClient":
    """The process-wide client for this endpoint (made on first request), its limits tightened to `limits`."""
    key = (base_url.rstrip("/"), api_key or "")
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = JudgeClient(key[0], api_key, Limits(**vars(limits)))
        else:
            client.limits.tighten(limits)
    return client


class JudgeClient:
    """An OpenAI-compatible chat endpoint with per-loop connection pool, semaphore and rate limiters."""

    def __init__(self, base_url: str, api_key: Optional[str], limits: Limits):
        register_secret(api_key)
        self.base_url = base_url
        self.limits = limits
        self._api_key = api_key
        self._loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]" = weakref.WeakKeyDictionary()
        self._loops_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JudgeClient(base_url={self.base_url!r}, api_key={'***' if self._api_key else None}, limits={self.limits})"

    async def complete(self, request: JudgeRequest, *, timeout: float, max_retries: int) -> CallOutcome:
        """Ask once, retrying transient failures; a failure after the retries is `outcome.error`."""
        state = self._state()
        outcome = CallOutcome()
        started = time.monotonic()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(max_retries + 1),
            wait=_wait_with_retry_after,
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    outcome.attempts += 1
                    try:
                        outcome.response = await self._attempt(state, request, timeout)
                    except Exception as error:
                        _count_fault(outcome, error)
                        logger.debug("judge call to %s failed (attempt %d): %s", self.base_url, outcome.attempts,
                                     redact(describe_error(error)))
                        raise
        except Exception as error:
            if not _is_api_failure(error):
                raise
            outcome.error = redact(describe_error(error))
        outcome.latency = time.monotonic() - started
        return outcome

    async def _attempt(self, state: "_LoopState", request: JudgeRequest, timeout: float) -> JudgeResponse:
        estimate = math.ceil(sum(len(str(m.get("content", ""))) for m in request.messages) / 4)
        if state.requests:
            await state.requests.acquire(1)
        if state.tokens:
            await state.tokens.acquire(estimate)
        async with state.semaphore:
            try:
                completion = await asyncio.wait_for(
                    state.openai.chat.completions.create(
                        model=request.model, messages=request.messages, timeout=timeout, **request.sampling
                    ),
                    timeout,
                )
            except json.JSONDecodeError as error:
                raise MalformedResponse(f"the judge's response is not JSON: {error}") from None
        response = _to_response(completion)
        if state.tokens:
            state.tokens.debit(response.completion_tokens + max(response.prompt_tokens - estimate, 0))
        return response

    def _state(self) -> "_LoopState":
        loop = asyncio.get_running_loop()
        with self._loops_lock:
            state = self._loops.get(loop)
            if state is None:
                state = self._loops[loop] = _LoopState.create(self.base_url, self._api_key, self.limits)
        return state


@dataclass
class _LoopState:
    openai: Any
    semaphore: asyncio.Semaphore
    requests: Optional["RateLimiter"]
    tokens: Optional["RateLimiter"]

    @classmethod
    def create(cls, base_url: str, api_key: Optional[str], limits: Limits) -> "_LoopState":
        from openai import AsyncOpenAI, DefaultAsyncHttpxClient  # heavy import, first judge call only

        # Our own HTTP client (the SDK's defaults): the SDK's private one, collected after its loop closed,
        # would schedule its close on whichever loop runs then and log "Event loop is closed".
        client = AsyncOpenAI(base_url=base_url, api_key=api_key or "not-needed", max_retries=0,
                             http_client=DefaultAsyncHttpxClient())
        return cls(
            openai=client,
            semaphore=asyncio.Semaphore(limits.max_concurrency),
            requests=RateLimiter(limits.requests_per_minute) if limits.requests_per_minute else None,
            tokens=RateLimiter(limits.tokens_per_minute) if limits.tokens_per_minute else None,
        )


class RateLimiter:
    """A token bucket refilled at `per_minute / 60` per second, holding at most one minute's worth.

    `acquire` waits (first come, first served) until `amount` is available; `debit` settles usage that was
    only known afterwards (completion tokens), and may leave the bucket in debt, which later calls wait off.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, amount: float) -> None:
        amount = min(amount, self.capacity)
        async with self.lock:
            self._refill()
            while self.level < amount:
                await asyncio.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def debit(self, amount: float) -> None:
        self._refill()
        self.level -= amount


# ---------------------------------------------------------------------------------------------- helpers


def _to_response(completion: Any) -> JudgeResponse:
    choices = getattr(completion, "choices", None)
    if not choices:
        raise MalformedResponse(f"no choices in the judge's response: {str(completion)[:200]!r}")
    choice = choices[0]
    message = getattr(choice, "message", None)
    logprobs = getattr(getattr(choice, "logprobs", None), "content", None)
    usage = getattr(completion, "usage", None)
    return JudgeResponse(
        text=getattr(message, "content", None),
        logprobs=[item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in logprobs] if logprobs else None,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
    )


def _status(error: BaseException) -> Optional[int]:
    status = getattr(error, "status_code", None)
    return status if isinstance(status, int) else None


def _is_timeout(error: BaseException) -> bool:
    import openai

    return isinstance(error, (asyncio.TimeoutError, openai.APITimeoutError))


def _is_api_failure(error: BaseException) -> bool:
    import openai

    return isinstance(error, (openai.APIError, asyncio.TimeoutError, MalformedResponse))


def _is_retryable(error: BaseException) -> bool:
    import openai

    if isinstance(error, (openai.APIConnectionError, asyncio.TimeoutError, MalformedResponse,
                          openai.APIResponseValidationError)):
        return True
    status = _status(error)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)


def _count_fault(outcome: CallOutcome, error: BaseException) -> None:
    if _status(error) == 429:
        outcome.http_429 += 1
    if _is_timeout(error):
        outcome.timeouts += 1


def retry_after_seconds(error: Optional[BaseException]) -> Optional[float]:
    """The wait a 429/503 asks for in its Retry-After or retry-after-ms header, if any."""
    if error is None or _status(error) not in (429, 503):
        return None
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return min(float(headers["retry-after-ms"]) / 1000.0, MAX_RETRY_AFTER_S)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
    except (TypeError, ValueError):
        return None


_backoff = wait_exponential_jitter(multiplier=0.5, max=20, jitter=0.5)


def _wait_with_retry_after(retry_state: Any) -> float:
    """Retry-After when the server sent one (plus up to 10% jitter), else jittered exponential backoff."""
    after = retry_after_seconds(retry_state.outcome.exception())
    if after is not None:
        return after + random.uniform(0, 0.1 * after)
    return _backoff(retry_state)


def describe_error(error: BaseException) -> str:
    status = _status(error)
    if _is_timeout(error):
        return "timed out"
    text = str(error).strip() or type(error).__name__
    return f"HTTP {status}: {text[:300]}" if status else f"{type(error).__name__}: {text[:300]}"
