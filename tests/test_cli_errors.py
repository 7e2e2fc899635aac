"""Every config mistake through the real CLI: exit 2, one `error:` line naming the file and the key, no
traceback, nothing written; the value errors TRL finds are found by --dry-run, before any model loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(ROOT / "run_augmentoolkit.py")
ROWS = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"}, {"role": "assistant", "content": str(2 * i)}]}
        for i in range(8)]


def make_project(tmp_path: Path, training: dict | None = None, reward: dict | None = None, **sections) -> Path:
    """A config + data file in tmp_path; returns the config path."""
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = {
        "training_parameters": {"output_dir": "run", "num_generations": 2, "per_device_train_batch_size": 4,
                                "max_steps": 2, **(training or {})},
        "model": {"base_model_name": "m", "backend": "trl"},
        "datasets": [{"path": "rows.jsonl", "reward_funcs": [reward or {"name": "max_length", "max_words": 5}]}],
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_cli(tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, RUNNER, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, env={**os.environ, **(env or {})})


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 2, no traceback, the message starts with `error:` and holds every fragment; returns stderr."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    message = result.stderr[result.stderr.index("error:"):]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def dry_run(tmp_path: Path, config: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_cli(tmp_path, "--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run", *extra, env=env)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"the dry run wrote {set(after) - set(before)}"
    return result


# ---------------------------------------------------------------- values TRL checks: found by the dry run


# The cases, and one TRL refuses itself (optim: it needs TRL imported, which takes seconds).
@pytest.mark.parametrize("training, fragments", [
    ({"loss_type": "bogus"}, ["training_parameters.loss_type", "'bogus' is not one of", "dapo"]),  # TRL: at step 1
    ({"deepspeed": {"zero_optimization": {"stage": 2}}}, ["training_parameters.deepspeed", "package is not installed"]),
    ({"lr_scheduler_type": "reduce_lr_on_plateau"}, ["training_parameters.lr_scheduler_type", "no eval data"]),
    ({"report_to": "mlflow"}, ["training_parameters.report_to", "'mlflow' is not installed", "pip install mlflow"]),
    ({"optim": "adamw_bogus"}, ["training_parameters.optim", "adamw_bogus is not a valid OptimizerNames"]),
])
def test_pass_through_values_trl_refuses_fail_the_dry_run(tmp_path, training, fragments):
    config = make_project(tmp_path, training)
    assert_user_error(dry_run(tmp_path, config), str(config), *fragments)


def test_the_dry_run_builds_trls_config_honouring_epochs_and_yaml_booleans(tmp_path):
    config = make_project(tmp_path, {"loss_type": "dr_grpo", "num_train_epochs": 2})
    text = config.read_text().replace("  max_steps: 2\n", "").replace("backend: trl", "backend: trl\n  use_vllm: off")
    config.write_text(text)  # `off` unquoted: YAML 1.1 reads False
    result = dry_run(tmp_path, config)
    assert result.returncode == 0, result.stderr
    assert "TRL's GRPOConfig are valid" in result.stdout
    assert "max_steps=-1 (num_train_epochs: about 8 steps)" in result.stdout  # 8 rows x 2 completions / 4 x 2 epochs


# ------------------------------------------------------- schema checks: before torch, named with their key


@pytest.mark.parametrize("training, fragments", [
    ({"per_device_train_batch_size": 6, "num_generations": 4},
     ["training_parameters.per_device_train_batch_size", "multiple of num_generations 4", "e.g. per_device_train_batch_size 8"]),
    ({"num_generations": 1}, ["training_parameters.num_generations: must be at least 2"]),
    ({"max_completion_length": 0}, ["training_parameters.max_completion_length: must be at least 1"]),
    ({"temperature": 0}, ["training_parameters.temperature: must be a number > 0"]),
    ({"chat_template": "llama"}, ["training_parameters.chat_template", "did you mean 'llama3'"]),
    ({"chat_template": "{{ 'same text for every prompt' }}"}, ["training_parameters.chat_template", "never reads `messages`"]),
])
def test_settings_that_can_never_train_exit_2_before_torch(tmp_path, training, fragments):
    config = make_project(tmp_path, training)
    code = f"import runpy, sys; sys.argv = {[RUNNER, '--node', 'grpo-rl-pipeline', '--config', str(config), '--dry-run']!r}\n" \
           "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nfinally:\n    print('TORCH=%s' % ('torch' in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert_user_error(result, str(config), *fragments)
    assert "TORCH=False" in result.stdout


@pytest.mark.parametrize("reward, fragment", [
    ({"scaling_function": "clip", "scaling_kwargs": {"low": 1, "high": 0}},
     "reward: scaling function 'clip': clip: low (1.0) is above high (0.0)"),
    ({"scaling_function": "grpo_passk", "scaling_kwargs": {"norm_by_std": "no"}},
     "reward: scaling function 'grpo_passk': norm_by_std: Input should be a valid boolean"),
])
def test_scaling_kwargs_the_function_refuses_fail_the_dry_run(tmp_path, reward, fragment):
    config = make_project(tmp_path)
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "reward": reward}))
    assert_user_error(dry_run(tmp_path, config), str(config), fragment)


def test_zero_training_rows_fail_the_dry_run(tmp_path):
    config = make_project(tmp_path)
    result = dry_run(tmp_path, config, "--set", "datasets.0.percentage=0")
    assert_user_error(result, str(config), "the datasets give no training rows")


def test_the_world_size_counts_in_the_generation_batch(tmp_path):
    config = make_project(tmp_path, {"per_device_train_batch_size": 2, "num_generations": 4})
    result = dry_run(tmp_path, config, env={"WORLD_SIZE": "3"})
    assert_user_error(result, "per_device_train_batch_size 2 x 3 process(es)", "= 6 completions")


@pytest.mark.parametrize("content, fragment", [
    (b"", "the file is empty"),
    (b"model: {base_model_name: \xff\xfe}\n", "not UTF-8 text (byte 0xff"),
    (b"- just\n- a list\n", "expected a mapping of sections"),
])
def test_unreadable_config_files(tmp_path, content, fragment):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert_user_error(dry_run(tmp_path, config), str(config), fragment)


@pytest.mark.parametrize("override, fragment", [
    ("datasets.3.path=x.jsonl", "--set datasets.3.path: datasets is a list of 1 item(s): use an index from 0 to 0"),
    ("datasets.first.path=x", "datasets is a list of 1 item(s)"),
    ("training_parameters.max_steps.x=1", "training_parameters.max_steps is a plain value (2), not a section"),
    ("model.lora_rank=[1,", "--set model.lora_rank: the value is not valid YAML"),
    ("training_parameters.=3", "empty key in the path"),
])
def test_bad_set_arguments(tmp_path, override, fragment):
    assert_user_error(dry_run(tmp_path, make_project(tmp_path), "--set", override), fragment)


# ------------------------------------------------------------------------------------------ super_config


@pytest.mark.parametrize("super_config, fragment", [
    ({"path_aliases": ["a", "b"], "pipeline_order": [{"node": "grpo-rl-pipeline", "config": "config.yaml"}]},
     "path_aliases must map alias names to folders"),
    ({"pipeline_order": [{"node": ["grpo-rl-pipeline"], "config": "config.yaml"}]},
     "pipeline_order[0].node: expected a node name"),
    ({"pipeline_order": [{"node": "grpo-rl-pipeline", "config": "config.yaml", "parameters": [1]}]},
     "pipeline_order[0].parameters: expected a mapping"),
    # a run setting beside node/config, or among the node's parameters: exit 2 naming it and what belongs there
    ({"pipeline_order": [{"node": "grpo-rl-pipeline", "config": "config.yaml", "max_steps": 5}]},
     "pipeline_order[0]: unknown key(s) ['max_steps']; a step holds node, config and optionally parameters"),
    ({"pipeline_order": [{"node": "grpo-rl-pipeline", "config": "config.yaml", "parameters": {"max_steps": 5}}]},
     "pipeline_order[0].parameters: node 'grpo-rl-pipeline' takes no 'max_steps'; its parameters: base_dir "
     "(settings of the run, such as training_parameters.max_steps, go in its config file or --set)"),
])
def test_super_config_of_the_wrong_shape(tmp_path, super_config, fragment):
    path = tmp_path / "super.yaml"
    path.write_text(yaml.safe_dump(super_config))
    assert_user_error(run_cli(tmp_path, "--super-config", str(path), "--dry-run"), str(path), fragment)


def test_a_super_config_steps_parameters_reach_its_node(tmp_path):
    # parameters: {base_dir: data}: the config's relative paths (rows.jsonl, output_dir) resolve in data/
    (tmp_path / "data").mkdir()
    config = make_project(tmp_path / "data")
    path = tmp_path / "super.yaml"
    for parameters, status in (({"base_dir": str(tmp_path / "data")}, 0), ({}, 2)):
        path.write_text(yaml.safe_dump({"pipeline_order": [
            {"node": "grpo-rl-pipeline", "config": str(config), "parameters": parameters}]}))
        result = run_cli(tmp_path, "--super-config", str(path), "--dry-run")
        assert result.returncode == status, result.stderr[-2000:]
    assert "rows.jsonl" in result.stderr  # without base_dir the data file is looked for in the working directory


def test_non_utf8_super_config(tmp_path):
    path = tmp_path / "super.yaml"
    path.write_bytes(b"pipeline_order: []\n# \xe9\n")
    assert_user_error(run_cli(tmp_path, "--super-config", str(path)), str(path), "not UTF-8 text")


# ------------------------------------------------------------------------------------------------ judge


JUDGE_PROMPT = [{"role": "user", "content": "{output_text}\nRate it as <quality>N</quality> (1-10)."}]


def judge_entry(tmp_path: Path, **overrides) -> dict:
    (tmp_path / "judge.yaml").write_text(yaml.safe_dump(JUDGE_PROMPT))
    return {"name": "generic_llm_reward", "system_prompt_path": str(tmp_path / "judge.yaml"), "eval_llm_name": "j",
            "eval_llm_base_url": "http://127.0.0.1:8000/v1", "eval_llm_api_key": "sk-test",
            "score_types": [{"name": "quality", "type": "score", "min": 1, "max": 10}], **overrides}


@pytest.mark.parametrize("overrides, fragment", [
    ({"score_types": [{"name": "qualty", "type": "score", "min": 1, "max": 10}]}, "score_types ['qualty'] never appear as a tag"),
    ({"score_types": [{"name": "think", "type": "score", "min": 1, "max": 10}]}, "['think'] are reserved"),
    ({"eval_llm_base_url": "127.0.0.1:8000/v1"}, "not a usable URL"),
    ({"eval_llm_base_url": "htps://api.openai.com/v1"}, "the scheme must be http or https, got 'htps'"),
    ({"eval_llm_base_url": "http://127.0.0.1:99999/v1"}, "not a usable URL (Port out of range"),
    ({"eval_llm_base_url": "local:no-such/judge-model"}, "'no-such/judge-model' is not in the local Hugging Face cache"),
    ({"eval_llm_api_key": "sk-one sk-two"}, "contains spaces or control characters inside it"),
    ({"eval_llm_api_key_env": "sk-proj-Live123"}, "does not look like a variable name (is it the key itself?)"),
    ({"eval_llm_api_key": 12345}, "eval_llm_api_key: Input should be a valid string, got an int (YAML reads unquoted"),
    ({"temperature": "abc"}, "temperature: Input should be a valid number"),
    ({"max_concurrency": 0}, "max_concurrency: Input should be greater than or equal to 1"),
])
def test_judge_mistakes_fail_the_dry_run(tmp_path, overrides, fragment):
    config = make_project(tmp_path, reward=judge_entry(tmp_path, **overrides))
    message = assert_user_error(dry_run(tmp_path, config), str(config), "generic_llm_reward", fragment)
    assert "sk-proj-Live123" not in message and "12345" not in message and message.count("\n") == 1


# ------------------------------------------------------------------------------- secrets on the command line


def test_a_key_given_with_set_never_reaches_wandbs_files(tmp_path, tiny_model_dir):
    from judge_server import JudgeServer, by_response
    from test_judge_e2e import judge_config

    secret = "sk-live-on-the-command-line-123"
    with JudgeServer(by_response(lambda text: {"quality": 7})) as server:
        config = judge_config(tmp_path, tiny_model_dir, server.base_url)
        result = run_cli(tmp_path, "--node", "grpo-rl-pipeline", "--config", str(config),
                         "--set", "training_parameters.max_steps=1", "--set", "training_parameters.report_to=wandb",
                         "--set", f"datasets.0.reward_funcs.1.eval_llm_api_key={secret}",
                         env={"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")})
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.headers[0]["authorization"] == f"Bearer {secret}"  # the judge got the real key
    records = list((tmp_path / "wandb").rglob("*.wandb"))  # an offline run keeps its metadata (argv) in here
    assert records and b"eval_llm_api_key=***" in records[0].read_bytes()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert secret.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------------------------ cli_utils


def a_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")
    example = {"prompt": [{"role": "user", "content": "q"}], "completion": "a", "scores": {"combined": 1.0}}
    (run / "high_scoring_examples.jsonl").write_text(json.dumps(example) + "\n")
    (tmp_path / "a_file").write_text("x")
    return run


def run_tool(tmp_path: Path, tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli_utils" / tool), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("tool, args, fragment", [
    ("export_high_scoring.py", ["run", "-o", "a_file/out.jsonl"], "a_file/out.jsonl cannot be written: a_file is a file"),
    ("export_high_scoring.py", ["run", "-o", "run"], "run is a directory: give a file name for the output"),
    ("plot_run.py", ["run", "--out", "a_file/plots"], "a_file/plots cannot be written: a_file is a file"),
    ("plot_run.py", ["run", "--out", "a_file"], "a_file is a file, not a folder"),
])
def test_tools_refuse_an_unusable_output_path(tmp_path, tool, args, fragment):
    a_run(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    message = assert_user_error(run_tool(tmp_path, tool, *args), fragment)
    assert message.count("\n") == 1  # one line
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("tool, broken, args", [
    ("export_high_scoring.py", "high_scoring_examples.jsonl", ["run", "-o", "out.jsonl"]),
    ("compare_runs.py", "config.resolved.yaml", ["run", "run"]),
    ("compare_runs.py", "summary.json", ["run"]),
])
def test_tools_refuse_input_that_is_not_utf8(tmp_path, tool, broken, args):
    run = a_run(tmp_path)
    (run / broken).write_bytes(b'{"steps": 1, "note": "caf\xe9"}\n')
    message = assert_user_error(run_tool(tmp_path, tool, *args), f"run/{broken}: not UTF-8 text (byte 0xe9")
    assert message.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()
