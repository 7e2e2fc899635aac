"""Rows of TRL's GRPO training batches (dicts of per-row tensors): take some, put several batches together.

TRL pads prompts on the left and completions (with their per-token values: masks, log-probs) on the right;
batches generated separately have their own widths, so putting them together pads again. Torch is imported
only when called.
"""

from __future__ import annotations


def take_rows(output: dict, rows: list[int]) -> dict:
    """The given rows of every per-row tensor of a TRL batch; other values as they are."""
    import torch

    size = output["completion_ids"].size(0)
    index = torch.tensor(rows, dtype=torch.long, device=output["completion_ids"].device)
    return {key: value.index_select(0, index) if torch.is_tensor(value) and value.dim() and value.size(0) == size
            else value for key, value in output.items()}


def concat_rows(parts: list[dict], pad_token_id: int) -> dict:
    """Rows of several TRL batches in one: prompts left-padded, completions (and their per-token values) right-padded."""
    import torch

    batch: dict = {}
    for key, first in parts[0].items():
        values = [part[key] for part in parts]
        if key == "num_items_in_batch":
            continue  # recounted by the caller
        if not torch.is_tensor(first) or first.dim() == 0:
            batch[key] = max(values) if all(isinstance(v, (int, float)) for v in values) else first
            continue
        if first.dim() > 1:
            width = max(v.size(1) for v in values)
            fill = pad_token_id if key.endswith("_ids") else 1 if key == "tool_mask" else 0
            left = key.startswith("prompt")
            values = [torch.nn.functional.pad(v, (width - v.size(1), 0) if left else (0, width - v.size(1)), value=fill)
                      for v in values]
        batch[key] = torch.cat(values, dim=0)
    return batch
