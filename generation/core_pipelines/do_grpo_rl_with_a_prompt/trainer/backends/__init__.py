"""Trainer backends: how the model is loaded and wrapped with LoRA before TRL's GRPOTrainer takes over.

- `trl`: transformers + PEFT, everywhere (CPU included).
- `unsloth`: Unsloth's FastLanguageModel on an NVIDIA GPU (faster generation, less memory, 4-bit QLoRA).
`select_backend` picks one without importing anything heavy.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

from ...distributed import cuda_available
from .base import BackendUnavailableError, LoadedModel
from .trl_backend import load_trl_model
from .unsloth_backend import load_unsloth_model


def describe_training_mode(model_config: Any) -> str:
    """The training mode in a few words, for the run plan: LoRA / QLoRA with its shape, or full fine-tuning."""
    if not model_config.apply_lora:
        return ("full fine-tuning: every weight trains, final/ holds the whole model; memory about 16 bytes per "
                "parameter in float32 with Adam (weights + gradients + 2 moments), 8 in bfloat16, plus activations")
    kind = "QLoRA (4-bit NF4 base)" if model_config.load_in_4bit else "LoRA"
    targets = model_config.target_modules
    targets = targets if isinstance(targets, str) else ", ".join(targets)
    excluded = model_config.exclude_modules
    if excluded:
        targets += f" except {excluded if isinstance(excluded, str) else ', '.join(excluded)}"
    return f"{kind} r={model_config.lora_rank} alpha={model_config.lora_alpha} on {targets}"


def select_backend(
    requested: str,
    has_cuda: Optional[bool] = None,
    has_unsloth: Optional[bool] = None,
    source_problem: Optional[str] = None,
) -> str:
    """'trl' or 'unsloth' for model.backend ('auto' | 'trl' | 'unsloth'); raises when unsloth cannot run.

    `source_problem` says why Unsloth cannot load this model (e.g. a GGUF file): 'auto' then picks TRL,
    an explicit 'unsloth' fails with it.
    """
    if requested == "trl":
        return "trl"
    has_unsloth = importlib.util.find_spec("unsloth") is not None if has_unsloth is None else has_unsloth
    if requested == "auto" and (not has_unsloth or source_problem):
        return "trl"  # decided without importing torch
    has_cuda = cuda_available() if has_cuda is None else has_cuda
    if requested == "unsloth":
        if not has_cuda:
            raise BackendUnavailableError(
                "model.backend is 'unsloth', but no CUDA GPU is visible: Unsloth needs an NVIDIA GPU. "
                "Use backend 'auto' or 'trl' to train on this machine."
            )
        if not has_unsloth:
            raise BackendUnavailableError(
                "model.backend is 'unsloth', but unsloth is not installed: run `bash linux.sh --gpu` "
                "(or pip install -r requirements-gpu.txt)."
            )
        if source_problem:
            raise BackendUnavailableError(source_problem)
        return "unsloth"
    return "unsloth" if has_cuda and has_unsloth and not source_problem else "trl"


def load_model(config: Any, backend: str) -> LoadedModel:
    """Load model + tokenizer with the chosen backend and wrap the model with LoRA."""
    if backend == "unsloth":
        return load_unsloth_model(config)
    return load_trl_model(config)
