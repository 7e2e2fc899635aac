"""Data problems through the CLI (a real subprocess): exit status 2 with one message and no traceback; the dry
run's plan shows each dataset's layout, one sample and the empty-answer warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_data import write

ROOT = Path(__file__).resolve().parents[1]


def run_cli(config: dict, tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "run_augmentoolkit.py"), "--node", "grpo-rl-pipeline", "--config", str(path),
         *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )


def config_for(tmp_path: Path, model_dir: Path, datasets: list[dict], **settings) -> dict:
    return {
        "training_parameters": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "per_device_train_batch_size": 2,
                                "num_generations": 2, "max_completion_length": 4},
        "model": {"base_model_name": str(model_dir), "lora_rank": 2, "lora_alpha": 4},
        "datasets": datasets,
        "dataset_settings": {"total_rows": 4, **settings},
    }


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], result.stderr


def test_a_missing_dataset_file_exits_2(tmp_path, tiny_model_dir):
    result = run_cli(config_for(tmp_path, tiny_model_dir, [{"path": "missing.jsonl"}]), tmp_path, "--dry-run")
    assert_user_error(result, f"{tmp_path / 'missing.jsonl'}: file not found")


def test_a_hub_id_not_cached_offline_exits_2_naming_the_dataset(tmp_path, tiny_model_dir):
    config = config_for(tmp_path, tiny_model_dir, [{"path": "openai/gsm8k", "subset": "main"}])
    result = run_cli(config, tmp_path, "--dry-run")
    assert_user_error(result, "openai/gsm8k[main/train]: cannot load the dataset", "HF_DATASETS_OFFLINE=1")


def test_a_bad_row_under_strict_exits_2_naming_file_and_line(tmp_path, tiny_model_dir):
    rows = [{"question": "q1", "answer": "1"}, "{broken", {"question": "q3", "answer": "3"}]
    path = write(tmp_path / "d.jsonl", rows)
    config = config_for(tmp_path, tiny_model_dir, [{"path": str(path)}], strict=True)
    result = run_cli(config, tmp_path, "--dry-run")
    assert_user_error(result, f"{path}:2: broken JSON line", "(dataset_settings.strict is on)")


def test_a_percentage_above_one_exits_2(tmp_path, tiny_model_dir):
    path = write(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    config = config_for(tmp_path, tiny_model_dir, [{"path": str(path), "percentage": 1.5}])
    result = run_cli(config, tmp_path, "--dry-run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "datasets.0.percentage: Input should be less than or equal to 1" in result.stderr


def test_dry_run_plan_shows_layout_sample_and_warns_about_empty_answers(tmp_path, tiny_model_dir):
    verl = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "data_source": "toy",
             "reward_model": {"ground_truth": str(2 * i)}, "extra_info": {"index": i}} for i in range(6)]
    questions = write(tmp_path / "verl.parquet", verl)
    prompt_only = write(tmp_path / "bare.jsonl", [{"prompt": f"Tell me {i}"} for i in range(6)])
    reward = [{"name": "final_answer_match"}]
    config = config_for(tmp_path, tiny_model_dir, [
        {"path": str(questions), "percentage": 0.5, "reward_funcs": reward},
        {"path": str(prompt_only), "percentage": 0.5, "reward_funcs": reward, "system_prompt": "Be brief."},
    ])
    result = run_cli(config, tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "verl: layout verl (auto-detected): prompt <- 'prompt' (auto-detected), answer <- " \
           "'reward_model.ground_truth' (auto-detected)" in out
    sample_prompt = next(line for line in out.splitlines() if line.startswith("  sample prompt: [user] What is"))
    number = int(sample_prompt.split("What is ")[1].split(" ")[0])
    assert f"  sample answer: {2 * number}" in out
    assert "  sample prompt: [system] Be brief. | [user] Tell me" in out and "  sample answer: (empty)" in out
    assert "  columns for rewards besides answer: data_source, extra_info.index" in out
    assert "warning: dataset 'bare': every reference answer is empty, yet these rewards read `answer` and get " \
           "no signal from it: final_answer_match;" in out
    assert "warning: dataset 'verl'" not in out


@pytest.mark.parametrize("mode, expected", [("error", 2), ("left", 0)])
def test_truncation_error_stops_before_training_and_left_keeps_the_row(tmp_path, tiny_model_dir, mode, expected):
    path = tmp_path / "long.jsonl"
    row = json.dumps({"question": "the cat sat on a mat " * 30, "answer": "yes"})
    path.write_text(f"{row}\n" * 4)
    dataset = {"path": str(path), "reward_funcs": [{"name": "max_length", "max_words": 5}]}
    config = config_for(tmp_path, tiny_model_dir, [dataset], truncation=mode)
    config["training_parameters"]["max_prompt_length"] = 24
    result = run_cli(config, tmp_path)
    assert result.returncode == expected, result.stdout[-2000:] + result.stderr[-3000:]
    if mode == "error":
        assert_user_error(result, f"{path}:", "over training_parameters.max_prompt_length 24",
                          "(dataset_settings.truncation is 'error')")
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    else:
        # the report printed after fitting: requested available sampled train eval bad truncated dropped
        counts = [line.split()[1:] for line in result.stdout.splitlines() if line.startswith("long ")]
        assert counts[-1] == ["4", "4", "4", "4", "0", "0", "4", "0"], result.stdout
        assert (tmp_path / "run" / "final").exists()
