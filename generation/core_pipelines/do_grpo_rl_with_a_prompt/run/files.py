"""The run directory and the files in it.

    <output_dir>/
      config.resolved.yaml        the validated config, secrets redacted
      final/                      the final LoRA adapter + tokenizer + chat template
      checkpoints/checkpoint-N/   trainer checkpoints (resume from the latest complete one)
      metrics.jsonl               one JSON object per logged step
      high_scoring_examples.jsonl completions whose combined reward reached the threshold
      summary.json                first vs last reward window, steps, best checkpoint
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml


@dataclass(frozen=True)
class RunPaths:
    """Every path of one run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.resolved.yaml"

    @property
    def final_adapter(self) -> Path:
        return self.root / "final"

    @property
    def best_adapter(self) -> Path:
        return self.root / "best"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"


def write_text_atomically(path: Path, text: str) -> None:
    """Write a whole file via a temporary file and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def write_resolved_config(paths: RunPaths, config_dict: dict) -> None:
    """Save the validated config (already redacted by the caller)."""
    write_text_atomically(paths.config, yaml.safe_dump(config_dict, sort_keys=False, allow_unicode=True))


class JsonlAppender:
    """Appends one JSON object per line; each line goes out in one write() to an O_APPEND file, so a killed
    process never tears a line in the middle of the file (at worst a power cut leaves an incomplete last
    line, and `trim_after_step` drops it). No fsync per line: the OS keeps written lines across a kill -9."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        """Append `record` as one line of strict JSON (NaN/inf become null, numpy/torch values plain numbers)."""
        line = json.dumps(_jsonable(record), ensure_ascii=False, allow_nan=False) + "\n"
        # a lone surrogate (invalid UTF-8) goes out as its JSON escape \udXXX, so the line stays valid
        with open(self.path, "a", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(line)

    def trim_after_step(self, step: int) -> int:
        """Drop torn lines and lines logged after `step` (a resumed run logs them again); returns how many."""
        if not self.path.exists():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(record, dict) and record.get("step", 0) > step:
                dropped += 1
                continue
            kept.append(line)
        if dropped:
            write_text_atomically(self.path, "".join(f"{line}\n" for line in kept))
        return dropped


def read_jsonl(path: Path) -> list[dict]:
    """Every complete JSON object of a JSONL file (torn or non-object lines are skipped); [] when absent."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def conversation_record(
    prompt: list[dict], completion: str, scores: dict[str, Optional[float]], dataset_name: str, step: int
) -> dict:
    """A high-scoring example: valid as ShareGPT (`conversations`) and as OpenAI (`messages`) at once."""
    messages = [{"role": m["role"], "content": m["content"]} for m in prompt]
    messages.append({"role": "assistant", "content": completion})
    sharegpt_role = {"system": "system", "user": "human", "assistant": "gpt"}
    return {
        "conversations": [{"from": sharegpt_role.get(m["role"], m["role"]), "value": m["content"]} for m in messages],
        "messages": messages,
        "prompt": prompt,
        "completion": completion,
        "scores": scores,
        "dataset_name": dataset_name,
        "step": step,
    }


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON data: non-finite floats -> None, numpy/torch scalars and arrays -> numbers and
    lists, tuples -> lists, any other object -> its str()."""
    if value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key if isinstance(key, (str, int)) else str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _jsonable(value.tolist())
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)
