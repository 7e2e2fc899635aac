"""Each training mode on the tiny real model, checked by what lands in the run directory.

- full fine-tuning (model.apply_lora false): final/ and best/ hold the whole model, which changed and reloads;
  the run resumes from its checkpoint; the memory estimate is printed;
- every advantage estimator: the advantages TRL really trained on (its completions parquet) equal what
  advantage_metrics computes from the rewards our estimator handed it, and the logged advantages/* agree;
- QLoRA on a machine without CUDA / bitsandbytes: refused at --dry-run, naming model.load_in_4bit;
- kl_loss_type: mapped onto TRL's k3, other verl values refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.advantage_metrics import trl_advantages
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.post_processors import required_scale_rewards
from generation.errors import UserInputError
from test_pipeline_e2e import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


# ------------------------------------------------------------------------------------- full fine-tuning


def test_full_fine_tuning_saves_changed_weights_resumes_and_keeps_best(tmp_path, tiny_model_dir, capsys):
    import shutil

    config = tiny_config(tmp_path, tiny_model_dir, max_steps=3)
    overrides = ["model.apply_lora=false", "datasets.0.eval_percentage=0.25", "dataset_settings.total_rows=12"]
    outcome = run_grpo_pipeline(config, overrides)
    run = tmp_path / "run"
    assert outcome.steps == 3
    assert "full fine-tuning:" in capsys.readouterr().out  # the memory estimate

    # final/: the whole model + tokenizer, no adapter; every kind of weight trained, and it reloads
    final = run / "final"
    assert not (final / "adapter_config.json").exists()
    assert (final / "config.json").is_file() and (final / "tokenizer_config.json").is_file()
    trained, base = weights(final), weights(tiny_model_dir)
    assert trained.keys() == base.keys()
    changed = [name for name in base if not (trained[name] == base[name]).all()]
    assert "model.embed_tokens.weight" in changed and any("mlp" in name for name in changed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(final)
    assert AutoTokenizer.from_pretrained(final).chat_template

    # best/: the evaluated checkpoint's whole model, without optimizer state
    best = json.loads((run / "best.json").read_text())
    assert best["checkpoint"] in ("checkpoint-2", "checkpoint-3") and best["metric"] == "eval_reward"
    assert (run / "best" / "model.safetensors").is_file() and not (run / "best" / "optimizer.pt").exists()

    # resume: as if the run had stopped after checkpoint-2; step 3 again gives the same full weights
    shutil.rmtree(final)
    shutil.rmtree(run / "checkpoints" / "checkpoint-3")
    outcome = run_grpo_pipeline(config, overrides)
    assert outcome.steps == 3 and "resuming from" in capsys.readouterr().out
    assert [line["step"] for line in read_metrics(run) if "reward" in line] == [1, 2, 3]
    resumed, at_two = weights(final), weights(run / "checkpoints" / "checkpoint-2")
    assert all((resumed[name] == trained[name]).all() for name in trained)
    assert any(not (resumed[name] == at_two[name]).all() for name in trained)


# ------------------------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_plus_plus", "reinforce_plus_plus_baseline",
                                       "grpo_passk"])
def test_each_estimator_trains_on_the_advantages_we_log(tmp_path, tiny_model_dir, estimator):
    import pandas

    config = tiny_config(tmp_path, tiny_model_dir, max_steps=2, log_completions=True)
    run_grpo_pipeline(config, [f"reward.scaling_function={estimator}"])
    run = tmp_path / "run"
    assert (run / "final" / "adapter_model.safetensors").is_file()
    snapshot = yaml.safe_load((run / "config.resolved.yaml").read_text())
    assert snapshot["reward"]["scaling_function"] == estimator

    metrics = {line["step"]: line for line in read_metrics(run) if "advantages/mean" in line}
    assert sorted(metrics) == [1, 2]
    scale_rewards = required_scale_rewards(estimator)
    for step in (1, 2):
        table = pandas.read_parquet(run / "checkpoints" / ".staging" / "completions" / f"completions_{step:05d}.parquet")
        handed = table["training_reward"].tolist()  # what our estimator returned to TRL
        groups = [i // 4 for i in range(len(handed))]  # num_generations 4: TRL's groups are consecutive
        expected = trl_advantages(handed, groups, scale_rewards)
        assert table["advantage"].tolist() == pytest.approx(expected, abs=1e-5)
        mean = sum(expected) / len(expected)
        assert metrics[step]["advantages/mean"] == pytest.approx(mean, abs=1e-6)
        assert metrics[step]["advantages/max"] == pytest.approx(max(expected), abs=1e-6)
        assert 0.0 <= metrics[step]["advantages/zero_group_share"] <= 1.0


# ------------------------------------------------------------------------------------- QLoRA and KL


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run_augmentoolkit.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_qlora_on_a_machine_without_cuda_is_refused_at_dry_run(tmp_path, tiny_model_dir):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.base import four_bit_problem

    if four_bit_problem() is None:
        pytest.skip("this machine can load 4-bit models")
    config = tiny_config(tmp_path, tiny_model_dir)
    done = run_cli(["--node", "grpo-rl-pipeline", "--config", str(config), "--dry-run",
                    "--set", "model.load_in_4bit=true"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert "model.load_in_4bit" in done.stderr and "CUDA" in done.stderr
    assert str(config) in done.stderr and "Traceback" not in done.stderr


def test_full_fine_tuning_in_4bit_is_refused(monkeypatch):
    with pytest.raises(UserInputError, match="apply_lora false.*load_in_4bit"):
        validate_config({"model": {"base_model_name": "m", "apply_lora": False, "load_in_4bit": True},
                         "datasets": [{"path": "d.jsonl"}]})


def kl_config(**training):
    return validate_config({"model": {"base_model_name": "m"}, "training_parameters": training,
                            "datasets": [{"path": "d.jsonl"}]})


@pytest.mark.parametrize("kl_loss_type, bias_correction", [("low_var_kl", False), ("k3", False),
                                                           ("low_var_kl+", True), ("k3+", True), (None, None)])
def test_kl_loss_type_maps_onto_trls_k3(tmp_path, kl_loss_type, bias_correction):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import RunPaths
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import grpo_config_kwargs

    config = kl_config(kl_loss_type=kl_loss_type, kl_loss_coef=0.01, entropy_coeff=0.001)
    kwargs = grpo_config_kwargs(config, RunPaths(tmp_path), False, 0, "float32")
    assert kwargs.get("use_bias_correction_kl") == bias_correction
    assert "kl_loss_type" not in kwargs
    assert (kwargs["beta"], kwargs["entropy_coef"]) == (0.01, 0.001)  # verl's names, TRL's fields


def test_kl_loss_types_trl_cannot_compute_are_refused():
    with pytest.raises(UserInputError, match="training_parameters.kl_loss_type.*supported values are low_var_kl, k3"):
        kl_config(kl_loss_type="mse")
    with pytest.raises(UserInputError, match="use_bias_correction_kl"):
        kl_config(kl_loss_type="low_var_kl", use_bias_correction_kl=True)


@pytest.mark.parametrize("weight", [{}, {"beta": 0.0}, {"kl_loss_coef": 0}])
def test_kl_loss_type_without_a_kl_weight_is_refused_naming_both_keys(weight):
    # TRL's default beta is 0.0: no KL term and no `kl` metric, so the estimator named would do nothing
    with pytest.raises(UserInputError, match="training_parameters: kl_loss_type 'low_var_kl' has no effect without "
                                             "a KL weight: set beta \\(or its verl name kl_loss_coef\\) above 0"):
        kl_config(kl_loss_type="low_var_kl", **weight)
    assert kl_config(kl_loss_type="low_var_kl", kl_loss_coef=0.001).training_parameters.kl_loss_type == "low_var_kl"


def test_our_arguments_use_transformers_current_names(tmp_path):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import RunPaths
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import grpo_config_kwargs

    kwargs = grpo_config_kwargs(kl_config(gradient_checkpointing=False), RunPaths(tmp_path), False, 0, "float32")
    assert kwargs["activation_checkpointing"] is False and "gradient_checkpointing" not in kwargs
    default = grpo_config_kwargs(kl_config(), RunPaths(tmp_path), False, 0, "float32")
    assert default["activation_checkpointing"] is True  # TRL's default, under the current name
