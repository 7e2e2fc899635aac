"""Several processes on CPU (gloo): real 2-process runs of the tiny model through the real launchers.

What must hold with N processes: every step once in metrics.jsonl, every completion of every rank once in
the high-scoring file and batches.jsonl, complete checkpoints, the same after kill -9 and a rerun, and an
LLM judge that sees no more concurrent requests than the configured (whole-run) limit.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from generation.launch import accelerate_launch_command, check_accelerate_config, resolve_accelerate_config, template_names
from generation.errors import UserInputError
from judge_server import JudgeServer, by_response
from test_pipeline_e2e import tiny_config

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 2
PER_DEVICE_BATCH = 4
MAX_STEPS = 4
COMPLETIONS_PER_STEP = PROCESSES * PER_DEVICE_BATCH


def distributed_config(tmp_path: Path, model_dir: Path, **training) -> Path:
    """Save every completion (threshold far below any score), checkpoint every 2 steps."""
    settings = {"max_steps": MAX_STEPS, "save_steps": 2, "save_total_limit": None,
                "per_device_train_batch_size": PER_DEVICE_BATCH, **training}
    path = tiny_config(tmp_path, model_dir, **settings)
    config = yaml.safe_load(path.read_text())
    config["reward"]["score_save_threshold"] = -1e9
    config["dataset_settings"]["total_rows"] = 16
    path.write_text(yaml.safe_dump(config))
    return path


def launch(command: list[str], **popen) -> subprocess.Popen:
    """A command in its own process group (so kill -9 reaches every rank)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **popen)


def node_args(config: Path) -> list[str]:
    return ["--node", "grpo-rl-pipeline", "--config", str(config)]


def num_processes(config: Path, *extra: str) -> list[str]:
    """Our shortcut: `python run_augmentoolkit.py --num-processes 2 ...` (accelerate underneath)."""
    return [sys.executable, str(ROOT / "run_augmentoolkit.py"), "--num-processes", str(PROCESSES), *extra, *node_args(config)]


