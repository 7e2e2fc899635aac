"""The Unsloth backend: FastLanguageModel (LoRA, QLoRA with model.load_in_4bit, or full fine-tuning with
model.apply_lora false: Unsloth's full_finetuning) on an NVIDIA GPU.

Unsloth loads the model with its fast kernels and wraps it with LoRA; TRL's GRPOTrainer then trains it as on
the TRL path (Unsloth patches GRPOTrainer when it is imported, so training.py needs no change of trainer).
The adapter is a plain PEFT adapter over the same modules as the TRL path's 'all-linear', saved the same way.

Import order: Unsloth patches transformers, PEFT and TRL when imported and must come before them. The node
keeps that order: config, data and rewards import none of them (checked by tests/test_backends.py), the
backend is chosen with `importlib.util.find_spec` and `torch.cuda` only, `load_unsloth_model` imports
unsloth before anything else of that stack, and training.py imports trl inside train(). When something
imported them earlier anyway (a notebook, a test session), a warning names them.

Generation:
- vLLM installed (and model.use_vllm not 'off'), vllm_mode 'colocate': `fast_inference=True` makes Unsloth
  build its vLLM engine next to the model (model.gpu_memory_utilization of the GPU); TRL's use_vllm then
  generates with it, stop sequences go to vLLM's SamplingParams as `stop`.
- vllm_mode 'server': no engine here; TRL talks to a `trl vllm-serve` server (use_vllm, vllm_mode='server').
- no vLLM: Unsloth's fast generate (transformers generate with Unsloth's inference kernels), stop
  sequences through generation_config.stop_strings as on the TRL path.

Everything here except `load_unsloth_model` is a pure function of the config, testable without a GPU.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, Optional

from ..model_loading import CHATML_TEMPLATE, ModelLoadError, resolve_model_source
from .base import BackendUnavailableError, LoadedModel
from .generation import generation_path, uses_vllm, vllm_grpo_kwargs, vllm_importable
from .trl_backend import describe_full_fine_tuning, install_stop_sequences, parameter_count

STANDARD_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""What PEFT's 'all-linear' selects on Llama / Qwen / Mistral-style models (every linear layer but lm_head)."""

IMPORT_BEFORE_UNSLOTH = ("transformers", "trl", "peft")


def unsloth_source_problem(config: Any) -> Optional[str]:
    """Why Unsloth cannot load model.base_model_name (a GGUF file), or None when it can."""
    source = resolve_model_source(config.model.base_model_name, config.model.gguf_file)
    if source.gguf_file:
        return (
            f"the Unsloth backend cannot train a GGUF model ({source.describe()}): point model.base_model_name "
            "at the original model (a hub id or a directory with config.json and safetensors), or set "
            "model.backend to 'trl', which de-quantizes GGUF weights."
        )
    return None


def unsloth_from_pretrained_kwargs(config: Any, vllm_available: Optional[bool] = None) -> dict:
    """Arguments for unsloth.FastLanguageModel.from_pretrained from our config (GGUF sources refused).

    dtype is None (Unsloth picks bfloat16 where supported, else float16) or a dtype name, which
    load_unsloth_model turns into a torch.dtype. use_exact_model_name keeps Unsloth from swapping a hub id
    for its own pre-quantized copy: the adapter then names the base the user gave, and an offline cache works.
    """
    problem = unsloth_source_problem(config)
    if problem:
        raise BackendUnavailableError(problem)
    model = config.model
    vllm_available = vllm_importable() if vllm_available is None else vllm_available
    in_process_vllm = uses_vllm(model, vllm_available, on_gpu=True) and model.vllm_mode == "colocate"
    return {
        "model_name": resolve_model_source(model.base_model_name, model.gguf_file).name_or_path,
        "max_seq_length": model.max_seq_length,
        "dtype": None if model.dtype == "auto" else model.dtype,
        "load_in_4bit": model.load_in_4bit,
        "fast_inference": in_process_vllm,
        "gpu_memory_utilization": model.gpu_memory_utilization,
        "max_lora_rank": model.lora_rank,
        "random_state": config.training_parameters.seed,
        "use_exact_model_name": True,
        "full_finetuning": not model.apply_lora,
    }


