"""How many completions a step and a generation round hold: the batch arithmetic, in one place.

Pure arithmetic on the training settings and the number of processes (`processes`, a parameter: nothing here
reads the environment or imports torch). TRL's rules, as its GRPOConfig and GRPOTrainer apply them:

- a *generation round* samples `generation_batch_size` completions (default per_device_train_batch_size x
  processes x steps_per_generation, steps_per_generation defaulting to gradient_accumulation_steps); it must
  hold whole prompt groups, i.e. be a multiple of num_generations;
- an optimizer step trains on per_device_train_batch_size x processes x gradient_accumulation_steps completions;
- one round is reused for steps_per_generation x num_iterations micro-batches, so checkpoints (and a resume)
  only fall on round boundaries.

Augmentoolkit's configs set per_device_train_batch_size 1 with num_generations 6; its Unsloth trainer raised
such a batch to a whole group and said so. `fit_batch_to_groups` does the same, openly.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..config.schema import ConfigError, TrainingParameters


def generation_batch_problem(batch_size: int, accumulation: int, num_generations: int, steps_per_generation: Any,
                             generation_batch_size: Any, processes: int) -> Optional[str]:
    """Why TRL would refuse this batch layout (its GRPOConfig.__post_init__ rule), or None."""
    global_batch = batch_size * processes
    if steps_per_generation is not None and generation_batch_size is not None:
        return "steps_per_generation: give steps_per_generation or generation_batch_size, not both"
    if generation_batch_size is not None:
        if not isinstance(generation_batch_size, int) or generation_batch_size % global_batch:
            return (f"generation_batch_size: {generation_batch_size!r} must be a multiple of per_device_train_batch_size "
                    f"{batch_size} x {processes} process(es) = {global_batch}")
        total, how = generation_batch_size, f"generation_batch_size {generation_batch_size}"
    else:
        steps = accumulation if steps_per_generation is None else steps_per_generation
        if not isinstance(steps, int) or steps < 1:
            return f"steps_per_generation: must be a whole number >= 1, got {steps!r}"
        total = global_batch * steps
        how = (f"per_device_train_batch_size {batch_size} x {processes} process(es) x "
               f"{'steps_per_generation' if steps_per_generation is not None else 'gradient_accumulation_steps'} "
               f"{steps} = {total}")
    if total % num_generations:
        suggestion = -(-batch_size // num_generations) * num_generations
        return (f"per_device_train_batch_size: each generation round samples {how} completions, which must be a "
                f"multiple of num_generations {num_generations} (whole prompt groups); e.g. per_device_train_batch_size "
                f"{suggestion}")
    return None


def smallest_whole_group_batch(batch_size: int, steps_per_round: int, num_generations: int, processes: int) -> int:
    """The smallest per-device batch >= `batch_size` whose generation round holds whole prompt groups.

    >>> smallest_whole_group_batch(1, 1, 6, 1), smallest_whole_group_batch(1, 1, 6, 2), smallest_whole_group_batch(1, 4, 6, 1)
    (6, 3, 3)
    """
    candidate = batch_size
    while (candidate * processes * steps_per_round) % num_generations:
        candidate += 1
    return candidate


def fit_batch_to_groups(training: TrainingParameters, processes: int) -> Optional[str]:
    """Check the batch layout for `processes` processes; raise a per-device batch too small for one prompt group.

    A generation round smaller than num_generations (and no generation_batch_size given) gets the smallest
    per_device_train_batch_size that holds whole groups; `training` is changed in place and the returned line
    says so (None when nothing changed). Any other layout TRL refuses is a ConfigError naming the key.
    """
    extra = training.model_extra or {}
    steps_per_generation, generation_batch_size = extra.get("steps_per_generation"), extra.get("generation_batch_size")
    steps = steps_per_generation if steps_per_generation is not None else training.gradient_accumulation_steps
    note = None
    round_size = training.per_device_train_batch_size * processes * steps if isinstance(steps, int) else None
    if generation_batch_size is None and round_size is not None and 0 < round_size < training.num_generations:
        raised = smallest_whole_group_batch(training.per_device_train_batch_size, steps, training.num_generations,
                                            processes)
        note = (f"per_device_train_batch_size {training.per_device_train_batch_size} -> {raised}: a generation round "
                f"({raised} x {processes} process(es) x {steps} micro-batch(es)) must hold whole prompt groups of "
                f"num_generations {training.num_generations} (as Augmentoolkit's trainer did); set "
                "training_parameters.per_device_train_batch_size yourself to silence this")
        training.per_device_train_batch_size = raised
    problem = generation_batch_problem(training.per_device_train_batch_size, training.gradient_accumulation_steps,
                                       training.num_generations, steps_per_generation, generation_batch_size, processes)
    if problem:
        raise ConfigError(f"training_parameters.{problem}")
    return note


def generation_round_steps(training: TrainingParameters, processes: int) -> int:
    """Optimizer steps per TRL generation round (completions are generated once and reused for that many).

    TRL generates every steps_per_generation x num_iterations micro-batches; an optimizer step is
    gradient_accumulation_steps micro-batches. A round boundary is where both line up.
    """
    extra = training.model_extra or {}
    accumulation = training.gradient_accumulation_steps
    per_generation = extra.get("steps_per_generation")
    if not per_generation and extra.get("generation_batch_size"):
        per_generation = max(1, int(extra["generation_batch_size"]) // (training.per_device_train_batch_size * processes))
    micro_steps = int(per_generation or accumulation) * int(extra.get("num_iterations") or 1)
    return micro_steps // math.gcd(micro_steps, accumulation)


def optimizer_steps_per_round(steps_per_generation: int, num_iterations: int, accumulation: int) -> int:
    """Optimizer steps one generation round serves (TRL's arguments), at least 1: a round is
    steps_per_generation x num_iterations micro-batches, an optimizer step `accumulation` of them.

    >>> optimizer_steps_per_round(4, 1, 1), optimizer_steps_per_round(1, 1, 2)
    (4, 1)
    """
    return max(1, steps_per_generation * num_iterations // accumulation)


def check_checkpoints_align(training: TrainingParameters, processes: int) -> None:
    """save_steps (and eval_steps) must fall on generation-round boundaries, else a resume would shift the rows."""
    round_steps = generation_round_steps(training, processes)
    if round_steps == 1:
        return
    for key in ("save_steps", "eval_steps"):
        value = training.save_steps if key == "save_steps" else (training.model_extra or {}).get(key)
        if value is not None and float(value) >= 1 and int(value) % round_steps:
            raise ConfigError(
                f"training_parameters.{key} {value:g} is not a multiple of {round_steps}: with these num_iterations / "
                f"steps_per_generation / gradient_accumulation_steps TRL reuses each generation for {round_steps} steps, "
                f"and a checkpoint inside that round could not be resumed exactly. Use a multiple of {round_steps}."
            )


def planned_steps(training: TrainingParameters, train_rows: int, processes: int) -> int:
    """Optimizer steps the run will take: max_steps, or (max_steps -1) about what num_train_epochs gives."""
    if training.max_steps > 0:
        return training.max_steps
    extra = training.model_extra or {}
    completions_per_step = training.per_device_train_batch_size * processes * training.gradient_accumulation_steps
    completions_per_epoch = train_rows * training.num_generations * int(extra.get("num_iterations") or 1)
    per_epoch = math.ceil(completions_per_epoch / completions_per_step)
    return max(1, math.ceil(per_epoch * float(extra.get("num_train_epochs") or 1)))
