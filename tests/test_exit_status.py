"""A run that did not finish does not exit 0: the real command line, in a subprocess, on the tiny model.

0 finished; 1 stopped early with a checkpoint (a judge that keeps failing, a reward past its time limit,
a reward that raises); later nodes of a super_config and later sweep points are not run. Ctrl-C (130) is
tested with the other signals in test_lifecycle.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from judge_server import JudgeServer, Reply
from test_judge_e2e import judge_config
from test_pipeline_e2e import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def command(args: list[str]) -> list[str]:
    """run_augmentoolkit.main(args) in a fresh interpreter, with the tests' stop / slow rewards registered."""
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'tests')!r}, {str(ROOT)!r}]; "
        "import slow_reward, stop_rewards, run_augmentoolkit; "
        f"sys.exit(run_augmentoolkit.main({args!r}))"
    )
    return [sys.executable, "-c", code]


def run_cli(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(command(args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def edited(path: Path, edit) -> Path:
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    return path


def stopping_config(tmp_path: Path, model_dir: Path, name: str, reward: dict, **reward_section) -> Path:
    """Checkpoint every step; `reward` breaks from step 2 on."""
    path = tiny_config(tmp_path, model_dir, max_steps=3, save_steps=1, output_dir=str(tmp_path / name))

    def edit(config):
        config["datasets"][0]["reward_funcs"].append(reward)
        config["reward"].update(reward_section)

    return edited(path, edit).rename(tmp_path / f"{name}.yaml")


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def checkpoints(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*"))


def test_a_reward_past_its_time_limit_exits_1_with_a_checkpoint_and_later_nodes_do_not_run(tmp_path, tiny_model_dir):
    first = stopping_config(tmp_path, tiny_model_dir, "first", {"name": "test_hangs_from_step", "step": 2,
                                                                 "time_limit_s": 3}, slow_notice_s=1)
    second = tiny_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / "second")).rename(tmp_path / "second.yaml")
    super_config = tmp_path / "super_config.yaml"
    super_config.write_text(yaml.safe_dump({"pipeline_order": [
        {"node": "grpo-rl-pipeline", "config": str(first)}, {"node": "grpo-rl-pipeline", "config": str(second)}]}))

    result = run_cli(["--super-config", str(super_config)])  # a hung reward thread must not keep it alive
    output = result.stdout
    assert result.returncode == 1, output[-3000:]
    assert "reward 'test_hangs_from_step' (dataset 'data') still running after 1 s (time limit 3 s)" in output
    assert "run stopped early: reward 'test_hangs_from_step' (dataset 'data') did not return within 3 s" in output
    assert "node grpo-rl-pipeline did not finish (exit status 1); the 1 later node(s) were not run" in output
    run = tmp_path / "first"
    assert checkpoints(run) == ["checkpoint-1"] and not (run / "final").exists()
    assert summary(run)["exit_status"] == 1 and summary(run)["finished"] is False
    assert not (tmp_path / "second").exists()


def test_a_judge_that_keeps_failing_exits_1(tmp_path, tiny_model_dir):
    with JudgeServer(lambda body, index: Reply(status=500, error_message="judge down")) as server:
        config = judge_config(tmp_path, tiny_model_dir, server.base_url, max_retries=0, max_failure_share=0.5,
                              max_failed_steps=2)
        result = run_cli(["--node", "grpo-rl-pipeline", "--config", str(config)])
    assert result.returncode == 1, result.stdout[-3000:]
    assert "run stopped early" in result.stdout and "generic_llm_reward" in result.stdout
    assert checkpoints(tmp_path / "run") == ["checkpoint-1"]
    assert summary(tmp_path / "run")["exit_status"] == 1


def test_a_reward_that_raises_stops_a_sweep_at_its_first_point(tmp_path, tiny_model_dir):
    config = stopping_config(tmp_path, tiny_model_dir, "sweep", {"name": "test_raises_from_step", "step": 2})
    result = run_cli(["--node", "grpo-rl-pipeline", "--config", str(config),
                      "--sweep", "training_parameters.learning_rate=0.001,0.002"])
    output = result.stdout
    assert result.returncode == 1, output[-3000:]
    assert "reward 'test_raises_from_step' (dataset 'data') raised ValueError('broken on purpose')" in output
    assert "stop_rewards.py" in output  # the reward's own traceback shows where it broke
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir())
    assert runs == ["learning_rate-0.001"], runs  # the second point never started
    assert checkpoints(tmp_path / "sweep" / "learning_rate-0.001") == ["checkpoint-1"]
    assert "the 1 later sweep run(s) were not run" in output

