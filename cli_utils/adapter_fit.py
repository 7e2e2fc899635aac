"""Does a LoRA adapter fit a base model? Checked on the base's skeleton (meta device), before any weight loads.

merge_lora.py uses it to refuse, with a clear message, an adapter trained on another base (other module names
or other shapes) instead of failing deep inside PEFT after loading gigabytes.
"""

from __future__ import annotations

from typing import Any


LORA_PARTS = (".lora_A.", ".lora_B.", ".lora_embedding_A", ".lora_embedding_B", ".lora_magnitude_vector")


def find_mismatches(skeleton: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Problems fitting the adapter's tensors onto `skeleton` (the base built on the meta device)."""
    modules = dict(skeleton.named_modules())
    params = dict(skeleton.named_parameters())
    problems: list[str] = []
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        part = next((p for p in LORA_PARTS if p in name), None)
        if part is None:  # a full copy of a module (modules_to_save): the base needs the same parameter
            base_name = name.replace(".modules_to_save.default", "")
            if base_name not in params:
                problems.append(f"{base_name}: not in the base model")
            elif tuple(params[base_name].shape) != shape:
                problems.append(f"{base_name}: adapter has shape {list(shape)}, base has {list(params[base_name].shape)}")
            continue
        module_name = name.split(part)[0]
        module = modules.get(module_name)
        if module is None:
            problems.append(f"{module_name}: target module not in the base model")
            continue
        expected = _expected_shape(module, part, shape)
        if expected is not None and tuple(expected) != shape:
            problems.append(f"{module_name}{part.rstrip('.')}: adapter has shape {list(shape)}, base needs {list(expected)}")
    return problems


def _expected_shape(module: Any, part: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape `part` must have on `module` (rank taken from the adapter), or None when unknown."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):  # nn.Linear
        fan_in, fan_out = module.in_features, module.out_features
    elif type(module).__name__ == "Conv1D":  # GPT-2 style, weight is (in, out)
        fan_in, fan_out = module.weight.shape
    elif hasattr(module, "num_embeddings"):  # nn.Embedding
        fan_in, fan_out = module.num_embeddings, module.embedding_dim
    else:
        return None
    rank = shape[0] if part in (".lora_A.", ".lora_embedding_A") else shape[-1]
    return {
        ".lora_A.": (rank, fan_in),
        ".lora_embedding_A": (rank, fan_in),
        ".lora_B.": (fan_out, rank),
        ".lora_embedding_B": (fan_out, rank),
        ".lora_magnitude_vector": (fan_out,),
    }[part]
