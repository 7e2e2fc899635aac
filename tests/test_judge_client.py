"""judge/client.py through a real loopback server: every fault, retries, timeouts, limits, concurrency."""

from __future__ import annotations

import asyncio
import re
import time
from types import SimpleNamespace

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge import client as judge_client
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.client import RateLimiter, retry_after_seconds
from judge_server import (
    JudgeServer,
    Reply,
    always,
    by_response,
    last_user_text,
    make_reward,
    rate_limited,
    scores_reply,
    sequence,
)

PROMPTS = [[{"role": "user", "content": "What is 2+2?"}]]
GOOD = scores_reply(helpfulness=7)
SEVEN = (7 - 1) / 9


@pytest.fixture
def fast_backoff(monkeypatch):
    """Exponential backoff without the wait (Retry-After is still honoured in full)."""
    monkeypatch.setattr(judge_client, "_backoff", lambda retry_state: 0.01)


def judge_once(reward, completion="4", **columns):
    metrics = {}
    rewards = asyncio.run(reward(PROMPTS, [completion], answer=["4"], log_metric=metrics.__setitem__, **columns))
    return rewards[0], {key.rsplit("/", 1)[1]: value for key, value in metrics.items()}


class TestFaults:
    def test_429_retry_after_is_honoured(self, tmp_path):
        with JudgeServer(sequence(rate_limited(0.6), GOOD)) as server:
            started = time.monotonic()
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path))
            elapsed = time.monotonic() - started
        assert reward == pytest.approx(SEVEN)
        assert metrics["http_429"] == 1 and metrics["retries"] == 1 and metrics["calls"] == 1
        assert elapsed >= 0.6  # waited out the Retry-After before asking again
        assert server.calls == 2

    def test_retry_after_ms_and_503(self, tmp_path):
        busy = Reply(status=503, headers={"retry-after-ms": "300"})
        with JudgeServer(sequence(busy, GOOD)) as server:
            started = time.monotonic()
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path))
        assert reward == pytest.approx(SEVEN) and metrics["retries"] == 1 and metrics["http_429"] == 0
        assert time.monotonic() - started >= 0.3

    @pytest.mark.parametrize("fault", [
        Reply(status=500), Reply(status=502), Reply(drop=True), Reply(raw_body=b"{not json"),
        Reply(raw_body=b'{"object": "chat.completion", "choices": []}'), Reply(status=408),
    ], ids=["500", "502", "dropped", "malformed-json", "no-choices", "408"])
    def test_transient_faults_are_retried(self, tmp_path, fast_backoff, fault):
        with JudgeServer(sequence(fault, GOOD)) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path))
        assert reward == pytest.approx(SEVEN)
        assert metrics["retries"] == 1 and metrics["failed"] == 0 and server.calls == 2

    @pytest.mark.parametrize("fault", [Reply(status=500), Reply(drop=True), Reply(raw_body=b"<html>oops")],
                             ids=["500", "dropped", "malformed"])
    def test_after_the_retries_a_call_yields_none_or_the_fallback(self, tmp_path, fast_backoff, fault):
        with JudgeServer(always(fault)) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path, max_retries=2))
            assert server.calls == 3
            fallback, _ = judge_once(make_reward(server.base_url, tmp_path, max_retries=0, fallback_score=0.25))
        assert reward is None and fallback == 0.25
        assert metrics["retries"] == 2 and metrics["failed"] == 1 and metrics["parse_failures"] == 0

    @pytest.mark.parametrize("status", [400, 401, 404])
    def test_client_errors_are_not_retried(self, tmp_path, status):
        with JudgeServer(always(Reply(status=status))) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path))
        assert reward is None and metrics["retries"] == 0 and server.calls == 1

    def test_slower_than_the_timeout(self, tmp_path):
        with JudgeServer(always(Reply(GOOD.content, delay=2.0))) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path, timeout=0.3, max_retries=1,
                                                     fallback_score=0.0))
        # both attempts were cut off by the 0.3 s timeout (the server would have taken 2 s each)
        assert reward == 0.0 and metrics["timeouts"] == 2 and metrics["failed"] == 1

    def test_a_timeout_then_an_answer(self, tmp_path, fast_backoff):
        with JudgeServer(sequence(Reply(GOOD.content, delay=1.5), GOOD)) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path, timeout=0.3))
        assert reward == pytest.approx(SEVEN) and metrics["timeouts"] == 1 and metrics["retries"] == 1

    @pytest.mark.parametrize("reply", [Reply(""), Reply(None), Reply("Looks good to me."),
                                       Reply("<helpfulness>11</helpfulness>"),
                                       Reply("<think><helpfulness>9</helpfulness></think>no verdict")],
                             ids=["empty", "null", "missing-tags", "out-of-range", "tags-inside-think"])
    def test_unusable_answers_are_parse_failures_not_retries(self, tmp_path, reply):
        with JudgeServer(always(reply)) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path))
        assert reward is None
        assert metrics["parse_failures"] == 1 and metrics["failed"] == 1 and metrics["retries"] == 0
        assert server.calls == 1

    def test_out_of_range_clamped_when_configured(self, tmp_path):
        with JudgeServer(always(Reply("<helpfulness>12</helpfulness>"))) as server:
            reward, metrics = judge_once(make_reward(server.base_url, tmp_path, clamp_out_of_range=True))
        assert reward == 1.0 and metrics["parse_failures"] == 0

    def test_tags_inside_think_are_ignored(self, tmp_path):
        answer = Reply("<think>first guess <helpfulness>10</helpfulness></think><helpfulness>4</helpfulness>")
        with JudgeServer(always(answer)) as server:
            reward, _ = judge_once(make_reward(server.base_url, tmp_path))
        assert reward == pytest.approx(3 / 9)


