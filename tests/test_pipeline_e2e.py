"""End to end on a tiny real model: a few GRPO steps, then the adapter, metrics and examples on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline

ROOT = Path(__file__).resolve().parents[1]


def sharegpt_file(path: Path, rows: int = 12) -> Path:
    with path.open("w") as handle:
        for i in range(rows):
            conversation = [{"from": "human", "value": f"the cat {i} sat on a mat?"}, {"from": "gpt", "value": f"yes {i}"}]
            handle.write(json.dumps({"conversations": conversation, "topic": "cats"}) + "\n")
    return path


def tiny_config(tmp_path: Path, model_dir: Path, **training) -> Path:
    config = {
        "training_parameters": {
            "output_dir": str(tmp_path / "run"),
            "max_steps": 3,
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "max_completion_length": 10,
            "learning_rate": 1e-3,
            "save_steps": 2,
            **training,
        },
        "model": {"base_model_name": str(model_dir), "lora_rank": 4, "lora_alpha": 8},
        "reward": {"score_save_threshold": 0.5},
        "datasets": [{
            "path": str(sharegpt_file(tmp_path / "data.jsonl")),
            "system_prompt": "Be brief.",
            "reward_funcs": [{"name": "max_length", "max_words": 4}, {"name": "mentions_keyword", "keyword": "the",
                                                                     "weight": 0.5}],
        }],
        "dataset_settings": {"total_rows": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_loads_no_model_and_writes_nothing(tmp_path, tiny_model_dir, capsys):
    outcome = run_grpo_pipeline(tiny_config(tmp_path, tiny_model_dir), dry_run=True)
    assert outcome.paths is None
    printed = capsys.readouterr().out
    assert "max_length (weight 1)" in printed and "mentions_keyword (weight 0.5)" in printed
    assert "dry run" in printed
    assert not (tmp_path / "run").exists()


def test_a_few_grpo_steps_write_adapter_metrics_and_examples(tmp_path, tiny_model_dir):
    outcome = run_grpo_pipeline(tiny_config(tmp_path, tiny_model_dir))
    run = tmp_path / "run"
    assert outcome.steps == 3

    # the adapter, with the tokenizer and chat template, loads back onto the base model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (run / "final" / "adapter_model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    assert tokenizer.chat_template
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), run / "final")

    # one metrics line per step, with each reward's mean / std / None count
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines if "rewards/max_length/mean" in line]
    assert steps == [1, 2, 3]
    first = lines[0]
    for key in ("rewards/max_length/mean", "rewards/max_length/std", "rewards/max_length/none_count",
                "rewards/mentions_keyword/mean", "rewards/combined/mean", "reward", "kl" if "kl" in first else "loss"):
        assert key in first

    # high-scoring examples are valid conversations whose last assistant turn is the completion
    examples = [json.loads(line) for line in (run / "high_scoring_examples.jsonl").read_text().splitlines()]
    for example in examples:
        assert example["scores"]["combined"] >= 0.5
        assert example["messages"][0] == {"role": "system", "content": "Be brief."}
        assert example["messages"][-1] == {"role": "assistant", "content": example["completion"]}
        assert example["conversations"][-1] == {"from": "gpt", "value": example["completion"]}
        assert example["conversations"][1]["from"] == "human"

    # config snapshot and summary
    assert yaml.safe_load((run / "config.resolved.yaml").read_text())["model"]["lora_rank"] == 4
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["first_window_reward"] is not None
    assert (run / "checkpoints" / "checkpoint-2").is_dir()


def test_stop_sequences_really_stop_generation(tmp_path, tiny_model_dir):
    """With a stop string that the tiny model emits often, completions end at it (and rewards see text before it)."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards import combined as rewarding

    seen: list[str] = []
    original = rewarding.completion_text

    def spy(completion, stop_sequences=()):
        raw = original(completion)
        seen.append(raw)
        return original(completion, stop_sequences)

    rewarding.completion_text = spy
    try:
        run_grpo_pipeline(tiny_config(tmp_path, tiny_model_dir, max_steps=1, model_stop_sequences=[" "],
                                      max_completion_length=16))
    finally:
        rewarding.completion_text = original
    assert seen and any(" " in text for text in seen)
    # generation stopped at the token holding the first space: no completion goes on to a second one
    assert all(text.count(" ") <= 1 for text in seen), seen
    assert all(" " not in original(text, [" "]) for text in seen)  # rewards see the text before the stop


def test_prompt_tokens_counts_tokens_of_the_templated_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.data.truncation import PromptTokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    count = PromptTokens.from_tokenizer(tokenizer).count
    short = [{"role": "user", "content": "the cat"}]
    long = [{"role": "user", "content": "the cat sat on a mat " * 20}]
    expected = len(tokenizer(tokenizer.apply_chat_template(short, add_generation_prompt=True, tokenize=False),
                             add_special_tokens=False)["input_ids"])
    assert count(short) == expected
    assert count(long) > count(short) + 20


def test_evaluation_logs_eval_rewards_and_keeps_the_best_checkpoint(tmp_path, tiny_model_dir):
    config = yaml.safe_load(tiny_config(tmp_path, tiny_model_dir, max_steps=4, save_steps=2).read_text())
    config["datasets"][0]["eval_percentage"] = 0.25
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run_grpo_pipeline(tmp_path / "config.yaml")
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if "eval_reward" in line]
    assert [line["step"] for line in evals] == [2, 4]
    assert all("eval_rewards/max_length/mean" in line for line in evals)
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "eval_reward" and best["step"] in (2, 4)
    assert best["value"] == max(line["eval_reward"] for line in evals)
    assert (run / "best" / "adapter_model.safetensors").is_file()
    assert not (run / "best" / "optimizer.pt").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_checkpoint"] == f"checkpoint-{best['step']}"
    throughput = [line["throughput/completion_tokens_per_second"] for line in lines
                  if "throughput/completion_tokens_per_second" in line]
    assert throughput and all(value > 0 for value in throughput)


def test_wandb_without_a_key_logs_offline_into_wandb_dir(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc login either
    import os

    run_grpo_pipeline(tiny_config(tmp_path, tiny_model_dir, max_steps=1, report_to="wandb"))
    assert os.environ["WANDB_MODE"] == "offline"
    offline_runs = list(Path(os.environ["WANDB_DIR"]).rglob("offline-run-*"))
    assert offline_runs, "wandb wrote no offline run"