def torchrun(config: Path) -> list[str]:
    """A user's own launcher: `torchrun --nproc_per_node 2 -- run_augmentoolkit.py ...`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(PROCESSES),
            "--", str(ROOT / "run_augmentoolkit.py"), *node_args(config)]


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def finish(process: subprocess.Popen, timeout: float = 400) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_9_with_every_descendant(process)
        raise
    assert process.returncode == 0, output[-4000:]
    return output


def kill_9_with_every_descendant(process: subprocess.Popen) -> None:
    """SIGKILL the launcher and every rank (torchrun starts its workers in sessions of their own)."""
    import psutil

    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    process.wait()
    psutil.wait_procs(family, timeout=30)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_run_files_exact(run: Path, steps: int) -> None:
    """Each step once per file; every completion of both ranks exactly once; checkpoints complete."""
    train_logs = [m for m in jsonl(run / "metrics.jsonl") if "loss" in m or "reward" in m and "eval_reward" not in m]
    assert [m["step"] for m in train_logs] == list(range(1, steps + 1))
    examples = jsonl(run / "high_scoring_examples.jsonl")
    assert collections.Counter(e["step"] for e in examples) == {step: COMPLETIONS_PER_STEP for step in range(1, steps + 1)}
    batches = jsonl(run / "batches.jsonl")
    assert [b["step"] for b in batches] == list(range(1, steps + 1))
    prompts_per_step = COMPLETIONS_PER_STEP // 4  # num_generations 4
    assert all(len(b["sources"]) == prompts_per_step for b in batches)
    for checkpoint in sorted((run / "checkpoints").glob("checkpoint-*")):
        names = {p.name for p in checkpoint.iterdir()}
        assert {"adapter_model.safetensors", "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"} <= names, names
    assert not list((run / "checkpoints").glob(".staging/checkpoint-*"))  # every staged checkpoint was published
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert yaml.safe_load((run / "config.resolved.yaml").read_text())["launch"] == {"world_size": PROCESSES}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_model_dir) -> tuple[Path, str]:
    tmp_path = tmp_path_factory.mktemp("two_processes")
    output = finish(launch(num_processes(distributed_config(tmp_path, tiny_model_dir))))
    return tmp_path / "run", output


def test_num_processes_runs_two_ranks_and_writes_each_row_once(two_process_run):
    run, output = two_process_run
    assert_run_files_exact(run, MAX_STEPS)
    assert "accelerate.commands.launch" in output  # the command a user could type is printed
    assert output.count("=== GRPO run plan ===") == 1  # only rank 0 prints
    assert "processes: 2 (Unsloth trains on one GPU" in output  # backend auto says why it is TRL


def test_kill_9_of_the_whole_launch_then_rerun_resumes_exactly(tmp_path, tiny_model_dir, two_process_run):
    config = distributed_config(tmp_path, tiny_model_dir)
    run = tmp_path / "run"
    process = launch(torchrun(config))
    deadline = time.monotonic() + 300
    while not (run / "checkpoints" / "checkpoint-2").is_dir():
        assert process.poll() is None, process.stdout.read()[-4000:]
        if time.monotonic() > deadline:
            kill_9_with_every_descendant(process)
            raise AssertionError("checkpoint-2 did not appear")
        time.sleep(0.2)
    kill_9_with_every_descendant(process)
    assert not (run / "final").exists()

    output = finish(launch(torchrun(config)))
    assert "resuming from" in output
    assert_run_files_exact(run, MAX_STEPS)
    # the same rows per step as the uninterrupted run (same seed, same number of processes)
    uninterrupted, _ = two_process_run
    names = lambda batches: [[Path(s).name for s in b["sources"]] for b in batches]  # noqa: E731
    assert names(jsonl(run / "batches.jsonl")) == names(jsonl(uninterrupted / "batches.jsonl"))


def test_resuming_with_another_number_of_processes_is_refused_before_the_model_loads(two_process_run):
    run, _ = two_process_run
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run_augmentoolkit.py"), "--node", "grpo-rl-pipeline", "--config",
         str(run.parent / "config.yaml")], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "launch.world_size: 2 -> 1" in completed.stderr


def test_a_judge_shared_by_two_processes_stays_within_the_global_concurrency(tmp_path, tiny_model_dir):
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump([
        {"role": "system", "content": "You grade answers."},
        {"role": "user", "content": "Question: {input_text}\nAnswer:\n{output_text}\nGrade as <quality>N</quality>."},
    ]))
    config_path = distributed_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2)
    config = yaml.safe_load(config_path.read_text())
    with JudgeServer(by_response(lambda text: {"quality": 1 + len(text) % 10}), latency=0.2) as server:
        config["datasets"][0]["reward_funcs"] = [{
            "name": "generic_llm_reward", "system_prompt_path": str(tmp_path / "prompt.yaml"),
            "eval_llm_name": "loopback-judge", "eval_llm_base_url": server.base_url, "eval_llm_api_key": "sk-loopback",
            "cache_path": str(tmp_path / "judge_cache.sqlite"), "max_concurrency": 2, "timeout": 10,
            "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}],
        }]
        config_path.write_text(yaml.safe_dump(config))
        finish(launch(num_processes(config_path)))
        calls, most_at_once, requests = server.calls, server.max_in_flight, list(server.requests)
    steps = [m for m in jsonl(tmp_path / "run" / "metrics.jsonl") if "judge/generic_llm_reward/calls" in m]
    assert len(steps) == 2
    assert 1 <= most_at_once <= 2  # 2 for the whole run: one slot per process
    # the counters are the step's totals over both ranks, as the server saw them: every completion of both
    # ranks judged once (sent, or answered from the cache for a repeated completion)
    assert all(m["judge/generic_llm_reward/calls"] + m["judge/generic_llm_reward/cache_hits"] == COMPLETIONS_PER_STEP
               for m in steps)
    assert calls == sum(m["judge/generic_llm_reward/calls"] for m in steps)
    sent_tokens = sum(sum(len(str(message["content"])) for message in body["messages"]) // 4 for body in requests)
    assert sum(m["judge/generic_llm_reward/prompt_tokens"] for m in steps) == sent_tokens
    assert all(m["rewards/generic_llm_reward/none_count"] == 0 for m in steps)
    # means and stds over the whole step's completions (every completion is saved), as one process logs them
    examples = jsonl(tmp_path / "run" / "high_scoring_examples.jsonl")
    for m in steps:
        scores = [e["scores"]["generic_llm_reward"] for e in examples if e["step"] == m["step"]]
        assert len(scores) == COMPLETIONS_PER_STEP
        mean = sum(scores) / len(scores)
        assert m["rewards/generic_llm_reward/mean"] == pytest.approx(mean)
        assert m["rewards/generic_llm_reward/std"] == pytest.approx((sum((x - mean) ** 2 for x in scores) / len(scores)) ** 0.5)


def test_a_judge_failing_on_one_process_stops_both_at_the_same_step_with_one_checkpoint(tmp_path, tiny_model_dir):
    config = distributed_config(tmp_path, tiny_model_dir)
    edit = yaml.safe_load(config.read_text())
    edit["datasets"][0]["reward_funcs"] = [{"name": "test_judge_fails_on_rank", "rank": 1, "step": 2}]
    config.write_text(yaml.safe_dump(edit))
    command = torchrun(config)
    command[command.index(str(ROOT / "run_augmentoolkit.py"))] = str(ROOT / "tests" / "run_with_test_rewards.py")
    process = launch(command)
    try:
        output, _ = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:  # one rank waiting forever for the other: the defect this test is about
        kill_9_with_every_descendant(process)
        raise
    assert process.returncode != 0, output[-3000:]
    assert "judge on rank 1 gave up" in output and "run stopped early" in output
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run / "checkpoints" / "checkpoint-1").iterdir()}
    assert [b["step"] for b in jsonl(run / "batches.jsonl")] == [1]  # step 2 was never scored to the end
    assert json.loads((run / "summary.json").read_text())["exit_status"] == 1
    assert not (run / "final").exists()


def test_templates_are_valid_accelerate_configs():
    from accelerate.commands.config.config_args import load_config_from_file

    assert {"ddp", "zero2", "zero3_offload", "fsdp"} <= set(template_names())
    for name in template_names():
        path = resolve_accelerate_config(name)
        load_config_from_file(str(path))  # accelerate's own reader accepts every key
    assert check_accelerate_config(resolve_accelerate_config("ddp"), has_cuda=False) == "MULTI_GPU"
    with pytest.raises(UserInputError, match="needs NVIDIA GPUs"):
        check_accelerate_config(resolve_accelerate_config("zero2"), has_cuda=False)
    with pytest.raises(UserInputError, match="neither a template"):
        resolve_accelerate_config("zero9")
    command = accelerate_launch_command(4, resolve_accelerate_config("ddp"), ROOT / "run_augmentoolkit.py", ["--dry-run"])
    assert command[command.index("--num_processes") + 1] == "4" and command[-1] == "--dry-run"


@pytest.mark.parametrize("arguments, message", [
    (["--num-processes", "2", "--distributed", "no_such_template"], "neither a template"),
    (["--num-processes", "2", "--distributed", "zero2"], "needs NVIDIA GPUs"),
    (["--distributed", "ddp"], "--distributed goes with --num-processes"),
])
def test_bad_launch_flags_exit_2_with_one_message(arguments, message):
    completed = subprocess.run([sys.executable, str(ROOT / "run_augmentoolkit.py"), *arguments, "--dry-run"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert message in completed.stderr and "Traceback" not in completed.stderr


@pytest.mark.skipif(gpu_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("template", ["zero2", "fsdp"])
def test_sharded_training_on_two_gpus(tmp_path, tiny_model_dir, template):
    pytest.importorskip("deepspeed") if template == "zero2" else None
    config = distributed_config(tmp_path, tiny_model_dir)
    finish(launch(num_processes(config, "--distributed", template)))
    assert_run_files_exact(tmp_path / "run", MAX_STEPS)


def config_for(**sections):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config

    return validate_config({"model": {"base_model_name": "m", **sections.get("model", {})},
                            "training_parameters": sections.get("training_parameters", {}),
                            "datasets": [{"path": "d.jsonl"}]})


def test_what_several_processes_cannot_do_is_caught_before_the_model_loads(monkeypatch):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.distributed import distributed_problem

    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed_problem(config_for()) is None
    assert "does not divide the 4 processes" in distributed_problem(
        config_for(training_parameters={"vllm_tensor_parallel_size": 3}, model={"use_vllm": "on"}))
    assert distributed_problem(config_for(training_parameters={"vllm_tensor_parallel_size": 2}, model={"use_vllm": "on"})) is None
    assert "trains on one GPU" in distributed_problem(config_for(model={"backend": "unsloth"}))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed_problem(config_for(model={"backend": "unsloth"})) is None


def test_judge_limits_are_shared_out_between_the_processes():
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.judge.client import Limits

    share = Limits(max_concurrency=8, requests_per_minute=600, tokens_per_minute=None).per_process(2)
    assert (share.max_concurrency, share.requests_per_minute, share.tokens_per_minute) == (4, 300, None)
    assert Limits(max_concurrency=3).per_process(2).max_concurrency == 1  # never more than the whole-run limit
    with pytest.raises(ValueError, match="below the 4 processes"):
        Limits(max_concurrency=2).per_process(4)


def test_ctrl_c_of_a_launch_stops_every_rank_with_a_checkpoint(tmp_path, tiny_model_dir):
    config = distributed_config(tmp_path, tiny_model_dir, max_steps=40, save_steps=20)
    edit = yaml.safe_load(config.read_text())
    edit["datasets"][0]["reward_funcs"].append({"name": "test_slow_brevity", "seconds": 0.5})
    config.write_text(yaml.safe_dump(edit))
    command = [sys.executable, str(ROOT / "tests" / "run_with_test_rewards.py"), "--num-processes", str(PROCESSES),
               *node_args(config)]
    process = launch(command)
    run = tmp_path / "run"
    deadline = time.monotonic() + 300
    while not (run / "batches.jsonl").exists() or len(jsonl(run / "batches.jsonl")) < 2:
        assert process.poll() is None and time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    try:
        output, _ = process.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        kill_9_with_every_descendant(process)
        raise
    assert process.returncode in (130, 143), output[-3000:]
    saved = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
    assert saved and saved[-1] < 40
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run / "checkpoints" / f"checkpoint-{saved[-1]}").iterdir()}
    assert not (run / "final").exists()
    assert [b["step"] for b in jsonl(run / "batches.jsonl")] == list(range(1, saved[-1] + 1))


def test_the_printed_launch_command_masks_a_key_given_with_set(tmp_path):
    from test_cli_errors import judge_entry, make_project

    secret = "sk-live-on-the-command-line-456"
    config = make_project(tmp_path, reward=judge_entry(tmp_path))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run_augmentoolkit.py"), "--num-processes", str(PROCESSES), *node_args(config),
         "--set", f"datasets.0.reward_funcs.0.eval_llm_api_key={secret}", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    launching = next(line for line in completed.stdout.splitlines() if line.startswith("launching:"))
    assert "--set datasets.0.reward_funcs.0.eval_llm_api_key=***" in launching
    assert secret not in output  # nor anything the ranks print


KEY_PROBE = """
import hashlib, os


