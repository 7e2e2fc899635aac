"""google/IFEval-shaped rows through the whole pipeline with a tiny model: the list columns reach the rewards
equal to the rows (no key added by Arrow, none lost), and ifeval_instructions logs a number, not None."""

from __future__ import annotations

import json

import yaml
from test_data import write
from test_list_columns import IFEVAL_ROWS, LIST_KEYS

from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import register_reward_function

SEEN: list[dict] = []


@register_reward_function("test_ifeval_records_columns")
def records_columns():
    def reward(prompts, completions, key, instruction_id_list, kwargs, **columns):
        SEEN.append({"key": key, "instruction_id_list": instruction_id_list, "kwargs": kwargs})
        return [0.0] * len(completions)

    return reward


def test_ifeval_rows_train_with_their_instructions(tmp_path, tiny_model_dir):
    rows = IFEVAL_ROWS + [{**row, "key": row["key"] + 100} for row in IFEVAL_ROWS[:1]]
    config = {
        "training_parameters": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "per_device_train_batch_size": 8,
                                "num_generations": 2, "max_completion_length": 8, "save_steps": 10},
        "model": {"base_model_name": str(tiny_model_dir), "lora_rank": 2, "lora_alpha": 4},
        "datasets": [{"path": str(write(tmp_path / "ifeval.jsonl", rows)),
                      "reward_funcs": [{"name": "ifeval_instructions"}, {"name": "test_ifeval_records_columns"}]}],
        "dataset_settings": {"total_rows": 4},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    SEEN.clear()
    outcome = run_grpo_pipeline(path, base_dir=tmp_path)
    assert outcome.steps == 1 and SEEN
    originals = {row["key"]: row for row in rows}
    keys = [key for batch in SEEN for key in batch["key"]]
    assert len(keys) == 8 and set(keys) <= set(originals)
    for batch in SEEN:
        for i, key in enumerate(batch["key"]):
            for column in LIST_KEYS:
                assert batch[column][i] == originals[key][column]  # exactly as in the file
    metrics = [json.loads(line) for line in (outcome.paths.metrics).read_text().splitlines()]
    step = next(line for line in metrics if "rewards/ifeval_instructions/mean" in line)
    assert isinstance(step["rewards/ifeval_instructions/mean"], float)
    assert step["rewards/ifeval_instructions/none_count"] == 0.0
