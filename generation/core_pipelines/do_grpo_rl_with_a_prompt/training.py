"""Build TRL's GRPOConfig from ours, run GRPOTrainer, save the final adapter.

Only this module (and the backends) import torch / TRL, and only when a run trains.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from .config import KL_LOSS_TYPES, NODE_ONLY_TRAINING_KEYS, ConfigError, GRPOPipelineConfig
from .post_processors import required_scale_rewards
from .backends.generation import stop_generation_kwargs
from .advantage_metrics import with_advantage_metrics
from .console import install_compact_console
from .backends import cuda_available
from .distributed import barrier, is_distributed
from .lifecycle import generation_round_steps, make_lifecycle_callback, staging_dir
from .run_files import RunPaths
from .run_stop import RunStopError

CHECKPOINT_PREFIX = "checkpoint"


@dataclass
class TrainResult:
    """What train() reports back to the pipeline."""

    steps: int
    seconds: float
    stopped_early: Optional[str] = None  # the RunStopError's message
    interrupted: bool = False
    stop_signal: Optional[str] = None  # "SIGINT" / "SIGTERM" when a signal stopped the run


def effective_scale_rewards(config: GRPOPipelineConfig) -> str:
    """TRL's scale_rewards for this run: what the scaling function needs ('none' for the group normalisers,
    'batch' for reinforce_plus_plus), else the config's value (default 'group').

    An explicit, conflicting training_parameters.scale_rewards is an error (no double scaling), and so is
    multi_objective_aggregation 'normalize_then_sum' (it ignores scale_rewards) with such a scaling function.
    """
    name = config.reward.scaling_function
    required = required_scale_rewards(name)
    extra = config.training_parameters.model_extra or {}
    explicit = extra.get("scale_rewards")
    explicit = {True: "group", False: "none"}.get(explicit, explicit)
    if required is None:
        return explicit or "group"
    what = "already normalises each prompt group" if required == "none" else f"needs TRL's scale_rewards '{required}'"
    if explicit not in (None, required):
        raise ConfigError(
            f"reward.scaling_function '{name}' {what}; training_parameters.scale_rewards '{explicit}' would scale "
            f"{'twice' if required == 'none' else 'differently'}: remove it or set it to '{required}'"
        )
    if extra.get("multi_objective_aggregation") == "normalize_then_sum" and required != "none":
        raise ConfigError(
            f"training_parameters.multi_objective_aggregation 'normalize_then_sum' ignores scale_rewards, which "
            f"reward.scaling_function '{name}' needs: keep the default 'sum_then_normalize'"
        )
    return required


def grpo_config_kwargs(
    config: GRPOPipelineConfig,
    paths: RunPaths,
    has_eval: bool,
    eos_token_id: Optional[int],
    model_dtype: str,
    engine_kwargs: Optional[dict] = None,
) -> dict:
    """Keyword arguments for trl.GRPOConfig: the training_parameters, minus the keys the node handles.

    `model_dtype` ('bfloat16', 'float16', 'float32') sets mixed precision to match the loaded weights;
    `engine_kwargs` are what the backend's generation path needs (use_vllm, vllm_mode, ...).
    """
    params = config.training_parameters.model_dump(exclude=set(NODE_ONLY_TRAINING_KEYS))
    for key, value in (engine_kwargs or {"use_vllm": False}).items():
        params.setdefault(key, value)
    params.setdefault("bf16", model_dtype == "bfloat16")
    params.setdefault("fp16", model_dtype == "float16")
    params.pop("output_dir")
    params["output_dir"] = str(staging_dir(paths))  # lifecycle moves each finished checkpoint into place
    params["scale_rewards"] = effective_scale_rewards(config)
    kl_loss_type = config.training_parameters.kl_loss_type
    if kl_loss_type is not None:  # TRL's KL is k3; verl's estimator name says which k3 gradient (config.KL_LOSS_TYPES)
        params.setdefault("use_bias_correction_kl", KL_LOSS_TYPES[kl_loss_type])
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):
        if params.get(old) is not None:  # transformers 5 names; the old ones are deprecated aliases
            params.setdefault(new, params.pop(old))
    params.setdefault("activation_checkpointing", True)  # TRL's default, under its current name
    params.setdefault("dataloader_pin_memory", cuda_available())  # pinned memory only helps copies to a GPU
    params.setdefault("save_strategy", "steps")
    params.setdefault("logging_first_step", True)
    params.setdefault("disable_tqdm", False)
    params.setdefault("data_seed", params["seed"])
    if is_distributed() and not cuda_available():
        params.setdefault("use_cpu", True)  # else transformers ignores the process group on CPU: N separate runs
    generation_kwargs = dict(params.get("generation_kwargs") or {})
    stop_kwargs = stop_generation_kwargs(
        config.training_parameters.model_stop_sequences, bool(params.get("use_vllm")), eos_token_id
    )
    pad_token_id = stop_kwargs.pop("pad_token_id", None)
    generation_kwargs.update(stop_kwargs)
    if pad_token_id is not None:
        generation_kwargs.setdefault("pad_token_id", pad_token_id)
    if generation_kwargs:
        params["generation_kwargs"] = generation_kwargs
    if has_eval:
        params.setdefault("eval_strategy", "steps")
        params.setdefault("eval_steps", params["save_steps"])  # every eval has a checkpoint to call best
        params.setdefault("metric_for_best_model", "eval_reward")
        params.setdefault("num_generations_eval", 1)
        params.setdefault("per_device_eval_batch_size", max(1, params["per_device_train_batch_size"] // params["num_generations"]))
    if params.get("report_to") == "wandb" or "wandb" in (params.get("report_to") or []):
        params.setdefault("run_name", paths.root.name)
        params.setdefault("log_completions", True)  # a table of prompts, completions and rewards in wandb
    return params


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

    from .grpo_args import build_grpo_config
    from .json_columns import encode_rows, json_columns

    tokenizer = loaded.tokenizer
    model_dtype = str(loaded.model.dtype).removeprefix("torch.")
    args = build_grpo_config(config, paths, bool(eval_rows), eos_token_id=tokenizer.eos_token_id,
                             model_dtype=model_dtype, engine_kwargs=loaded.grpo_kwargs)
    aggregation = (config.training_parameters.model_extra or {}).get("multi_objective_aggregation", "sum_then_normalize")
    as_json = json_columns(train_rows + eval_rows)  # list and object columns travel as JSON text ...
    reward_function.json_columns = as_json  # ... and the reward decodes them
    trainer = GRPOTrainer(
        model=loaded.model,
        reward_funcs=[with_advantage_metrics(reward_function, args.scale_rewards, aggregation)],
        args=args,
        train_dataset=Dataset.from_list(encode_rows(train_rows, as_json)),
        eval_dataset=Dataset.from_list(encode_rows(eval_rows, as_json)) if eval_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    lifecycle = make_lifecycle_callback(
        paths, config.training_parameters.save_total_limit, args.metric_for_best_model if eval_rows else None,
        args.greater_is_better if args.greater_is_better is not None else True,
        round_steps=generation_round_steps(config),
    )
    trainer.add_callback(lifecycle)
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
            lifecycle.on_save(args, trainer.state, trainer.control)
    result = TrainResult(trainer.state.global_step, time.monotonic() - started, stopped_early,
                         interrupted=bool(lifecycle.stop_requested), stop_signal=lifecycle.stop_requested)
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

