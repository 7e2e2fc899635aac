"""Calling one reward on one batch: its own copy of the inputs, a time limit, a checked result.

- Every reward gets its own copy of the prompt dicts and column lists, so one that edits them in place
  changes nothing that another reward, or a saved example, sees.
- A sync reward runs in a daemon thread, so its time limit can fire while it runs; an async reward runs
  on the caller's event loop and is cancelled at its limit.
- A call still running after `slow_notice_s` is named on the console (again at each doubling, each notice
  once per run); one past its time limit raises RewardTimeoutError, which stops the run with a checkpoint.
- What comes back passes results.check_reward_result; an exception becomes a RewardFunctionError
  naming the reward and the dataset.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Callable, Optional, Protocol

from .results import RewardFunctionError, check_reward_result
from ..run.stop import RewardTimeoutError, RunStopError


class CallableReward(Protocol):
    label: str
    function: Callable[..., Any]
    is_async: bool
    time_limit_s: Optional[float]


class RewardCaller:
    """Calls rewards for CombinedReward; remembers which slow-call notices it already printed."""

    def __init__(self, slow_notice_s: Optional[float] = 30.0, notify: Callable[[str], None] = print):
        self.slow_notice_s = slow_notice_s
        self.notify = notify
        self._noticed: set[tuple[str, str, float]] = set()

    async def call(self, reward: CallableReward, dataset: str, prompts: list, texts: list, columns: dict
                   ) -> list[Optional[float]]:
        """One reward's checked scores, computed on private copies of `prompts`, `texts` and `columns`.

        Raises RewardFunctionError if the reward raises or returns anything but N scores, RewardTimeoutError
        if it does not return in time. Python cannot interrupt a thread: a sync reward that never returns
        is abandoned (its daemon thread dies with the process). An async reward that blocks the event loop
        (no await) cannot be timed out.
        """
        kwargs = {key: private_copy(value) for key, value in columns.items()}
        kwargs.update(prompts=private_copy(prompts), completions=list(texts))
        try:
            if reward.is_async:
                result = reward.function(**kwargs)
            else:
                result = in_daemon_thread(reward.function, f"reward-{reward.label}", **kwargs)
            result = await self._within_time_limit(result, reward, dataset)
            if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
                result = await self._within_time_limit(result, reward, dataset)
        except RunStopError:
            raise
        except Exception as error:
            raise RewardFunctionError(f"reward '{reward.label}' (dataset '{dataset}') raised {error!r}") from error
        return check_reward_result(result, len(texts), reward.label, dataset)

    async def _within_time_limit(self, awaitable: Any, reward: CallableReward, dataset: str) -> Any:
        """Await `awaitable`, naming it on the console while it is slow and raising at its time limit."""
        if not inspect.isawaitable(awaitable):
            return awaitable
        task = asyncio.ensure_future(awaitable)
        loop = asyncio.get_running_loop()
        started, limit, notice = loop.time(), reward.time_limit_s, self.slow_notice_s
        try:
            while True:
                deadlines = [d for d in (limit, notice) if d is not None]
                wait = max(0.0, min(deadlines) - (loop.time() - started)) if deadlines else None
                done, _ = await asyncio.wait({task}, timeout=wait)
                if done:
                    return task.result()
                elapsed = loop.time() - started
                if limit is not None and elapsed >= limit:
                    raise RewardTimeoutError(
                        f"reward '{reward.label}' (dataset '{dataset}') did not return within {limit:g} s; if it "
                        "needs longer, set time_limit_s on its reward_funcs entry (or reward.time_limit_s)"
                    )
                if notice is not None and elapsed >= notice:
                    self._notice(reward, dataset, notice, limit)
                    notice *= 2
        finally:
            task.cancel()  # a no-op once done; an abandoned sync reward's thread keeps running unseen

    def _notice(self, reward: CallableReward, dataset: str, after: float, limit: Optional[float]) -> None:
        if (reward.label, dataset, after) in self._noticed:
            return
        self._noticed.add((reward.label, dataset, after))
        limit_text = f" (time limit {limit:g} s)" if limit is not None else " (no time limit)"
        self.notify(f"reward '{reward.label}' (dataset '{dataset}') still running after {after:g} s{limit_text}")


_IMMUTABLE = frozenset((str, int, float, bool, type(None)))


def private_copy(value: Any) -> Any:
    """A copy of the plain data (lists, dicts, tuples) in `value`; anything else (trainer state, callables,
    environments, strings, numbers) is passed through as it is.

    >>> prompt = [{"role": "user", "content": "hi"}]
    >>> private_copy(prompt) == prompt and private_copy(prompt)[0] is not prompt[0]
    True
    """
    if isinstance(value, list):
        if _IMMUTABLE.issuperset(map(type, value)):  # token ids, texts: a flat copy is a full one (and fast)
            return value.copy()
        return [private_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: private_copy(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(private_copy(item) for item in value)
    return value


def in_daemon_thread(function: Callable[..., Any], name: str, **kwargs: Any) -> "asyncio.Future":
    """Start `function(**kwargs)` in a new daemon thread; returns a future (on the running loop) of its result.

    A daemon thread, not the loop's executor: executor threads are joined at interpreter exit, so one
    reward that never returns would keep the process from ever exiting.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: Optional[BaseException]) -> None:
        if future.done():  # timed out and abandoned
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            outcome = (function(**kwargs), None)
        except BaseException as error:  # handed to the awaiting coroutine, which reports it
            if not isinstance(error, Exception) or isinstance(error, StopIteration):  # futures refuse these
                error = RuntimeError(f"{error!r}")
            outcome = (None, error)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits for this result any more
            pass

    threading.Thread(target=work, name=name, daemon=True).start()
    return future
