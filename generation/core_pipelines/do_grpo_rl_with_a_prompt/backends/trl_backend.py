"""The transformers + PEFT backend: works on any machine, CPU included."""

from __future__ import annotations

from typing import Any

from ..config import GRPOPipelineConfig
from ..model_loading import load_causal_lm, load_tokenizer, resolve_model_source
from . import LoadedModel
from .generation import generation_path, vllm_grpo_kwargs, vllm_importable


def lora_config_kwargs(model_config: Any, seed: int) -> dict:
    """peft.LoraConfig arguments from the model section."""
    return {
        "r": model_config.lora_rank,
        "lora_alpha": model_config.lora_alpha,
        "lora_dropout": model_config.lora_dropout,
        "target_modules": model_config.target_modules,
        "task_type": "CAUSAL_LM",
        "bias": "none",
    }


def load_trl_model(config: GRPOPipelineConfig) -> LoadedModel:
    """Load the base model with transformers and wrap it with a PEFT LoRA adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    source = resolve_model_source(config.model.base_model_name, config.model.gguf_file)
    tokenizer = load_tokenizer(source, config.training_parameters.chat_template)
    model = load_causal_lm(source, config.model.dtype)
    torch.manual_seed(config.training_parameters.seed)  # LoRA init is random: make it repeatable
    model = get_peft_model(model, LoraConfig(**lora_config_kwargs(config.model, config.training_parameters.seed)))
    # vLLM cannot load GGUF files: those always generate with transformers
    engine = {"use_vllm": False} if source.gguf_file else vllm_grpo_kwargs(
        config, vllm_importable(), torch.cuda.is_available()
    )
    if config.training_parameters.model_stop_sequences and not engine["use_vllm"]:
        install_stop_sequences(model, tokenizer)
    return LoadedModel(model, tokenizer, "trl", generation_path("trl", engine), engine)


def install_stop_sequences(model: Any, tokenizer: Any) -> None:
    """Let `generate` honour generation_config.stop_strings: transformers needs the tokenizer passed in.

    TRL calls model.generate without a tokenizer, so the model's generate is wrapped to add it.
    """
    original_generate = model.generate

    def generate_with_tokenizer(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("tokenizer", tokenizer)
        return original_generate(*args, **kwargs)

    model.generate = generate_with_tokenizer
