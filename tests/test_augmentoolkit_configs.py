"""Augmentoolkit's own GRPO configs (config.yaml, the three emotion examples, miltest.yaml) keep working.

Each sets per_device_train_batch_size 1, gradient_accumulation_steps 1, num_generations 6: a generation round
smaller than one prompt group. The batch is raised to the smallest whole-group value (6 on one process, 3 on
two), the plan says so in one `note:` line, and config.resolved.yaml records the value used. The configs are
upstream's files (tests/data/augmentoolkit/), placeholders filled; their input files and judge prompts, which
upstream does not publish, are written here; the model is the tiny local one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import run_augmentoolkit
from judge_server import JudgeServer, by_response

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((Path(__file__).parent / "data" / "augmentoolkit").glob("*.yaml"))
SCORE_NAMES = {"hidden_emotion.yaml": ["emotional_resonance", "conversational_texture", "engagement_craft",
                                       "anti_ai_defiance", "creative_spark", "thinking_space", "making_sense"],
               "factual_check.yaml": ["ground_truth_contradiction", "internal_logic_contradiction", "question_answered",
                                      "ground_truth_overlap", "reasoning_quality", "answer_correctness",
                                      "clear_separation"]}
NOTE = re.compile(r"^note: per_device_train_batch_size 1 -> (\d+): .*set training_parameters\.per_device_train_batch_size "
                  r"yourself to silence this$", re.M)


def workspace(root: Path, config: Path) -> Path:
    """A working directory holding the config's input files (ShareGPT, as upstream expects) and judge prompts."""
    raw = yaml.safe_load(config.read_text())
    for dataset in raw["datasets"]:
        path = root / dataset["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"conversations": [{"from": "human", "value": f"What is {i} + {i}?"},
                                   {"from": "gpt", "value": f"Thought Process: add.\nResponse: {2 * i}\n#### {2 * i}"}]}
                for i in range(8)]
        text = json.dumps(rows) if path.suffix == ".json" else "".join(json.dumps(row) + "\n" for row in rows)
        path.write_text(text)
    for prompt, names in SCORE_NAMES.items():
        path = root / "prompts" / "evaluation_prompts" / prompt
        path.parent.mkdir(parents=True, exist_ok=True)
        tags = " ".join(f"<{name}>N</{name}>" for name in names)
        path.write_text(yaml.safe_dump([
            {"role": "system", "content": "You grade a conversation."},
            {"role": "user", "content": f"Input: {{input_text}}\nResponse:\n{{output_text}}\nGrade as {tags} (0-1)."},
        ]))
    target = root / config.name
    target.write_text(config.read_text())
    return target


def dry_run(config: Path, model: Path, capsys) -> tuple[int, str]:
    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run",
                                     "--set", f"model.base_model_name={model}"])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_upstream_config_dry_runs_with_the_batch_raised_to_a_prompt_group(config, tmp_path, tiny_model_dir,
                                                                         monkeypatch, capsys):
    """In-process on one process; launched with --num-processes 2 for two (for one config: all five have the same
    batch settings, asserted first)."""
    raw = yaml.safe_load(config.read_text())["training_parameters"]
    assert (raw["per_device_train_batch_size"], raw["gradient_accumulation_steps"], raw["num_generations"]) == (1, 1, 6)
    monkeypatch.chdir(tmp_path)
    path = workspace(tmp_path, config)

    status, printed = dry_run(path, tiny_model_dir, capsys)
    assert status == 0, printed
    assert [int(n) for n in NOTE.findall(printed)] == [6]  # one line, saying what to set to silence it
    assert " batch=6 " in printed and "dry run" in printed and not (tmp_path / raw["output_dir"]).exists()

    if config.name != "config.yaml":
        return
    # two processes (accelerate sets WORLD_SIZE=2 for each): 3 per device x 2 = one group of 6 per round
    launched = subprocess.run([sys.executable, str(ROOT / "run_augmentoolkit.py"), "--num-processes", "2",
                               "--node", "grpo-rl-pipeline", "--config", str(path), "--dry-run",
                               "--set", f"model.base_model_name={tiny_model_dir}"],
                              cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
    assert launched.returncode == 0, launched.stdout[-4000:]
    assert [int(n) for n in NOTE.findall(launched.stdout)] == [3]
    assert "3 x 2 process(es) x 1 micro-batch(es)" in launched.stdout and " batch=3 " in launched.stdout


def test_a_real_run_of_upstream_config_records_the_raised_batch(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = workspace(tmp_path, next(c for c in CONFIGS if c.name == "config.yaml"))
    # the step's one prompt group may come from either dataset: the emotion one's judge answers on 127.0.0.1
    with JudgeServer(by_response(lambda text: dict.fromkeys(SCORE_NAMES["hidden_emotion.yaml"], 1))) as server:
        status = run_augmentoolkit.main([
            "--node", "grpo-rl-pipeline", "--config", str(path),
            "--set", f"model.base_model_name={tiny_model_dir}",
            # what a CPU test changes: one short step, no 8-bit optimizer, the loopback judge, a small model
            "--set", "training_parameters.max_steps=1", "--set", "training_parameters.max_completion_length=8",
            "--set", "training_parameters.optim=adamw_torch", "--set", "model.lora_rank=4",
            "--set", "model.lora_alpha=8", "--set", "dataset_settings.total_rows=8",
            "--set", f"datasets.0.eval_llm_base_url={server.base_url}",
            "--set", f"datasets.0.reward_funcs.0.eval_llm_base_url={server.base_url}",
        ])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert [int(n) for n in NOTE.findall(printed)] == [6]
    resolved = yaml.safe_load((tmp_path / "outputs" / "config.resolved.yaml").read_text())
    assert resolved["training_parameters"]["per_device_train_batch_size"] == 6
    assert resolved["launch"]["world_size"] == 1
    metrics = [json.loads(line) for line in (tmp_path / "outputs" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in metrics if "rewards/combined/mean" in line] == [1]


def test_a_larger_batch_that_is_not_a_multiple_stays_an_error(tmp_path, tiny_model_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = workspace(tmp_path, next(c for c in CONFIGS if c.name == "miltest.yaml"))
    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(path), "--dry-run",
                                     "--set", f"model.base_model_name={tiny_model_dir}",
                                     "--set", "training_parameters.per_device_train_batch_size=8"])
    err = capsys.readouterr().err
    assert status == 2 and "multiple of num_generations 6" in err and "per_device_train_batch_size 12" in err
