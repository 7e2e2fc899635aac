"""--sweep: the grid, run names, and a real two-run sweep ending with the comparison table."""

from __future__ import annotations

import pytest

import run_augmentoolkit
from generation.errors import UserInputError
from generation.sweep import expand_sweep, run_name_for
from test_pipeline_e2e import tiny_config


def test_grid_and_names():
    grid = expand_sweep(["training_parameters.learning_rate=1e-5,3e-5", "model.lora_rank=8,16"])
    assert grid == [
        ["training_parameters.learning_rate=1e-5", "model.lora_rank=8"],
        ["training_parameters.learning_rate=1e-5", "model.lora_rank=16"],
        ["training_parameters.learning_rate=3e-5", "model.lora_rank=8"],
        ["training_parameters.learning_rate=3e-5", "model.lora_rank=16"],
    ]
    assert run_name_for(grid[0]) == "learning_rate-1e-5_lora_rank-8"
    with pytest.raises(UserInputError, match="--sweep expects"):
        expand_sweep(["model.lora_rank"])


def test_a_two_run_sweep_trains_each_and_compares(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, max_steps=1, output_dir=str(tmp_path / "sweep"))
    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(config),
                                     "--sweep", "model.lora_rank=2,4"])
    assert status == 0
    for name in ("lora_rank-2", "lora_rank-4"):
        assert (tmp_path / "sweep" / name / "final" / "adapter_model.safetensors").is_file()
    table = capsys.readouterr().out
    assert "lora_rank-2" in table and "lora_rank-4" in table and "lora_rank" in table