class TestThroughput:
    def test_calls_run_concurrently(self, tmp_path):
        with JudgeServer(by_response(lambda text: {"helpfulness": 5}), latency=0.3) as server:
            reward = make_reward(server.base_url, tmp_path, cache=False)
            asyncio.run(reward(PROMPTS, ["warm-up"]))  # imports openai, opens the client
            rewards = asyncio.run(reward(PROMPTS * 16, [f"answer {i}" for i in range(16)]))
        assert rewards == [pytest.approx(4 / 9)] * 16
        assert server.max_in_flight == 16  # all 16 were being served at once

    def test_max_concurrency_bounds_calls_in_flight(self, tmp_path):
        with JudgeServer(by_response(lambda text: {"helpfulness": 5}), latency=0.1) as server:
            reward = make_reward(server.base_url, tmp_path, cache=False, max_concurrency=3)
            asyncio.run(reward(PROMPTS * 12, [f"answer {i}" for i in range(12)]))
        assert server.max_in_flight == 3 and server.calls == 12

    def test_rewards_sharing_an_endpoint_share_the_strictest_limit(self, tmp_path):
        with JudgeServer(by_response(lambda text: {"helpfulness": 5}), latency=0.1) as server:
            loose = make_reward(server.base_url, tmp_path, cache=False, max_concurrency=8)
            strict = make_reward(server.base_url, tmp_path, cache=False, max_concurrency=2)

            async def step():
                await asyncio.gather(loose(PROMPTS * 6, [f"a{i}" for i in range(6)]),
                                     strict(PROMPTS * 6, [f"b{i}" for i in range(6)]))

            asyncio.run(step())
        assert loose.backend is strict.backend and server.max_in_flight == 2

    def test_a_throttled_call_does_not_hold_a_slot(self, tmp_path):
        throttled_once = {"done": False}

        def respond(body, index):
            if "slow one" in str(body) and not throttled_once["done"]:
                throttled_once["done"] = True
                return rate_limited(1.0)
            return scores_reply(helpfulness=5)

        with JudgeServer(respond, latency=0.2) as server:
            reward = make_reward(server.base_url, tmp_path, cache=False, max_concurrency=1)
            asyncio.run(reward(PROMPTS * 4, ["slow one", "b", "c", "d"]))
        # with one slot, the others were served while the throttled call waited out its Retry-After
        order = [re.search(r"<<<BEGIN RESPONSE>>>\n(.*?)\n<<<END", last_user_text(body), re.S).group(1)
                 for body in server.requests]
        assert order[0] == "slow one" and order[-1] == "slow one" and sorted(order[1:-1]) == ["b", "c", "d"]

    def test_requests_per_minute(self, tmp_path):
        with JudgeServer(by_response(lambda text: {"helpfulness": 5})) as server:
            reward = make_reward(server.base_url, tmp_path, cache=False, requests_per_minute=600)  # 10 per second

            async def step():
                await reward(PROMPTS, ["warm-up"])
                reward.backend._state().requests.level = 1.0  # as if the minute's budget were spent
                started = time.monotonic()
                await reward(PROMPTS * 4, ["a", "b", "c", "d"])
                return time.monotonic() - started

            elapsed = asyncio.run(step())
        assert elapsed >= 0.25  # had to wait for the bucket to refill

    def test_rate_limiter_waits_when_empty(self):
        async def scenario():
            limiter = RateLimiter(per_minute=600)  # 10 per second, 600 at once
            limiter.level = 2
            started = time.monotonic()
            for _ in range(4):
                await limiter.acquire(1)
            return time.monotonic() - started

        assert asyncio.run(scenario()) >= 0.15  # waited for refills

    def test_token_limiter_settles_actual_usage(self):
        async def scenario():
            limiter = RateLimiter(per_minute=6000)  # 100 tokens per second
            await limiter.acquire(50)
            limiter.debit(6000)  # a long answer: the bucket is in debt
            started = time.monotonic()
            await limiter.acquire(10)
            return time.monotonic() - started

        assert asyncio.run(scenario()) >= 0.4


class TestRetryHelpers:
    def _error(self, status, headers):
        return SimpleNamespace(status_code=status, response=SimpleNamespace(headers=headers))

    def test_retry_after_forms(self):
        assert retry_after_seconds(self._error(429, {"retry-after": "2"})) == 2.0
        assert retry_after_seconds(self._error(429, {"retry-after-ms": "250", "retry-after": "9"})) == 0.25
        assert retry_after_seconds(self._error(503, {"retry-after": "1e9"})) == judge_client.MAX_RETRY_AFTER_S
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
        assert 25 < retry_after_seconds(self._error(429, {"retry-after": date})) <= 30
        assert retry_after_seconds(self._error(429, {})) is None
        assert retry_after_seconds(self._error(500, {"retry-after": "3"})) is None
        assert retry_after_seconds(self._error(429, {"retry-after": "soon"})) is None

    def test_backoff_is_exponential_and_jittered(self):
        waits = [judge_client._backoff(SimpleNamespace(attempt_number=n)) for n in (1, 2, 3, 4)]
        assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 1.5 and 2.0 <= waits[2] <= 2.5 and 4.0 <= waits[3] <= 4.5
