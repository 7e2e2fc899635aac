"""A run directory you can trust: one regression test per defect a careful tester found (issue 10, items 1-7).

Best eval kept across a resume, a lock against a second run, a finished run trains nothing, a dead attempt's
rows dropped, --fresh / output_dir safety, generation rounds and resume, reward settings that may change.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.directory import acquire_run_lock, release_run_lock
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.batching import generation_round_steps
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import RunPaths
from generation.errors import UserInputError
from test_lifecycle import lifecycle_config, start_run, step_lines, wait_for
from test_pipeline_e2e import tiny_config

import run_augmentoolkit

ROOT = Path(__file__).resolve().parents[1]


def edit(config: Path, change) -> Path:
    data = yaml.safe_load(config.read_text())
    change(data)
    config.write_text(yaml.safe_dump(data))
    return config


def set_training(**values):
    return lambda data: data["training_parameters"].update(values)


def cli(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python run_augmentoolkit.py ARGUMENTS` run in this process (its main, without the interpreter's start-up):
    the exit status it returns and what it printed. An exception escaping main fails the test."""
    out, err, previous = io.StringIO(), io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = run_augmentoolkit.main(list(arguments))
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["run_augmentoolkit.py", *arguments], status, out.getvalue(), err.getvalue())


def train_step_lines(run: Path) -> list[int]:
    return [m["step"] for m in step_lines(run / "metrics.jsonl") if "rewards/combined/mean" in m]


# 1. ---------------------------------------------------------------------------------- best across resume
def test_a_resumed_run_keeps_the_best_eval_of_before_the_resume(tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2)
    edit(config, lambda data: data["datasets"][0].update(eval_percentage=0.25))
    run_grpo_pipeline(config)
    run = tmp_path / "run"
    before = json.loads((run / "best.json").read_text())
    assert before["step"] == 2
    # pretend the eval before the stop was excellent: no later (worse) eval may replace it
    (run / "best.json").write_text(json.dumps({**before, "value": 1e9}))
    adapter = (run / "best" / "adapter_model.safetensors").read_bytes()

    run_grpo_pipeline(edit(config, set_training(max_steps=4)))
    after = json.loads((run / "best.json").read_text())
    assert after["step"] == 2 and after["value"] == 1e9
    assert (run / "best" / "adapter_model.safetensors").read_bytes() == adapter
    assert [m["step"] for m in step_lines(run / "metrics.jsonl") if "eval_reward" in m] == [2, 4]


# 2. -------------------------------------------------------------------------------------------- the lock
def test_a_second_run_on_the_same_directory_is_refused_naming_the_holder(tmp_path, tiny_model_dir):
    config = lifecycle_config(tmp_path, tiny_model_dir, "run")
    first = start_run(config)
    try:
        wait_for(tmp_path / "run" / "config.resolved.yaml", first)
        second = start_run(config)  # the same command line, started while the first one trains
        output, _ = second.communicate(timeout=300)
        assert second.returncode == 2, output[-2000:]
        assert "in use by another run" in output and "Traceback" not in output
        assert f"pid {first.pid}" in output
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the OS released the lock with the killed process: the next run may take it
    acquire_run_lock(RunPaths(tmp_path / "run"))
    release_run_lock(RunPaths(tmp_path / "run"))


# 3. --------------------------------------------------------------------------------- a finished run
def test_rerunning_a_finished_run_trains_nothing(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, max_steps=2)
    run = tmp_path / "run"
    assert run_grpo_pipeline(config).finished
    final = (run / "final" / "adapter_model.safetensors").stat().st_mtime_ns
    metrics = (run / "metrics.jsonl").read_text()
    capsys.readouterr()

    status = run_augmentoolkit.main(["--node", "grpo-rl-pipeline", "--config", str(config)])  # what the CLI runs
    assert status == 0
    assert "already finished (2 steps); nothing to train" in capsys.readouterr().out
    assert (run / "final" / "adapter_model.safetensors").stat().st_mtime_ns == final
    assert (run / "metrics.jsonl").read_text() == metrics
    assert json.loads((run / "summary.json").read_text())["steps"] == 2


