"""Whether a run directory may be resumed with this config, and whether its run already finished.

A change that makes a checkpoint meaningless for the new run (another model, other data, another batch shape,
another number of processes) is refused; reward settings may change (a fixed judge URL, another weight) and are
listed.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from generation.errors import UserInputError

from ..config.schema import SEED_DATASET_LLM_KEYS
from .files import RunPaths

# Settings whose change makes a checkpoint meaningless for the new run.
RESUME_CRITICAL = {
    "model": ("base_model_name", "gguf_file", "lora_rank", "lora_alpha", "target_modules", "exclude_modules",
              "load_in_4bit", "apply_lora"),
    "training_parameters": ("seed", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                            "steps_per_generation", "generation_batch_size", "num_iterations"),
    "datasets": None,  # any change, except to the rewards (REWARD_KEYS)
    "dataset_settings": None,
    "launch": ("world_size",),  # the number of processes: another one gives other batches and RNG states
    "reward": ("overlap_judging", "dynamic_sampling"),  # they decide which prompts each step draws (issue 22)
}
REWARD_KEYS = ("reward_funcs", *SEED_DATASET_LLM_KEYS)
"""Dataset keys that may change on resume: which rewards score the rows, and the judge's URL, key, model."""
SNAPSHOT_DEFAULTS = {("launch", "world_size"): 1, ("reward", "overlap_judging"): False,
                     ("reward", "dynamic_sampling"): "off"}
"""Values assumed for keys that older run directories did not record (dynamic_sampling: also when it is off)."""


def finished_steps(paths: RunPaths, previous: Optional[dict], current: dict) -> Optional[int]:
    """The step count of a run that already finished here with the same length settings, else None."""
    if previous is None or not paths.summary.exists() or not paths.final_adapter.is_dir():
        return None
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not summary.get("finished"):
        return None
    length_keys = ("max_steps", "num_train_epochs")
    before, after = previous.get("training_parameters", {}), current.get("training_parameters", {})
    if any(before.get(key) != after.get(key) for key in length_keys):
        return None  # longer (or shorter) now: resume from the last checkpoint
    return int(summary.get("steps") or 0)


def check_resume_is_safe(previous: dict, current: dict, paths: RunPaths) -> None:
    """Raise UserInputError listing the settings that changed in a way a resume cannot honour."""
    changed = []
    for section, keys in RESUME_CRITICAL.items():
        before, after = previous.get(section), current.get(section)
        if keys is None:
            if _comparable(_without_rewards(before)) != _comparable(_without_rewards(after)):
                changed.append(section)
            continue
        for key in keys:
            default = SNAPSHOT_DEFAULTS.get((section, key))
            if before is None or key not in before and default is None:
                continue  # an older run directory did not record it
            old, new = (before or {}).get(key, default), (after or {}).get(key, default)
            if old != new:
                changed.append(f"{section}.{key}: {old!r} -> {new!r}")
    if changed:
        raise UserInputError(
            f"{paths.root} holds checkpoints of a run with other settings ({'; '.join(changed)}). "
            "Resuming would mix two runs: pass --fresh to start over (the old run is moved aside), "
            "or set training_parameters.output_dir to a new directory."
        )


def changed_reward_settings(previous: dict, current: dict) -> list[str]:
    """Which reward settings differ from the previous run (allowed on resume, and worth saying)."""
    changed = [f"reward.{key}" for key in sorted(set(previous.get("reward") or {}) | set(current.get("reward") or {}))
               if (previous.get("reward") or {}).get(key) != (current.get("reward") or {}).get(key)]
    before, after = previous.get("datasets") or [], current.get("datasets") or []
    for index, (old, new) in enumerate(zip(before, after)):
        for key in REWARD_KEYS:
            if _comparable(old.get(key)) != _comparable(new.get(key)):
                changed.append(f"datasets[{index}].{key}")
    return changed


def _without_rewards(section: Any) -> Any:
    if isinstance(section, list):
        return [{k: v for k, v in item.items() if k not in REWARD_KEYS} if isinstance(item, dict) else item
                for item in section]
    return section


def _comparable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
