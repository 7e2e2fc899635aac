"""The transformers + PEFT backend: works on any machine, CPU included.

Three training modes, chosen by the model section:
- LoRA (the default): the base model frozen, a PEFT LoRA adapter trained (`target_modules`, `exclude_modules`).
- QLoRA (`load_in_4bit: true`, CUDA only): the base loaded in 4-bit NF4 with bitsandbytes, prepared with
  PEFT's `prepare_model_for_kbit_training` (norms in float32, inputs that carry gradients), LoRA on top.
- Full fine-tuning (`apply_lora: false`): every weight trains; the run's final/ holds the whole model.
"""

from __future__ import annotations

from typing import Any, Optional

from ...config.schema import GRPOPipelineConfig
from ...distributed import local_rank
from ..model_loading import load_causal_lm, load_tokenizer, resolve_model_source, resolve_torch_dtype
from .base import BackendUnavailableError, LoadedModel, four_bit_problem
from .generation import generation_path, vllm_grpo_kwargs, vllm_importable


def lora_config_kwargs(model_config: Any, seed: int) -> dict:
    """peft.LoraConfig arguments from the model section."""
    kwargs = {
        "r": model_config.lora_rank,
        "lora_alpha": model_config.lora_alpha,
        "lora_dropout": model_config.lora_dropout,
        "target_modules": model_config.target_modules,
        "task_type": "CAUSAL_LM",
        "bias": "none",
    }
    if model_config.exclude_modules:
        kwargs["exclude_modules"] = model_config.exclude_modules
    return kwargs


def four_bit_load_kwargs(compute_dtype: Any) -> dict:
    """from_pretrained arguments for QLoRA: NF4 weights with double quantization, compute in `compute_dtype`,
    on this process's GPU (each rank its own under accelerate)."""
    from transformers import BitsAndBytesConfig

    return {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    ), "device_map": {"": local_rank()}}


def load_trl_model(config: GRPOPipelineConfig) -> LoadedModel:
    """Load the base model with transformers; wrap it with LoRA (QLoRA in 4-bit), or leave it whole."""
    import torch

    model_config = config.model
    source = resolve_model_source(model_config.base_model_name, model_config.gguf_file)
    tokenizer = load_tokenizer(source, config.training_parameters.chat_template)
    if model_config.load_in_4bit:
        model = load_four_bit_model(source, model_config.dtype, config.training_parameters)
    else:
        model = load_causal_lm(source, model_config.dtype)
    if model_config.apply_lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(config.training_parameters.seed)  # LoRA init is random: make it repeatable
        model = get_peft_model(model, LoraConfig(**lora_config_kwargs(model_config, config.training_parameters.seed)))
    else:
        optimizer = (config.training_parameters.model_extra or {}).get("optim")
        print(describe_full_fine_tuning(parameter_count(model), model.dtype.itemsize, optimizer))
    # vLLM cannot load GGUF files: those always generate with transformers
    engine = {"use_vllm": False} if source.gguf_file else vllm_grpo_kwargs(
        config, vllm_importable(), torch.cuda.is_available()
    )
    if config.training_parameters.model_stop_sequences and not engine["use_vllm"]:
        install_stop_sequences(model, tokenizer)
    grpo_kwargs = dict(engine)
    if model_config.load_in_4bit:  # k-bit preparation keeps norms and LoRA in float32: mixed precision follows the compute dtype
        compute = str(resolve_torch_dtype(model_config.dtype)).removeprefix("torch.")
        grpo_kwargs.update(bf16=compute == "bfloat16", fp16=compute == "float16")
    return LoadedModel(model, tokenizer, "trl", generation_path("trl", engine), grpo_kwargs)


def load_four_bit_model(source: Any, dtype: str, training_parameters: Any) -> Any:
    """The base in 4-bit via bitsandbytes, prepared for k-bit training by PEFT (CUDA only)."""
    from peft import prepare_model_for_kbit_training

    problem = four_bit_problem()  # checked at start-up too; kept for callers of this function
    if problem:
        raise BackendUnavailableError(problem)
    if source.gguf_file:
        raise BackendUnavailableError(
            f"model.load_in_4bit: {source.describe()} is a GGUF file, which transformers de-quantizes; 4-bit loading "
            "needs the original model (a hub id or a directory with safetensors)"
        )
    model = load_causal_lm(source, dtype, **four_bit_load_kwargs(resolve_torch_dtype(dtype)))
    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=activation_checkpointing_setting(training_parameters),
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )


def activation_checkpointing_setting(training_parameters: Any) -> bool:
    """Whether activations are recomputed in the backward pass (TRL's default: yes), from either name."""
    extra = training_parameters.model_extra or {}
    for key in ("activation_checkpointing", "gradient_checkpointing"):
        if extra.get(key) is not None:
            return bool(extra[key])
    return True


def parameter_count(model: Any, trainable_only: bool = False) -> int:
    """Number of parameters (trainable ones only, when asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def full_fine_tuning_memory(parameters: int, weight_bytes: int = 4, optimizer: Optional[str] = None) -> dict:
    """Rough memory of full fine-tuning: weights, gradients (both in the weights' dtype) and the optimizer state.

    Adam(W) keeps two moments in the weights' dtype (torch's default), 8-bit Adam two bytes per parameter,
    other optimizers about one buffer. Activations and the reference model (beta > 0) come on top.
    """
    name = (optimizer or "adamw_torch").lower()
    state = 2 if "8bit" in name else 2 * weight_bytes if "adam" in name else weight_bytes
    parts = {"weights": parameters * weight_bytes, "gradients": parameters * weight_bytes,
             "optimizer state": parameters * state}
    parts["total"] = sum(parts.values())
    return parts


def describe_full_fine_tuning(parameters: int, weight_bytes: int, optimizer: Optional[str] = None) -> str:
    """One line for the run's output: what full fine-tuning of this model needs in memory, roughly."""
    parts = full_fine_tuning_memory(parameters, weight_bytes, optimizer)
    unit, scale = ("GiB", 2**30) if parts["total"] >= 2**30 else ("MiB", 2**20)
    size = {name: f"{value / scale:.2f}" for name, value in parts.items()}
    return (f"full fine-tuning: {parameters / 1e6:.1f}M parameters train; memory about {size['total']} {unit} = "
            f"weights {size['weights']} + gradients {size['gradients']} + optimizer state {size['optimizer state']} "
            "(activations, and a reference model when beta > 0, come on top)")


def install_stop_sequences(model: Any, tokenizer: Any) -> None:
    """Let `generate` honour generation_config.stop_strings: transformers needs the tokenizer passed in.

    TRL calls model.generate without a tokenizer, so the model's generate is wrapped to add it.
    """
    original_generate = model.generate

    def generate_with_tokenizer(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("tokenizer", tokenizer)
        return original_generate(*args, **kwargs)

    model.generate = generate_with_tokenizer