def test_a_finished_run_extended_then_killed_resumes_instead_of_passing_for_finished(tmp_path, tiny_model_dir,
                                                                                     capsys):
    """Issue 20, item 1: the earlier attempt's summary (finished, 2 steps) must not describe the longer run."""
    config = edit(lifecycle_config(tmp_path, tiny_model_dir, "run"), set_training(max_steps=2, save_total_limit=None))
    run = tmp_path / "run"
    assert run_grpo_pipeline(config).finished
    assert json.loads((run / "summary.json").read_text())["finished"] is True

    longer = start_run(edit(config, set_training(max_steps=4)))
    wait_for(run / "checkpoints" / "checkpoint-3", longer)
    longer.send_signal(signal.SIGKILL)  # dies like an OOM or a reboot: no summary written
    longer.wait()
    assert not (run / "summary.json").exists()  # the 2-step summary no longer claims the run

    capsys.readouterr()
    assert run_grpo_pipeline(config).finished
    output = capsys.readouterr().out
    assert "resuming from" in output and "already finished" not in output
    assert train_step_lines(run) == [1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


# 4. ---------------------------------------------------------------- an attempt that died before a checkpoint
def test_rows_of_an_attempt_killed_before_its_first_checkpoint_are_dropped(tmp_path, tiny_model_dir):
    config = edit(lifecycle_config(tmp_path, tiny_model_dir, "run"), set_training(max_steps=3, save_steps=3))
    run = tmp_path / "run"
    first = start_run(config)
    wait_for(run / "batches.jsonl", first)  # step 1 scored and logged, no checkpoint yet
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").glob("checkpoint-*"))

    assert run_grpo_pipeline(config).finished
    assert train_step_lines(run) == [1, 2, 3]
    assert [b["step"] for b in step_lines(run / "batches.jsonl")] == [1, 2, 3]
    assert sorted({e["step"] for e in step_lines(run / "high_scoring_examples.jsonl")}) <= [1, 2, 3]
    counts = [e["step"] for e in step_lines(run / "high_scoring_examples.jsonl")]
    assert all(counts.count(step) <= 4 for step in (1, 2, 3))  # at most one batch of 4 completions per step


# 5. ------------------------------------------------------------------------------ --fresh and output_dir
@pytest.mark.parametrize("output_dir, message", [
    (".", "holds the working directory"),
    ("not_a_run", "not a run directory"),
])
def test_fresh_moves_only_a_run_directory(tmp_path, tiny_model_dir, output_dir, message):
    config = edit(tiny_config(tmp_path, tiny_model_dir), set_training(output_dir=output_dir))
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    completed = cli("--node", "grpo-rl-pipeline", "--config", str(config), "--fresh", cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert message in completed.stderr and "Traceback" not in completed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing moved aside


@pytest.mark.parametrize("output_dir, message", [
    (str(ROOT), "holds the project itself"),
    ("a_file/run", "is a file, not a directory"),
    ("a_file", "is a file, not a directory"),
    ("/proc/grpo_run", "cannot create the run directory there"),  # issue 20, item 11
])
def test_an_output_dir_that_cannot_be_a_run_directory_exits_2_before_the_model_loads(tmp_path, tiny_model_dir,
                                                                                     output_dir, message):
    (tmp_path / "a_file").write_text("")
    config = edit(tiny_config(tmp_path, tiny_model_dir), set_training(output_dir=output_dir))
    completed = cli("--node", "grpo-rl-pipeline", "--config", str(config), cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert message in completed.stderr and "Traceback" not in completed.stderr
    assert "backend:" not in completed.stdout  # refused before the model loaded


def test_an_output_dir_inside_a_dataset_directory_is_refused_at_dry_run(tmp_path, tiny_model_dir):
    """Issue 20, item 9: the run's own files would make the dataset directory unreadable as data on a resume."""
    (tmp_path / "data").mkdir()
    config = tiny_config(tmp_path, tiny_model_dir)
    source = Path(yaml.safe_load(config.read_text())["datasets"][0]["path"])
    source.rename(tmp_path / "data" / source.name)
    edit(config, lambda data: (data["datasets"][0].update(path="data"), data["training_parameters"].update(output_dir="data/run")))
    completed = cli("--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run", cwd=tmp_path)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "inside the dataset directory" in completed.stderr and "datasets[0].path" in completed.stderr
    assert "Traceback" not in completed.stderr and not (tmp_path / "data" / "run").exists()
    edit(config, set_training(output_dir="outputs/run"))
    assert cli("--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run", cwd=tmp_path).returncode == 0


# 6. --------------------------------------------------------------------------------- generation rounds
def test_generation_round_length_follows_trl():
    def rounds(**training):
        return generation_round_steps(validate_config({
            "training_parameters": training, "model": {"base_model_name": "m"}, "datasets": [{"path": "d.jsonl"}]
        }).training_parameters, processes=1)

    assert rounds() == 1
    assert rounds(num_iterations=2) == 2
    assert rounds(gradient_accumulation_steps=2) == 1  # steps_per_generation defaults to it
    assert rounds(steps_per_generation=4, gradient_accumulation_steps=2) == 2
    assert rounds(steps_per_generation=3, gradient_accumulation_steps=2) == 3


def test_a_save_step_inside_a_generation_round_is_refused_at_dry_run(tmp_path, tiny_model_dir):
    config = edit(tiny_config(tmp_path, tiny_model_dir), set_training(num_iterations=2, save_steps=3))
    completed = cli("--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run")
    assert completed.returncode == 2
    assert "save_steps 3 is not a multiple of 2" in completed.stderr


def test_a_run_resumed_at_a_round_boundary_trains_on_the_same_rows(tmp_path, tiny_model_dir):
    rows = {}
    for name, lengths in (("straight", [4]), ("resumed", [2, 4])):
        folder = tmp_path / name
        folder.mkdir()
        config = tiny_config(folder, tiny_model_dir, num_iterations=2, save_steps=2)
        for max_steps in lengths:
            run_grpo_pipeline(edit(config, set_training(max_steps=max_steps)))
        rows[name] = [[Path(s).name for s in b["sources"]] for b in step_lines(folder / "run" / "batches.jsonl")]
        assert [b["step"] for b in step_lines(folder / "run" / "batches.jsonl")] == [1, 3]  # one generation per round
    assert rows["resumed"] == rows["straight"]


# 7. ------------------------------------------------------------------------- reward settings on resume
def test_reward_settings_may_change_on_resume_but_data_settings_may_not(tmp_path, tiny_model_dir, capsys):
    config = tiny_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2)
    run_grpo_pipeline(config)

    def fix_reward(data):
        data["datasets"][0]["reward_funcs"][0]["max_words"] = 5  # e.g. a judge's URL fixed after a failure
        data["training_parameters"]["max_steps"] = 3

    outcome = run_grpo_pipeline(edit(config, fix_reward))
    assert outcome.steps == 3
    printed = capsys.readouterr().out
    assert "reward settings changed" in printed and "datasets[0].reward_funcs" in printed
    assert "resuming from" in printed

    edit(config, lambda data: data["datasets"][0].update(system_prompt="Be verbose."))
    with pytest.raises(UserInputError, match=r"other settings \(datasets\)"):
        run_grpo_pipeline(edit(config, set_training(max_steps=4)))
