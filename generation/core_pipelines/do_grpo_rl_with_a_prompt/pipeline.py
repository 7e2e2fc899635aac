"""The GRPO node, start to finish: config -> data -> rewards -> model -> GRPO -> adapter and examples.

GRPO samples `num_generations` completions per prompt, scores each with your rewards, and pushes the
LoRA weights towards the completions that scored above their group's mean. Launch it with
`python run_augmentoolkit.py` (see super_config.yaml) or directly:
`python run_augmentoolkit.py --node grpo-rl-pipeline --config path/to/config.yaml`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from generation.errors import UserInputError

from .backends import describe_training_mode, load_model, select_backend
from .backends.unsloth_backend import unsloth_source_problem
from .config import ConfigError, GRPOPipelineConfig, load_config, naming_the_file, redact_secrets
from .data import PromptTokens, SampledData, fit_prompts_to_length, sample_datasets
from .data_plan import describe_data
from .grpo_args import build_grpo_config, planned_steps
from .distributed import (
    distributed_problem, is_distributed, is_main_process, run_on_main, single_gpu_only_problem, world_size,
)
from .lifecycle import check_checkpoints_align, generation_round_steps, prepare_run_directory, release_run_lock
from .reward_columns import check_columns_read
from .rewarding import CombinedReward, RewardPlan, resolve_rewards
from .run_files import JsonlAppender, RunPaths, read_jsonl, write_resolved_config, write_text_atomically
from .run_stop import EXIT_FINISHED, exit_status


@dataclass
class RunOutcome:
    """What a run did, for the caller (and tests)."""

    paths: Optional[RunPaths]
    steps: int = 0
    first_window_reward: Optional[float] = None
    last_window_reward: Optional[float] = None
    exit_status: int = EXIT_FINISHED  # run_stop.exit_status: 0 finished, 1 stopped early, 130 Ctrl-C

    @property
    def finished(self) -> bool:
        return self.exit_status == EXIT_FINISHED


def run_grpo_pipeline(
    config_path: str | Path,
    overrides: Optional[list[str]] = None,
    dry_run: bool = False,
    fresh: bool = False,
    base_dir: Optional[Path] = None,
) -> RunOutcome:
    """Run the GRPO node for one config file.

    `dry_run` stops after printing the plan (no model loaded). A run directory with checkpoints is resumed
    unless `fresh` (then the old directory is moved aside).
    """
    base_dir = Path(base_dir or Path.cwd())

    # 1. Config: validated in full before anything heavy happens.
    config = load_config(config_path, overrides)
    seed = config.training_parameters.seed
    random.seed(seed)
    with naming_the_file(config_path):
        problem = distributed_problem(config)  # several processes: what they cannot do (unsloth, vLLM TP)
        if problem:
            raise ConfigError(problem)
        check_checkpoints_align(config)
        backend = select_backend(config.model.backend,
                                 source_problem=unsloth_source_problem(config) or single_gpu_only_problem())

    # 2. Data: sampled first (cheap), so a bad file fails fast.
    data = sample_datasets(config.datasets, config.dataset_settings, seed=seed, base_dir=base_dir)
    if not data.train_rows:
        raise ConfigError(f"{config_path}: the datasets give no training rows (each gives its percentage of "
                          "dataset_settings.total_rows, less bad rows and its eval_percentage): raise them")

    # 3. Rewards: every name resolved, every initializer run once, before the model loads. Then TRL's
    #    GRPOConfig is built from ours (this imports TRL), so a value TRL refuses fails here, not after loading.
    paths = RunPaths(base_dir / config.training_parameters.output_dir)
    with naming_the_file(config_path):
        plan = resolve_rewards(config)
        check_columns_read(config, data.train_rows + data.eval_rows, plan)  # a reward reading a column no row has
        build_grpo_config(config, paths, has_eval=bool(data.eval_rows), source=str(config_path))
    print(describe_plan(config, data, plan))
    if dry_run:
        print("dry run: config, data, rewards and TRL's GRPOConfig are valid; no model was loaded.")
        return RunOutcome(paths=None)

    # 4. Run directory: resumed when it holds checkpoints of the same run (checked before the model loads).
    #    Only the main process touches the directory; the others wait and learn where to resume from.
    config_snapshot = redact_secrets(config.model_dump(mode="json", exclude_none=True))
    config_snapshot["launch"] = {"world_size": world_size()}
    start = run_on_main(lambda: prepare_run_directory(paths, config_snapshot, fresh, generation_round_steps(config)))
    if start.finished_steps is not None:
        print(f"{paths.root}: this run already finished ({start.finished_steps} steps); nothing to train. "
              "Use --fresh to start over, or raise training_parameters.max_steps to train further.")
        release_run_lock(paths)
        return RunOutcome(paths, start.finished_steps)
    resume_from = start.resume_from

    # 5. Model: the backend loads it and wraps it with LoRA.
    loaded = load_model(config, backend)
    why = f" ({single_gpu_only_problem()})" if is_distributed() and config.model.backend == "auto" else ""
    print(f"backend: {loaded.backend}; generation: {loaded.generation_path}; processes: {world_size()}{why}")

    # 6. Prompts that are too long for max_prompt_length lose early turns (or are dropped).
    data = fit_prompts_to_length(
        data,
        PromptTokens.from_tokenizer(loaded.tokenizer),
        config.training_parameters.max_prompt_length,
        config.dataset_settings.effective_truncation,
    )
    print(data.report.summary())
    if not data.train_rows:
        raise UserInputError("no training rows left after sampling and prompt-length filtering")

    # 7. Run files, the reward function with its listeners, callbacks.
    if is_main_process():
        write_resolved_config(paths, config_snapshot)
    configure_reporting(config, paths)
    reward_function, callbacks = build_reward_and_callbacks(config, plan, paths, planned_steps(config, len(data.train_rows)))

    # 8. Train, then save the final adapter with its tokenizer.
    from .training import train

    result = train(config, paths, loaded, reward_function, data.train_rows, data.eval_rows, callbacks, resume_from)
    if result.stopped_early:
        print(f"run stopped early: {result.stopped_early}")
        if result.steps:
            print(f"a checkpoint of step {result.steps} was saved: fix the cause and run the same command to resume.")
    if result.interrupted:
        print(f"stopped at step {result.steps}; a checkpoint was saved. Run the same command again to resume.")

    # 9. Summary and plots: did the reward go up?
    status = exit_status(result.stopped_early, result.stop_signal)
    if not is_main_process():
        return RunOutcome(paths, result.steps, exit_status=status)
    outcome = summarize_run(paths, result.steps, status)
    release_run_lock(paths)
    return outcome


def build_reward_and_callbacks(config: GRPOPipelineConfig, plan: RewardPlan, paths: RunPaths,
                               steps: int = 0) -> tuple[Any, list]:
    """The combined reward TRL calls, with the high-scoring saver and sample printer attached."""
    from .callbacks import BatchLog, HighScoringSaver, SamplePrinter, fan_out, make_metrics_callback

    every = config.training_parameters.sample_every or max(1, (steps or config.training_parameters.max_steps) // 5)
    listeners = [
        SamplePrinter(every=every),
        BatchLog(JsonlAppender(paths.root / "batches.jsonl")),
    ]
    if config.reward.high_scoring_save_path and config.reward.score_save_threshold is not None:
        appender = JsonlAppender(paths.root / config.reward.high_scoring_save_path)
        listeners.append(HighScoringSaver(appender, config.reward.score_save_threshold))
    reward_function = CombinedReward(
        plan=plan,
        combination_function=config.reward.combination_function,
        scaling_function=config.reward.scaling_function,
        scaling_kwargs=config.reward.scaling_kwargs,
        stop_sequences=config.training_parameters.model_stop_sequences,
        on_scored=fan_out(*listeners),
        slow_notice_s=config.reward.slow_notice_s,
    )
    callbacks = [make_metrics_callback(JsonlAppender(paths.metrics), reward_function.pop_pending_metrics)]
    return reward_function, callbacks


def configure_reporting(config: GRPOPipelineConfig, paths: RunPaths) -> None:
    """wandb online when a key is configured, offline otherwise; its files go into the run directory."""
    import os

    report_to = config.training_parameters.report_to
    targets = [report_to] if isinstance(report_to, str) else list(report_to)
    if "wandb" in targets:
        os.environ.setdefault("WANDB_DIR", str(paths.root))
        if not (os.environ.get("WANDB_API_KEY") or _has_wandb_login()):
            os.environ.setdefault("WANDB_MODE", "offline")
            print("wandb: no API key configured, logging offline (sync later with `wandb sync`)")
    if "tensorboard" in targets:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise UserInputError("report_to includes tensorboard, but it is not installed: pip install tensorboard")


def _has_wandb_login() -> bool:
    import netrc
    import os

    try:
        return netrc.netrc(os.path.expanduser("~/.netrc")).authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def summarize_run(paths: RunPaths, steps: int, status: int = EXIT_FINISHED) -> RunOutcome:
    """Write summary.json and plots; print the first vs last window of the mean reward.

    `status` is the run's exit status (run_stop.py): 0 when it finished.
    """
    import json

    from .callbacks import reward_trend

    first, last = reward_trend(read_jsonl(paths.metrics))
    finished = status == EXIT_FINISHED
    summary = {"steps": steps, "finished": finished, "exit_status": status,
               "first_window_reward": first, "last_window_reward": last}
    best = paths.root / "best.json"
    if best.exists():
        info = json.loads(best.read_text())
        summary.update(best_checkpoint=info.get("checkpoint"), best_metric=info.get("metric"), best_value=info.get("value"))
    write_text_atomically(paths.summary, json.dumps(summary, indent=2))
    if first is not None:
        print(f"mean reward: first window {first:.3f} -> last window {last:.3f}")
    try:
        from cli_utils.plot_run import plot_run

        print(f"plots: {', '.join(str(p.name) for p in plot_run(paths.root))} in {paths.plots}")
    except Exception as error:  # plots are a convenience: never fail a finished run over them
        print(f"plots skipped: {error}")
    if finished:
        what = "adapter" if (paths.final_adapter / "adapter_config.json").exists() else "model"  # full fine-tune
        print(f"{what} saved to {paths.final_adapter}")
    return RunOutcome(paths, steps, first, last, status)


def describe_plan(config: GRPOPipelineConfig, data: SampledData, plan: RewardPlan) -> str:
    """The run plan: rows per dataset, rewards per dataset, the effective training parameters."""
    from .training import effective_scale_rewards

    tp = config.training_parameters
    extras = ", ".join(f"{k}={v}" for k, v in sorted((tp.model_extra or {}).items()))
    lines = [
        "=== GRPO run plan ===",
        f"model: {config.model.base_model_name} (backend {config.model.backend}; {describe_training_mode(config.model)})",
        "data:",
        describe_data(config, data, plan),
        f"rewards (combination '{config.reward.combination_function}', scaling '{config.reward.scaling_function}', "
        f"TRL scale_rewards '{effective_scale_rewards(config)}'):",
        plan.describe(),
        f"training: max_steps={tp.max_steps}"
        + (f" (num_train_epochs: about {planned_steps(config, len(data.train_rows))} steps)" if tp.max_steps < 0 else "")
        + f" lr={tp.learning_rate} batch={tp.per_device_train_batch_size} "
        f"num_generations={tp.num_generations} max_completion_length={tp.max_completion_length} "
        f"max_prompt_length={tp.max_prompt_length} seed={tp.seed}" + (f" {extras}" if extras else ""),
        f"output: {tp.output_dir}",
    ]
    return "\n".join(lines)
