"""A verl-layout Parquet file through one real GRPO step: the reference answer, the flattened nested fields and
the renamed TRL-reserved columns reach a reward exactly as the plan says; rows with a lone surrogate or deep
nesting are skipped as bad rows and never reach the tokenizer."""

from __future__ import annotations

import json

import yaml
from test_data import write

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

SEEN: list[dict] = []


@register_reward_function("test_data_records_columns")
def records_columns():
    def reward(prompts, completions, **columns):
        SEEN.append({"prompts": prompts, "completions": completions, **columns})
        return [0.0] * len(completions)

    return reward


def hostile_jsonl(path):
    """Good rows, plus a lone surrogate (line 2) and nesting too deep for json (line 3)."""
    good = [json.dumps({"question": f"the dog {i}?", "answer": str(i)}) for i in range(4)]
    deep = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [good[0], '{"question": "bad \\ud800", "answer": "1"}', deep]
    path.write_text("\n".join(lines + good[1:]) + "\n")
    return path


def test_verl_parquet_columns_reach_the_reward_through_trl(tmp_path, tiny_model_dir, capsys):
    rows = [{"data_source": "toy", "prompt": [{"role": "user", "content": f"the cat {i}?"}],
             "reward_model": {"style": "rule", "ground_truth": str(i)}, "extra_info": {"index": i, "split": "train"},
             "completions": f"stale {i}", "trainer_state": "user data"} for i in range(8)]
    config = {
        "training_parameters": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "per_device_train_batch_size": 8,
                                "num_generations": 2, "max_completion_length": 4, "save_steps": 10},
        "model": {"base_model_name": str(tiny_model_dir), "lora_rank": 2, "lora_alpha": 4},
        "datasets": [{"path": str(write(tmp_path / "verl.parquet", rows)),
                      "reward_funcs": [{"name": "test_data_records_columns"}]},
                     {"path": str(hostile_jsonl(tmp_path / "hostile.jsonl")), "percentage": 0.5,
                      "reward_funcs": [{"name": "max_length", "max_words": 3}]}],
        "dataset_settings": {"total_rows": 8},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    SEEN.clear()
    outcome = run_grpo_pipeline(path, base_dir=tmp_path, dry_run=True)
    assert outcome.paths is None
    printed = capsys.readouterr().out
    assert f"{tmp_path / 'hostile.jsonl'}:2: user text is not valid Unicode" in printed
    assert f"{tmp_path / 'hostile.jsonl'}:3: nested too deeply for the JSON parser" in printed
    outcome = run_grpo_pipeline(path, base_dir=tmp_path)  # the bad rows never reach the tokenizer
    assert outcome.steps == 1 and SEEN
    batch = SEEN[0]  # only the verl dataset has the recording reward (the seeded step draws 4 of the 12 rows)
    for i, prompt in enumerate(batch["prompts"]):
        index = batch["extra_info.index"][i]
        assert prompt == [{"role": "user", "content": f"the cat {index}?"}]
        assert batch["answer"][i] == str(index) and batch["row_completions"][i] == f"stale {index}"
        assert batch["row_trainer_state"][i] == "user data" and batch["reward_model.style"][i] == "rule"
        assert batch["dataset_name"][i] == "verl"
    assert all(isinstance(text, str) and not text.startswith("stale") for text in batch["completions"])
    assert batch["trainer_state"] is not None and not isinstance(batch["trainer_state"], list)
