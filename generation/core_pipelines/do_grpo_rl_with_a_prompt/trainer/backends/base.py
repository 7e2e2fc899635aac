"""What every backend hands back (LoadedModel), the error it raises when it cannot run, and the 4-bit check."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Optional

from generation.errors import UserInputError

from ...distributed import cuda_available


class BackendUnavailableError(UserInputError, RuntimeError):
    """The configured backend cannot run on this machine; the message says why and what to use."""


@dataclass
class LoadedModel:
    """A LoRA-wrapped model ready for GRPOTrainer, its tokenizer, and how generation will run."""

    model: Any
    tokenizer: Any
    backend: str
    generation_path: str  # "vllm (colocate)", "unsloth fast generate", "transformers generate"
    grpo_kwargs: dict = field(default_factory=dict)  # GRPOConfig arguments this generation path needs


def four_bit_problem() -> Optional[str]:
    """Why model.load_in_4bit cannot work on this machine (no bitsandbytes, no CUDA GPU), or None when it can.
    Imports torch (ask only when 4-bit is asked for)."""
    if importlib.util.find_spec("bitsandbytes") is None and importlib.util.find_spec("unsloth") is None:
        return ("model.load_in_4bit: 4-bit loading (QLoRA) needs bitsandbytes and a CUDA GPU; bitsandbytes is not "
                "installed (pip install bitsandbytes on a CUDA machine), or set load_in_4bit false to train in 16/32-bit")
    if not cuda_available():
        return ("model.load_in_4bit: 4-bit loading (QLoRA) needs a CUDA GPU and none is visible on this machine: set "
                "load_in_4bit false to train in 16/32-bit here")
    return None