def unsloth_peft_kwargs(config: Any) -> dict:
    """Arguments for unsloth.FastLanguageModel.get_peft_model: the same adapter the TRL path builds.

    Unsloth takes module names, not PEFT's exclude_modules: a list of excluded names is removed from the
    targets; a regular expression is refused (the TRL backend applies it).
    """
    model = config.model
    targets = expand_target_modules(model.target_modules)
    if isinstance(model.exclude_modules, str):
        raise BackendUnavailableError(
            f"model.exclude_modules '{model.exclude_modules}' is a regular expression, which the Unsloth backend "
            "cannot apply: give a list of module names (e.g. [o_proj]) or set model.backend to 'trl'"
        )
    if model.exclude_modules and isinstance(targets, list):
        targets = [name for name in targets if name not in model.exclude_modules]
    return {
        "r": model.lora_rank,
        "lora_alpha": model.lora_alpha,
        "lora_dropout": model.lora_dropout,
        "target_modules": targets,
        "bias": "none",
        "use_gradient_checkpointing": "unsloth",
        "random_state": config.training_parameters.seed,
    }


def expand_target_modules(target_modules: Any) -> Any:
    """'all-linear' -> the seven projection names (Unsloth wants names); anything else unchanged."""
    if isinstance(target_modules, str) and target_modules == "all-linear":
        return list(STANDARD_LORA_TARGETS)
    return list(target_modules) if isinstance(target_modules, (list, tuple)) else target_modules


def imported_too_early(modules: Optional[dict] = None) -> list[str]:
    """Which of transformers / trl / peft were imported before unsloth (they miss some of its patches)."""
    modules = sys.modules if modules is None else modules
    if "unsloth" in modules:
        return []
    return [name for name in IMPORT_BEFORE_UNSLOTH if name in modules]


# ---------------------------------------------------------------------------------------- loading


def load_unsloth_model(config: Any) -> LoadedModel:
    """Load the model with Unsloth (4-bit when model.load_in_4bit) and wrap it with a LoRA adapter."""
    load_kwargs = unsloth_from_pretrained_kwargs(config)  # refuses GGUF before anything is imported
    early = imported_too_early()
    if early:
        warnings.warn(
            f"{', '.join(early)} imported before unsloth: Unsloth may not apply all of its optimisations. "
            "Import unsloth first (the node does when nothing else imported them).",
            stacklevel=2,
        )
    import unsloth  # noqa: F401  (first: it patches transformers, peft and trl)
    import torch
    from unsloth import FastLanguageModel

    if load_kwargs["dtype"] is not None:
        load_kwargs["dtype"] = getattr(torch, load_kwargs["dtype"])
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(**load_kwargs)
    except OSError as error:
        raise ModelLoadError(
            f"could not load '{load_kwargs['model_name']}' with Unsloth ({error}). If this machine is offline, "
            "set model.base_model_name to a local model directory."
        ) from error
    tokenizer = finish_tokenizer(tokenizer, config.training_parameters.chat_template, load_kwargs["model_name"])
    if config.model.apply_lora:
        torch.manual_seed(config.training_parameters.seed)  # LoRA init is random: make it repeatable
        model = FastLanguageModel.get_peft_model(model, **unsloth_peft_kwargs(config))
    else:
        optimizer = (config.training_parameters.model_extra or {}).get("optim")
        print(describe_full_fine_tuning(parameter_count(model), model.dtype.itemsize, optimizer))

    vllm_kwargs = vllm_grpo_kwargs(config, vllm_importable(), on_gpu=True)
    if load_kwargs["fast_inference"] and getattr(model, "vllm_engine", None) is None:
        warnings.warn("Unsloth did not start its vLLM engine on this GPU: generating without vLLM", stacklevel=2)
        vllm_kwargs = {"use_vllm": False}
    if config.training_parameters.model_stop_sequences and not vllm_kwargs["use_vllm"]:
        install_stop_sequences(model, tokenizer)
    loaded = LoadedModel(model, tokenizer, "unsloth", generation_path("unsloth", vllm_kwargs))
    loaded.grpo_kwargs = vllm_kwargs  # what GRPOConfig needs for this generation path (see vllm_grpo_kwargs)
    return loaded


def finish_tokenizer(tokenizer: Any, chat_template: Optional[str], model_name: str) -> Any:
    """The same rules as model_loading.load_tokenizer, applied to the tokenizer Unsloth returns."""
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE if chat_template.strip().lower() == "chatml" else chat_template
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelLoadError(f"{model_name} has no chat template: set training_parameters.chat_template (e.g. 'chatml')")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
