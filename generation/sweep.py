"""Grid sweeps: `--sweep training_parameters.learning_rate=1e-5,3e-5 --sweep model.lora_rank=8,16`.

Each combination becomes a list of `--set` overrides plus its own run directory name.
"""

from __future__ import annotations

import itertools
import re

from generation.errors import UserInputError


def expand_sweep(specs: list[str]) -> list[list[str]]:
    """The grid of `key=v1,v2` specs as override lists, first spec varying slowest."""
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        choices = [value.strip() for value in values.split(",") if value.strip()]
        if not sep or not key.strip() or not choices:
            raise UserInputError(f"--sweep expects section.key=value1,value2; got '{spec}'")
        axes.append([f"{key.strip()}={value}" for value in choices])
    return [list(combination) for combination in itertools.product(*axes)]


def run_name_for(overrides: list[str]) -> str:
    """A directory-safe name for one combination: `learning_rate-1e-05_lora_rank-8`."""
    parts = []
    for override in overrides:
        key, _, value = override.partition("=")
        parts.append(f"{key.split('.')[-1]}-{value}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))