def key_probe(api_key):
    \"\"\"A factory run once per rank at start-up: records what reached it and this process's own command line.\"\"\"
    with open(os.path.join(os.path.dirname(__file__), "probe_" + os.environ.get("RANK", "x")), "w") as handle:
        handle.write(hashlib.sha256(api_key.encode()).hexdigest() + "\\n")
        handle.write(open("/proc/self/cmdline").read().replace("\\0", " "))
    return lambda completions, **kwargs: [0.0] * len(completions)
"""


def test_a_key_given_with_set_reaches_every_rank_but_no_rank_command_line(tmp_path):
    """`ps` shows every user each process's arguments: the launcher hands secret --set values over the environment."""
    import doctest
    import hashlib

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config import redaction

    assert doctest.testmod(redaction).failed == 0
    from test_cli_errors import make_project

    secret = "sk-live-on-the-command-line-789"
    (tmp_path / "key_probe_module.py").write_text(KEY_PROBE)
    config = make_project(tmp_path, reward={"name": "key_probe_module.key_probe", "api_key": "placeholder"})
    completed = subprocess.run(
        [sys.executable, str(ROOT / "run_augmentoolkit.py"), "--num-processes", str(PROCESSES), *node_args(config),
         "--set", f"datasets.0.reward_funcs.0.api_key={secret}", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    probes = sorted(tmp_path.glob("probe_*"))
    assert [p.name for p in probes] == ["probe_0", "probe_1"]
    for probe in probes:
        digest, command_line = probe.read_text().split("\n", 1)
        assert digest == hashlib.sha256(secret.encode()).hexdigest()  # the key reached this rank
        assert "run_augmentoolkit.py" in command_line and "--dry-run" in command_line
        assert secret not in command_line and "api_key" not in command_line


def processes_running_with(text: str) -> list[str]:
    """Command lines of the live processes that mention `text` (a test's own config path)."""
    import psutil

    found = []
    for member in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if member.info["status"] != psutil.STATUS_ZOMBIE and text in " ".join(member.info["cmdline"] or []):
                found.append(" ".join(member.info["cmdline"]))
    return found


def slow_judge_config(tmp_path: Path, model_dir: Path, base_url: str, **training) -> Path:
    """distributed_config whose steps wait on a judge (1 call at a time per rank), so a step takes seconds."""
    (tmp_path / "prompt.yaml").write_text(yaml.safe_dump([
        {"role": "user", "content": "Answer:\n{output_text}\nGrade as <quality>N</quality>."}]))
    path = distributed_config(tmp_path, model_dir, **training)
    config = yaml.safe_load(path.read_text())
    config["datasets"][0]["reward_funcs"] = [{
        "name": "generic_llm_reward", "system_prompt_path": str(tmp_path / "prompt.yaml"),
        "eval_llm_name": "loopback-judge", "eval_llm_base_url": base_url, "eval_llm_api_key": "sk-loopback",
        "cache": False, "max_concurrency": 2, "timeout": 30,
        "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}],
    }]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("to", ["the launcher", "every process"])
def test_sigterm_stops_every_rank_with_a_checkpoint(tmp_path, tiny_model_dir, to):
    """`kill PID` (docker stop, a process manager) signals the launcher alone; Slurm's scancel or systemd
    signal every process, so a rank gets it twice (directly and from the agent), and so does the agent."""
    import psutil

    with JudgeServer(by_response(lambda text: {"quality": 1 + len(text) % 10}), latency=0.5) as server:
        config = slow_judge_config(tmp_path, tiny_model_dir, server.base_url, max_steps=100, save_steps=50)
        process = launch(num_processes(config))
        run = tmp_path / "run"
        deadline = time.monotonic() + 300
        while not (run / "batches.jsonl").exists() or len(jsonl(run / "batches.jsonl")) < 1:
            assert process.poll() is None and time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.2)
        launcher = psutil.Process(process.pid)
        launcher.send_signal(signal.SIGTERM)
        if to == "every process":  # a moment later, inside the step (4 judge calls of 0.5 s on each rank)
            family = launcher.children(recursive=True)
            time.sleep(0.7)
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=200)
        except subprocess.TimeoutExpired:
            kill_9_with_every_descendant(process)
            raise
    assert process.returncode == 143, output[-3000:]
    assert processes_running_with(str(config)) == []  # no rank, no accelerate left training on its own
    saved = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*"))
    assert saved and saved[-1] < 50, saved  # the checkpoint the signal asked for, not a periodic one
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run / "checkpoints" / f"checkpoint-{saved[-1]}").iterdir()}
    assert not (run / "final").exists()
    assert json.loads((run / "summary.json").read_text())["exit_status"] == 143
    assert [b["step"] for b in jsonl(run / "batches.jsonl")] == list(range(1, saved[-1] + 1))


