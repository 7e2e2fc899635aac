"""TRL's GRPOConfig from ours, built before any model loads: the dry run and a real run share the build.

`build_grpo_config` runs in stage 3 of the pipeline, after the schema's torch-free checks. First it checks what
TRL would only trip over after the model has loaded, still without torch: a loss_type (or another TRL_CHOICES
key) TRL does not know, deepspeed without the deepspeed package, a plateau scheduler without eval data. Then
report_to (a transformers integration that is installed), then TRL's own GRPOConfig (this imports TRL and
torch): what it refuses (an unknown optimizer, a negative warmup, ...) becomes a ConfigError naming the config
file and training_parameters.<key>. After the model loads, the training builds it again with the real dtype
and generation engine.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Optional

from generation.registry import did_you_mean

from ..config.schema import KL_LOSS_TYPES, NODE_ONLY_TRAINING_KEYS, ConfigError, GRPOPipelineConfig
from ..distributed import cuda_available, is_distributed
from ..rewards.post_processors import combination_scale_rewards, required_scale_rewards
from ..run.checkpoints import staging_dir
from ..run.files import RunPaths
from .backends.generation import stop_generation_kwargs, vllm_grpo_kwargs, vllm_importable
from .model_loading import resolve_model_source, resolve_torch_dtype

TRL_CHOICES: dict[str, tuple[str, ...]] = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "importance_sampling_level": ("token", "sequence"),
    "scale_rewards": ("group", "batch", "none"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
    "vllm_mode": ("server", "colocate"),
    "vllm_importance_sampling_mode": ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"),
}
"""Pass-through keys whose value TRL only checks when the trainer first uses it (the allowed values are the
ones TRL 1.16's GRPOConfig help text lists; tests/test_config_strictness.py checks them against the installed TRL)."""

REPORTING_PACKAGES = {"azure_ml": "azureml-core", "flyte": "flytekit", "neptune": "neptune", "comet_ml": "comet_ml"}
"""pip names of report_to integrations whose package name differs from the integration's name."""


def effective_scale_rewards(config: GRPOPipelineConfig) -> str:
    """TRL's scale_rewards for this run: what the scaling function needs ('none' for the group normalisers,
    'batch' for reinforce_plus_plus) or the combination function ('batch' for normalize_then_sum), else the
    config's value (default 'group').

    An explicit, conflicting training_parameters.scale_rewards is an error (no double scaling), and so is
    multi_objective_aggregation 'normalize_then_sum' (it ignores scale_rewards) with such a scaling function.
    """
    reward = config.reward
    setting = f"reward.scaling_function '{reward.scaling_function}'"
    required = required_scale_rewards(reward.scaling_function)
    if required is None and combination_scale_rewards(reward.combination_function):
        setting = f"reward.combination_function '{reward.combination_function}'"
        required = combination_scale_rewards(reward.combination_function)
    extra = config.training_parameters.model_extra or {}
    explicit = extra.get("scale_rewards")
    explicit = {True: "group", False: "none"}.get(explicit, explicit)
    if required is None:
        return explicit or "group"
    what = "already normalises each prompt group" if required == "none" else f"needs TRL's scale_rewards '{required}'"
    if explicit not in (None, required):
        raise ConfigError(
            f"{setting} {what}; training_parameters.scale_rewards '{explicit}' would scale "
            f"{'twice' if required == 'none' else 'differently'}: remove it or set it to '{required}'"
        )
    if extra.get("multi_objective_aggregation") == "normalize_then_sum" and required != "none":
        raise ConfigError(
            f"training_parameters.multi_objective_aggregation 'normalize_then_sum' ignores scale_rewards, which "
            f"{setting} needs: keep the default 'sum_then_normalize'"
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
    params["output_dir"] = str(staging_dir(paths))  # run/checkpoints.py moves each finished checkpoint into place
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


def build_grpo_config(
    config: GRPOPipelineConfig,
    paths: RunPaths,
    has_eval: bool,
    source: str = "<config>",
    eos_token_id: Optional[int] = None,
    model_dtype: Optional[str] = None,
    engine_kwargs: Optional[dict] = None,
) -> Any:
    """trl.GRPOConfig for this run; every value TRL refuses is a ConfigError naming `source` and the key.

    Before the model loads (the dry run, and a real run's check), `model_dtype` and `engine_kwargs` are left
    out and predicted from the config and this machine; after it loads, the training passes the real ones.
    Builds nothing on disk.
    """
    training = config.training_parameters
    user_keys = set(training.model_fields_set) | set(training.model_extra or {})
    check_settings(training.model_dump(), user_keys, has_eval, source)  # torch-free: these fail fast
    check_report_to(training.report_to, source)  # asks transformers (imports torch)
    params = grpo_config_kwargs(
        config, paths, has_eval, eos_token_id, model_dtype or expected_model_dtype(config),
        engine_kwargs if engine_kwargs is not None else expected_engine_kwargs(config),
    )
    from trl import GRPOConfig

    try:
        return GRPOConfig(**params)
    except (ValueError, TypeError, ImportError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        key = key_named_in(message, params, user_keys)
        where = f"training_parameters.{key}" if key else "training_parameters"
        raise ConfigError(f"{source}: {where}: {message} (refused by TRL's GRPOConfig)") from None


def check_settings(values: dict, user_keys: set[str], has_eval: bool, source: str) -> None:
    """What TRL would only trip over later: TRL_CHOICES values, deepspeed without its package, a plateau
    scheduler without eval data."""
    for key, allowed in TRL_CHOICES.items():
        value = values.get(key)
        if key == "scale_rewards" and isinstance(value, bool):
            value = "group" if value else "none"  # TRL reads True / False so
        if key in user_keys and value is not None and value not in allowed:
            raise ConfigError(f"{source}: training_parameters.{key}: {value!r} is not one of {', '.join(allowed)}"
                              f"{did_you_mean(str(value), list(allowed))}")
    deepspeed = values.get("deepspeed")
    if deepspeed:
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError(f"{source}: training_parameters.deepspeed: the deepspeed package is not installed "
                              "(bash linux.sh --deepspeed, or pip install -r requirements-deepspeed.txt), "
                              "or remove the key")
        if isinstance(deepspeed, str) and not Path(deepspeed).is_file():
            raise ConfigError(f"{source}: training_parameters.deepspeed: config file not found: {deepspeed}")
    if values.get("lr_scheduler_type") == "reduce_lr_on_plateau" and not has_eval:
        raise ConfigError(f"{source}: training_parameters.lr_scheduler_type: reduce_lr_on_plateau lowers the rate when "
                          "the eval metric stops improving, and this run has no eval data: give a dataset an "
                          "eval_percentage or set dataset_settings.eval_path, or choose another scheduler")


def check_report_to(report_to: Any, source: str) -> None:
    """Every report_to integration is one transformers knows and finds installed."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [name for name in names if name not in ("none", "all")]
    available = set(get_available_reporting_integrations()) if names else set()
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(f"{source}: training_parameters.report_to: '{name}' is not a reporting integration"
                              f"{did_you_mean(name, sorted(INTEGRATION_TO_CALLBACK))}; known: none, "
                              f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
        if name not in available:
            package = REPORTING_PACKAGES.get(name, name)
            raise ConfigError(f"{source}: training_parameters.report_to: '{name}' is not installed: pip install "
                              f"{package}, or take it out of report_to")


def key_named_in(message: str, params: dict, user_keys: set[str]) -> Optional[str]:
    """The training_parameters key a TRL error message is about: the first it names, else one whose value it quotes."""
    named = [(match.start(), key) for key in user_keys
             for match in [re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message)] if match]
    if named:
        return min(named)[1]
    for key in sorted(user_keys):
        value = params.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) and \
                re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w.])", message):
            return key
    return None


def expected_model_dtype(config: GRPOPipelineConfig) -> str:
    """The dtype the loaded model will have: float32 without a CUDA GPU, else model.dtype resolved."""
    import torch

    if not torch.cuda.is_available():
        return "float32"
    return str(resolve_torch_dtype(config.model.dtype)).removeprefix("torch.")


def expected_engine_kwargs(config: GRPOPipelineConfig) -> dict:
    """The generation engine's GRPOConfig arguments as the backend will choose them (vLLM or not)."""
    import torch

    if resolve_model_source(config.model.base_model_name, config.model.gguf_file).gguf_file:
        return {"use_vllm": False}  # vLLM cannot load GGUF files
    return vllm_grpo_kwargs(config, vllm_importable(), torch.cuda.is_available())
