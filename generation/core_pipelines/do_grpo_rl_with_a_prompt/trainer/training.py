"""Run TRL's GRPOTrainer with the run's GRPOConfig (grpo_args.py), save the final adapter (or model).

Only this module (and the backends) import torch / TRL, and only when a run trains.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from ..config.schema import GRPOPipelineConfig
from ..data.json_columns import encode_rows, json_columns
from ..distributed import barrier, world_size
from ..run.console import install_compact_console
from ..run.checkpoints import make_checkpoint_callback
from ..run.files import RunPaths
from ..run.stop import RunStopError, make_stop_callback
from .batching import generation_round_steps
from .grpo_args import build_grpo_config
from .judged_rounds import round_settings_for, rounds_trainer_class

CHECKPOINT_PREFIX = "checkpoint"


@dataclass
class TrainResult:
    """What train() reports back to the pipeline."""

    steps: int
    seconds: float
    stopped_early: Optional[str] = None  # the RunStopError's message
    interrupted: bool = False
    stop_signal: Optional[str] = None  # "SIGINT" / "SIGTERM" when a signal stopped the run


def train(
    config: GRPOPipelineConfig,
    paths: RunPaths,
    loaded: Any,
    reward_function: Any,
    train_rows: list[dict],
    eval_rows: list[dict],
    callbacks: list[Any],
    resume_from: Optional[str] = None,
) -> TrainResult:
    """Run GRPO and save the final adapter (or model) with its tokenizer and chat template under paths.final_adapter."""
    from datasets import Dataset
    from trl import GRPOTrainer

    tokenizer = loaded.tokenizer
    model_dtype = str(loaded.model.dtype).removeprefix("torch.")
    args = build_grpo_config(config, paths, bool(eval_rows), eos_token_id=tokenizer.eos_token_id,
                             model_dtype=model_dtype, engine_kwargs=loaded.grpo_kwargs)
    as_json = json_columns(train_rows + eval_rows)  # list and object columns travel as JSON text ...
    reward_function.json_columns = as_json  # ... and the reward decodes them
    # issue 22: judge latency hidden behind training / tied groups refilled (judged_rounds.py); else GRPOTrainer itself
    trainer_class = rounds_trainer_class(GRPOTrainer, round_settings_for(config, reward_function, paths.root / "batches.jsonl"))
    trainer = trainer_class(
        model=loaded.model,
        reward_funcs=[reward_function],
        args=args,
        train_dataset=Dataset.from_list(encode_rows(train_rows, as_json)),
        eval_dataset=Dataset.from_list(encode_rows(eval_rows, as_json)) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    checkpoints = make_checkpoint_callback(
        paths, config.training_parameters.save_total_limit, args.metric_for_best_model if eval_rows else None,
        args.greater_is_better if args.greater_is_better is not None else True,
    )
    stopper = make_stop_callback(round_steps=generation_round_steps(config.training_parameters, world_size()))
    trainer.add_callback(checkpoints)
    trainer.add_callback(stopper)
    install_compact_console(trainer)  # one line per logging step; the full dict goes to metrics.jsonl
    reward_function.mode_probe = lambda: "train" if trainer.model.training else "eval"
    started = time.monotonic()
    stopped_early = None
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except RunStopError as error:  # a failing judge, a reward past its time limit, a broken reward
        stopped_early = str(error)
        if error.__cause__ is not None:  # a reward raised: show where
            traceback.print_exception(error.__cause__)
        if trainer.state.global_step > 0:  # keep the work done so far; resume continues here
            trainer._save_checkpoint(trainer.model, trial=None)
            checkpoints.on_save(args, trainer.state, trainer.control)
    result = TrainResult(trainer.state.global_step, time.monotonic() - started, stopped_early,
                         interrupted=bool(stopper.stop_requested), stop_signal=stopper.stop_requested)
    if not result.interrupted and not stopped_early:
        save_final_model(trainer, paths.final_adapter)
    return result


def save_final_model(trainer: Any, directory: Any) -> None:
    """Save the adapter (or, with apply_lora false, the whole model) with the tokenizer and its chat template.

    trainer.save_model writes once (on the main process) and gathers sharded weights (DeepSpeed ZeRO-3,
    FSDP) from every rank, so every rank calls it; the others wait until the files are complete.
    """
    trainer.save_model(str(directory))
    barrier()

