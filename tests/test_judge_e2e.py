"""GRPO end to end on a tiny model with an LLM-judge reward served by the loopback judge server."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from judge_server import JudgeServer, Reply, by_response, rate_limited, with_faults
from test_pipeline_e2e import tiny_config


def judge_config(tmp_path: Path, model_dir: Path, base_url: str, **judge) -> Path:
    path = tiny_config(tmp_path, model_dir, max_steps=3)
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump([
        {"role": "system", "content": "You grade answers."},
        {"role": "user", "content": "Question: {input_text}\nAnswer:\n{output_text}\nGrade as <quality>N</quality> (1-10)."},
    ]))
    config = yaml.safe_load(path.read_text())
    config["datasets"][0]["reward_funcs"] = [{"name": "max_length", "max_words": 4}, {
        "name": "generic_llm_reward", "system_prompt_path": str(tmp_path / "prompt.yaml"),
        "eval_llm_name": "loopback-judge", "eval_llm_base_url": base_url, "eval_llm_api_key": "sk-e2e-secret",
        "cache_path": str(tmp_path / "judge_cache.sqlite"), "max_retries": 3, "timeout": 5,
        "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}], **judge,
    }]
    path.write_text(yaml.safe_dump(config))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_with_a_flaky_judge_keeps_going_and_counts_everything(tmp_path, tiny_model_dir):
    # score = number of characters (capped), so the judge's signal depends on the completion;
    # 20% of calls get a 429 with Retry-After, which the client waits out and retries
    responder = with_faults(by_response(lambda text: {"quality": min(10, 1 + len(text) // 4)}),
                            rate_limited(retry_after=0.05), rate=0.2, seed=3)
    with JudgeServer(responder) as server:
        outcome = run_grpo_pipeline(judge_config(tmp_path, tiny_model_dir, server.base_url))
        calls = server.calls
    run = tmp_path / "run"
    assert outcome.steps == 3
    lines = [m for m in metrics(run) if "rewards/generic_llm_reward/mean" in m]
    assert [m["step"] for m in lines] == [1, 2, 3]
    assert all(0.0 <= m["rewards/generic_llm_reward/mean"] <= 1.0 for m in lines)
    assert all(m["rewards/generic_llm_reward/none_count"] == 0 for m in lines)  # retries recovered every 429
    judge_calls = sum(m["judge/generic_llm_reward/calls"] for m in lines)
    retries = sum(m["judge/generic_llm_reward/retries"] for m in lines)
    assert judge_calls == 3 * 4 and retries > 0 and calls == judge_calls + retries
    # the literal API key never reaches the run directory
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".jsonl"):
            assert "sk-e2e-secret" not in path.read_text(errors="replace"), path


def test_a_judge_that_keeps_failing_stops_the_run_with_a_checkpoint(tmp_path, tiny_model_dir, capsys):
    with JudgeServer(lambda body, index: Reply(status=500, error_message="judge down")) as server:
        outcome = run_grpo_pipeline(judge_config(tmp_path, tiny_model_dir, server.base_url, max_retries=0,
                                                 max_failure_share=0.5, max_failed_steps=2))
    printed = capsys.readouterr().out
    assert "run stopped early" in printed and "generic_llm_reward" in printed
    assert outcome.steps == 1  # step 1 fails, step 2 fails: stopped before it trains
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (run / "final").exists()
    assert json.loads((run / "summary.json").read_text())["finished"] is False
