"""Stopping and resuming: kill -9 mid-training, Ctrl-C, unsafe config changes, --fresh."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError
from generation.errors import UserInputError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
import slow_reward  # noqa: F401  (registers test_slow_brevity for the in-process runs too)
from test_pipeline_e2e import tiny_config

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS = 6


def lifecycle_config(tmp_path: Path, model_dir: Path, run_name: str, seconds: float = 1.0) -> Path:
    """Checkpoint every step; a reward that sleeps makes each step last about `seconds` more, so a signal
    sent after checkpoint-N appears always lands mid-run (a run that is not interrupted needs no sleep)."""
    path = tiny_config(tmp_path, model_dir, max_steps=MAX_STEPS, save_steps=1, save_total_limit=2,
                       output_dir=str(tmp_path / run_name))
    config = yaml.safe_load(path.read_text())
    config["datasets"][0]["reward_funcs"].append({"name": "test_slow_brevity", "seconds": seconds})
    path.write_text(yaml.safe_dump(config))
    return path.rename(tmp_path / f"{run_name}.yaml")


def start_run(config: Path) -> subprocess.Popen:
    """The real command line, in a subprocess, with the slow test reward registered."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = (
        f"import sys; sys.path[:0] = [{str(ROOT / 'tests')!r}, {str(ROOT)!r}]; import slow_reward, round_rewards, "
        "run_augmentoolkit; "
        f"sys.exit(run_augmentoolkit.main(['--node', 'grpo-rl-pipeline', '--config', {str(config)!r}]))"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"run ended before {path} appeared:\n{process.stdout.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear in time")
        time.sleep(0.2)


def kill_9_then_rerun(config: Path, run: Path) -> str:
    """Start the run in a subprocess, kill -9 it once checkpoint-3 appears, run it again to the end; its output."""
    process = start_run(config)
    wait_for(run / "checkpoints" / "checkpoint-3", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rerun = start_run(config)
    output, _ = rerun.communicate(timeout=400)
    assert rerun.returncode == 0, output[-3000:]
    assert "resuming from" in output
    return output


def rows_per_step(batches: list[dict]) -> list[list[str]]:
    """Which data lines each step trained on (file names only: the two runs live in different folders)."""
    return [[Path(source).name for source in batch["sources"]] for batch in batches]


def step_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir) -> Path:
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    run_grpo_pipeline(lifecycle_config(tmp_path, tiny_model_dir, "run", seconds=0))
    return tmp_path / "run"


def test_kill_9_then_rerun_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, uninterrupted):
    run = tmp_path / "run"
    kill_9_then_rerun(lifecycle_config(tmp_path, tiny_model_dir, "run"), run)

    # same steps, same data order, no duplicate or torn lines
    resumed_batches = step_lines(run / "batches.jsonl")
    assert [b["step"] for b in resumed_batches] == list(range(1, MAX_STEPS + 1))
    assert rows_per_step(resumed_batches) == rows_per_step(step_lines(uninterrupted / "batches.jsonl"))
    metric_steps = [m["step"] for m in step_lines(run / "metrics.jsonl") if "rewards/combined/mean" in m]
    assert metric_steps == list(range(1, MAX_STEPS + 1))
    examples = step_lines(run / "high_scoring_examples.jsonl")
    assert all(1 <= e["step"] <= MAX_STEPS for e in examples)
    assert len({(e["step"], e["completion"], json.dumps(e["prompt"])) for e in examples}) == len(examples)

    # save_total_limit honoured, no staging leftovers, final adapter written
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints == [f"checkpoint-{MAX_STEPS - 1}", f"checkpoint-{MAX_STEPS}"]
    assert not any((run / "checkpoints" / ".staging").glob("checkpoint-*"))
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "summary.json").read_text())["steps"] == MAX_STEPS


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_model_dir):
    config = lifecycle_config(tmp_path, tiny_model_dir, "run")
    run = tmp_path / "run"
    process = start_run(config)
    wait_for(run / "checkpoints" / "checkpoint-2", process)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output[-3000:]  # a run that did not finish never exits 0
    assert "Run the same command again to resume" in output
    saved = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
    assert saved and saved[-1] < MAX_STEPS
    assert not (run / "final").exists()  # the run is not finished: no final adapter yet


def test_unsafe_config_change_is_refused_and_fresh_moves_the_old_run_aside(tmp_path, tiny_model_dir, uninterrupted):
    config = lifecycle_config(tmp_path, tiny_model_dir, "run")
    # reuse the finished run's directory: it has checkpoints
    data = yaml.safe_load(config.read_text())
    data["training_parameters"]["output_dir"] = str(uninterrupted)
    data["model"]["lora_rank"] = 8
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(UserInputError, match=r"model.lora_rank: 4 -> 8.*--fresh"):
        run_grpo_pipeline(config)
    assert (uninterrupted / "final").exists()  # nothing was touched

    data["training_parameters"]["max_steps"] = 1
    config.write_text(yaml.safe_dump(data))
    run_grpo_pipeline(config, fresh=True)
    aside = list(uninterrupted.parent.glob(f"{uninterrupted.name}.previous-*"))
    assert len(aside) == 1 and (aside[0] / "final" / "adapter_model.safetensors").is_file()
    assert json.loads((uninterrupted / "summary.json").read_text())["steps"] == 1
