"""The GRPO node, start to finish: config -> data -> rewards -> model -> GRPO -> adapter and examples.

GRPO samples `num_generations` completions per prompt, scores each with your rewards, and pushes the
LoRA weights towards the completions that scored above their group's mean. Launch it with
`python run_augmentoolkit.py` (see super_config.yaml) or directly:
`python run_augmentoolkit.py --node grpo-rl-pipeline --config path/to/config.yaml`.

The node's folders follow these stages: config/ (the schema, reading files), data/ (sampling rows into
prompts), rewards/ (the registry, built-ins, the judge, combining and scaling), trainer/ (TRL's arguments,
backends, training), run/ (the run directory, checkpoints, stopping, what is written); plan.py prints the
plan, distributed.py holds every rule for several processes, reward_functions.py is yours to edit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from generation.errors import UserInputError

from .config.files import load_config, naming_the_file
from .config.redaction import redact_secrets
from .config.schema import ConfigError, GRPOPipelineConfig
from .data.sampling import dataset_directories, sample_datasets
from .data.truncation import PromptTokens, fit_prompts_to_length
from .distributed import (
    distributed_problem, is_distributed, is_main_process, run_on_main, single_gpu_only_problem, world_size,
)
from .plan import describe_plan
from .rewards.columns import check_columns_read
from .rewards.combined import CombinedReward
from .rewards.plan import RewardPlan, resolve_rewards
from .run.directory import check_output_dir_outside_data, prepare_run_directory, release_run_lock
from .run.files import JsonlAppender, RunPaths, write_resolved_config
from .run.records import BatchLog, HighScoringSaver, SamplePrinter, fan_out
from .run.reporting import configure_reporting, make_metrics_callback, write_summary
from .run.stop import EXIT_FINISHED, exit_status
from .trainer.backends import load_model, select_backend
from .trainer.backends.base import four_bit_problem
from .trainer.backends.unsloth_backend import unsloth_source_problem
from .trainer.batching import check_checkpoints_align, fit_batch_to_groups, generation_round_steps, planned_steps
from .trainer.grpo_args import build_grpo_config, effective_scale_rewards
from .trainer.training import train


@dataclass
class RunOutcome:
    """What a run did, for the caller (and tests)."""

    paths: Optional[RunPaths]
    steps: int = 0
    first_window_reward: Optional[float] = None
    last_window_reward: Optional[float] = None
    exit_status: int = EXIT_FINISHED  # run/stop.py exit_status: 0 finished, 1 stopped early, 130 Ctrl-C

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

    # 1. Config: validated in full before anything heavy happens; then what depends on this launch (the number
    #    of processes, the machine): the batch fitted to whole prompt groups, what N processes or no GPU cannot do.
    config = load_config(config_path, overrides)
    seed = config.training_parameters.seed
    random.seed(seed)
    processes = world_size()
    with naming_the_file(config_path):
        batch_note = fit_batch_to_groups(config.training_parameters, processes)
        check_checkpoints_align(config.training_parameters, processes)
        for problem in (distributed_problem(config), config.model.load_in_4bit and four_bit_problem()):
            if problem:
                raise ConfigError(problem)
        backend = select_backend(config.model.backend,
                                 source_problem=unsloth_source_problem(config) or single_gpu_only_problem())

    # 2. Data: sampled first (cheap), so a bad file fails fast.
    data = sample_datasets(config.datasets, config.dataset_settings, seed=seed, base_dir=base_dir)
    paths = RunPaths(base_dir / config.training_parameters.output_dir)
    with naming_the_file(config_path):  # the run's own files must never be read as data
        check_output_dir_outside_data(paths.root, dataset_directories(config.datasets, config.dataset_settings, base_dir))
    if not data.train_rows:
        raise ConfigError(f"{config_path}: the datasets give no training rows (each gives its percentage of "
                          "dataset_settings.total_rows, less bad rows and its eval_percentage): raise them")

    # 3. Rewards: every name resolved, every initializer run once, before the model loads. Then TRL's
    #    GRPOConfig is built from ours (this imports TRL), so a value TRL refuses fails here, not after loading.
    with naming_the_file(config_path):
        plan = resolve_rewards(config, config_dir=Path(config_path).parent)
        own_rows, eval_path_rows = data.rows_by_origin()  # a reward reading a column no row has:
        check_columns_read(config, own_rows, plan)
        check_columns_read(config, eval_path_rows, plan, origin="dataset_settings.eval_path")
        build_grpo_config(config, paths, has_eval=bool(data.eval_rows), source=str(config_path))
    print(describe_plan(config, data, plan, processes, notes=(batch_note,)))
    if dry_run:
        print("dry run: config, data, rewards and TRL's GRPOConfig are valid; no model was loaded.")
        return RunOutcome(paths=None)

    # 4. Run directory: resumed when it holds checkpoints of the same run (checked before the model loads).
    #    Only the main process touches the directory; the others wait and learn where to resume from.
    config_snapshot = redact_secrets(config.model_dump(mode="json", exclude_none=True))
    config_snapshot["launch"] = {"world_size": processes}
    round_steps = generation_round_steps(config.training_parameters, processes)
    start = run_on_main(lambda: prepare_run_directory(paths, config_snapshot, fresh, round_steps))
    if start.finished_steps is not None:
        print(f"{paths.root}: this run already finished ({start.finished_steps} steps); nothing to train. "
              "Use --fresh to start over, or raise training_parameters.max_steps to train further.")
        release_run_lock(paths)
        return RunOutcome(paths, start.finished_steps)
    resume_from = start.resume_from

    # 5. Model: the backend loads it and wraps it with LoRA.
    loaded = load_model(config, backend)
    why = f" ({single_gpu_only_problem()})" if is_distributed() and config.model.backend == "auto" else ""
    print(f"backend: {loaded.backend}; generation: {loaded.generation_path}; processes: {processes}{why}")

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
    steps = planned_steps(config.training_parameters, len(data.train_rows), processes)
    reward_function, callbacks = build_reward_and_callbacks(config, plan, paths, steps)

    # 8. Train, then save the final adapter with its tokenizer.
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
    first, last = write_summary(paths, result.steps, status)
    release_run_lock(paths)
    return RunOutcome(paths, result.steps, first, last, status)


def build_reward_and_callbacks(config: GRPOPipelineConfig, plan: RewardPlan, paths: RunPaths,
                               steps: int = 0) -> tuple[Any, list]:
    """The combined reward TRL calls, with the high-scoring saver, batch log and sample printer attached."""
    every = config.training_parameters.sample_every or max(1, (steps or config.training_parameters.max_steps) // 5)
    listeners = [SamplePrinter(every=every)]
    if config.reward.dynamic_sampling is None:  # with it, trainer/judged_rounds.py writes which rows each step trained on
        listeners.append(BatchLog(JsonlAppender(paths.root / "batches.jsonl")))
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
        scale_rewards=effective_scale_rewards(config),
        aggregation=(config.training_parameters.model_extra or {}).get("multi_objective_aggregation", "sum_then_normalize"),
        slow_notice_s=config.reward.slow_notice_s,
    )
    callbacks = [make_metrics_callback(JsonlAppender(paths.metrics), reward_function.pop_pending_metrics)]
    return reward_function, callbacks
