"""The console of a run: one compact line per logging step, the progress bar kept, no dict dumps, and no
FutureWarning caused by our own arguments. Checked on the captured output of real short runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.console import format_log_line
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from judge_server import JudgeServer, by_response
from test_judge_e2e import judge_config
from test_pipeline_e2e import tiny_config

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"-?[\d.]+(?:e-?\d+)?"
STEP_PARTS = [rf"step \d/2", rf"reward {NUMBER} ±{NUMBER}", rf"(generic_llm_reward|max_length) {NUMBER}",
              rf"(generic_llm_reward|max_length) {NUMBER}", rf"kl {NUMBER}", rf"len {NUMBER}", rf"{NUMBER} tok/s",
              r"judge 4 calls, 0 failed"]


def is_step_line(line: str) -> bool:
    """step N/2 | reward | both rewards' means | kl | len | [tok/s, from step 2] | judge: nothing else."""
    parts = line.split(" | ")
    patterns = STEP_PARTS if len(parts) == len(STEP_PARTS) else [p for p in STEP_PARTS if "tok/s" not in p]
    return len(parts) == len(patterns) and all(re.fullmatch(p, part) for p, part in zip(patterns, parts))


def test_a_run_prints_one_compact_line_per_step_with_the_bar_and_no_warning_of_ours(tmp_path, tiny_model_dir):
    with JudgeServer(by_response(lambda text: {"quality": min(10, 1 + len(text) // 4)})) as server:
        config_path = judge_config(tmp_path, tiny_model_dir, server.base_url)
        config = yaml.safe_load(config_path.read_text())
        config["training_parameters"].update(max_steps=2, beta=0.04, gradient_checkpointing=False)
        config_path.write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [sys.executable, "run_augmentoolkit.py", "--node", "grpo-rl-pipeline", "--config", str(config_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.strip() for line in re.split(r"[\r\n]", done.stdout) if line.strip().startswith("step ")]
    assert [line[:8] for line in lines] == ["step 1/2", "step 2/2"] and all(map(is_step_line, lines)), lines
    assert "generic_llm_reward" in lines[0] and "max_length" in lines[0]
    assert "done: 2 steps in" in done.stdout
    assert "{'loss'" not in done.stdout + done.stderr and "'grad_norm'" not in done.stdout + done.stderr
    assert "2/2" in done.stderr  # tqdm's progress bar is still there
    assert "`gradient_checkpointing` is deprecated" not in done.stderr  # our argument, now under its current name
    assert "'pin_memory' argument is set as true but no accelerator" not in done.stderr  # not asked for on CPU
    # the full dict still lands in metrics.jsonl
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert {"grad_norm", "entropy", "clip_ratio/region_mean", "advantages/std", "judge/generic_llm_reward/calls"} <= set(record)


def test_without_the_progress_bar_the_same_lines_are_printed(tmp_path, tiny_model_dir, capsys):
    run_grpo_pipeline(tiny_config(tmp_path, tiny_model_dir, max_steps=2, disable_tqdm=True))
    printed = capsys.readouterr()
    lines = [line for line in printed.out.splitlines() if line.startswith("step ")]
    assert len(lines) == 2 and all(re.match(rf"step \d/2 \| reward {NUMBER}", line) for line in lines), lines
    assert "{'loss'" not in printed.out + printed.err


def test_format_of_eval_judge_failures_and_the_final_summary():
    logs = {"eval_reward": 0.25, "eval_rewards/fmt/mean": 0.5, "eval_rewards/training_reward/mean": 9.0}
    assert format_log_line(logs, 4) == "eval at step 4 | reward 0.250 | fmt 0.50"
    logs = {"reward": 1.0, "judge/a/calls": 3.0, "judge/a/failed": 1.0, "judge/b/calls": 2.0, "judge/b/failed": 0.0,
            "rewards/combined/mean": 0.75, "rewards/combined/std": 0.5}
    assert format_log_line(logs, 1) == "step 1 | reward 0.750 ±0.50 | judge 5 calls, 1 failed"
    cached = {"reward": 1.0, "judge/a/calls": 0.0, "judge/a/cache_hits": 8.0, "judge/a/failed": 0.0}
    assert format_log_line(cached, 2) == "step 2 | reward 1.000 | judge 0 calls (8 cached), 0 failed"
    assert format_log_line({"train_runtime": 12.34, "train_loss": 0.1}, 10) == "done: 10 steps in 12.3 s"
    assert format_log_line({}, 1) is None
