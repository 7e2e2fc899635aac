"""How completions are generated, for both backends: vLLM or transformers generate, and stop sequences.

Pure functions of the config (plus whether vLLM and a GPU are present), testable without a GPU.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional, Sequence

from .base import BackendUnavailableError


def vllm_importable() -> bool:
    """True when vllm is installed (located without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def uses_vllm(model_config: Any, vllm_available: bool, on_gpu: bool) -> bool:
    """Whether completions are generated with vLLM: model.use_vllm 'auto' = when installed and on a GPU.

    'on' without vLLM or without a GPU is an error that says what is missing; 'off' never uses it.
    """
    if model_config.use_vllm == "off":
        return False
    if vllm_available and on_gpu:
        return True
    if model_config.use_vllm == "on":
        missing = "vllm is not installed (pip install vllm, matching your torch)" if not vllm_available else \
            "no CUDA GPU is visible"
        raise BackendUnavailableError(f"model.use_vllm is 'on', but {missing}. Set model.use_vllm to 'auto' or 'off'.")
    return False


def vllm_grpo_kwargs(config: Any, vllm_available: bool, on_gpu: bool) -> dict:
    """Extra trl.GRPOConfig arguments for the generation engine (both backends).

    {'use_vllm': False} without vLLM; else use_vllm, vllm_mode and, in colocate mode, the GPU share and
    the longest sequence vLLM must hold (model.gpu_memory_utilization, model.max_seq_length).
    """
    model = config.model
    if not uses_vllm(model, vllm_available, on_gpu):
        return {"use_vllm": False}
    kwargs: dict = {"use_vllm": True, "vllm_mode": model.vllm_mode}
    if model.vllm_mode == "colocate":
        kwargs["vllm_gpu_memory_utilization"] = model.gpu_memory_utilization
        kwargs["vllm_max_model_length"] = model.max_seq_length
    return kwargs


def stop_generation_kwargs(stops: Sequence[str], use_vllm: bool, eos_token_id: Optional[int]) -> dict:
    """generation_kwargs that make generation end at model_stop_sequences, for the engine in use.

    vLLM's SamplingParams take `stop` (the stop string is left out of the completion); transformers'
    GenerationConfig takes `stop_strings` (the stop string is kept) and pads finished rows with EOS so TRL
    masks everything after the stop.
    """
    if not stops:
        return {}
    if use_vllm:
        return {"stop": list(stops)}
    kwargs: dict = {"stop_strings": list(stops)}
    if eos_token_id is not None:
        kwargs["pad_token_id"] = eos_token_id
    return kwargs


def generation_path(backend: str, vllm_kwargs: dict) -> str:
    """The run summary's 'generation:' line, from the backend and vllm_grpo_kwargs()."""
    if vllm_kwargs.get("use_vllm"):
        return f"vllm ({vllm_kwargs.get('vllm_mode', 'colocate')})"
    return "unsloth fast generate" if backend == "unsloth" else "transformers generate"