def test_normalize_then_sum_sees_each_prompt_group_whole_when_it_is_split_over_the_processes(tmp_path, tiny_model_dir):
    """2 completions per process, 4 per prompt: every group is split over both ranks (issue 22, GDPO)."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.post_processors import normalize_then_sum

    config_path = distributed_config(tmp_path, tiny_model_dir, max_steps=2, save_steps=2, per_device_train_batch_size=2)
    config = yaml.safe_load(config_path.read_text())
    config["reward"]["combination_function"] = "normalize_then_sum"
    config_path.write_text(yaml.safe_dump(config))
    output = finish(launch(num_processes(config_path)))
    assert "TRL scale_rewards 'batch'" in output and "combination: Each reward standardised" in output
    examples = jsonl(tmp_path / "run" / "high_scoring_examples.jsonl")
    labels = [entry["name"] for entry in config["datasets"][0]["reward_funcs"]]
    weights = [entry.get("weight", 1.0) for entry in config["datasets"][0]["reward_funcs"]]
    for step in (1, 2):
        rows = [e for e in examples if e["step"] == step]
        assert len(rows) == 4  # one prompt, its 4 completions: 2 from each rank
        groups = [json.dumps(e["messages"][:-1]) for e in rows]
        expected = normalize_then_sum([[e["scores"][label] for label in labels] for e in rows], [weights] * 4, groups)
        assert [e["scores"]["combined"] for e in rows] == pytest.approx(expected)
