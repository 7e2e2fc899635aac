"""The reward_model reward: a tiny random LlamaForSequenceClassification scores exactly as TRL scores with a model
reward; bad reward models exit 2 at start-up; the weights load once, on the first call; a real pipeline run."""

from __future__ import annotations

import doctest
import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin import reward_model as rm_module
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.builtin.reward_model import (
    loading_whole,
    reward_model,
    rm_texts,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline import run_grpo_pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.rewards.registry import REWARD_FUNCTIONS
from generation.errors import UserInputError
from test_cli_errors import assert_user_error, make_project, run_cli
from test_pipeline_e2e import tiny_config
from tiny_reward_model import build_tiny_reward_model

SYSTEM = {"role": "system", "content": "Be brief."}
PROMPTS = [[SYSTEM, {"role": "user", "content": "the cat sat?"}],
           [{"role": "user", "content": "one two three four five six seven eight nine ten the dog sat on a mat"}],
           [SYSTEM, {"role": "user", "content": "is it yes"}, {"role": "assistant", "content": "no"},
            {"role": "user", "content": "why?"}]]
COMPLETIONS = ["yes", "the dog sat on a mat one two three four five", "", "no 7 #### 7", "a"]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm"))


@pytest.fixture(scope="module")
def three_label_rm_dir(tmp_path_factory) -> Path:
    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny_rm3"), num_labels=3)


def batch(n: int = len(COMPLETIONS)) -> tuple[list, list]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)], COMPLETIONS[:n]


def direct_scores(folder: Path, prompts: list, completions: list, label: int = 0) -> list[float]:
    """TRL's formula for a model reward, written out with transformers alone (one batch, as TRL does)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    texts = [p + c if isinstance(p, str) else
             tokenizer.apply_chat_template(p + [{"role": "assistant", "content": c}], tokenize=False)
             for p, c in zip(prompts, completions)]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        return model(**inputs).logits[:, label].tolist()


class TestScoring:
    def test_scores_equal_trls_formula_computed_directly(self, rm_dir):
        prompts, completions = batch()
        scores = reward_model(str(rm_dir), batch_size=2)(prompts, completions)  # 3 batches, each padded apart
        assert scores == pytest.approx(direct_scores(rm_dir, prompts, completions), abs=1e-5)
        assert len(set(round(s, 4) for s in scores)) == len(scores)  # the tiny RM tells the texts apart

    def test_texts_are_rendered_with_the_reward_models_own_template(self, rm_dir):
        scorer = reward_model(str(rm_dir))
        assert rm_texts(PROMPTS[:1], ["yes"], scorer.tokenizer) == ["[system] Be brief.\n[user] the cat sat?\n[assistant] yes\n"]

    def test_scores_equal_trls_own_calculate_rewards(self, rm_dir):
        """TRL 1.x's GRPOTrainer._calculate_rewards itself, on a trainer holding only what that method reads."""
        from accelerate.utils import gather  # noqa: F401  (TRL's method gathers; one process: a no-op)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerState
        from trl import GRPOTrainer

        tokenizer = AutoTokenizer.from_pretrained(rm_dir)
        model = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
        model.config.get_text_config().pad_token_id = tokenizer.pad_token_id  # what TRL's __init__ does
        cpu = torch.device("cpu")
        trainer = GRPOTrainer.__new__(GRPOTrainer)
        trainer.__dict__.update(
            accelerator=SimpleNamespace(device=cpu, is_main_process=True), args=SimpleNamespace(device=cpu, report_to=[]),
            is_deepspeed_enabled=False, state=TrainerState(), reward_funcs=[model], reward_processing_classes=[tokenizer],
            reward_func_names=["rm"], chat_template_kwargs={}, environments=None,
        )
        prompts, completions = batch()
        inputs = [{"prompt": p} for p in prompts]
        trl_scores = trainer._calculate_rewards(inputs, prompts, [[{"role": "assistant", "content": c}] for c in completions],
                                                [[1]] * len(prompts))[:, 0].tolist()
        assert reward_model(str(rm_dir), batch_size=2)(prompts, completions) == pytest.approx(trl_scores, abs=1e-5)

    def test_plain_text_prompts_are_prompt_plus_completion(self, rm_dir):
        prompts, completions = ["Q: the cat? A:", "one two"], [" yes", " three"]
        scores = reward_model(str(rm_dir))(prompts, completions)
        assert scores == pytest.approx(direct_scores(rm_dir, prompts, completions), abs=1e-5)

    def test_label_index_and_the_affine_map(self, three_label_rm_dir):
        prompts, completions = batch(3)
        raw = direct_scores(three_label_rm_dir, prompts, completions, label=2)
        assert reward_model(str(three_label_rm_dir), label_index=2)(prompts, completions) == pytest.approx(raw, abs=1e-5)
        mapped = reward_model(str(three_label_rm_dir), label_index=2, normalize={"mean": 1.0, "std": 4.0},
                              scale=0.5, shift=0.5)(prompts, completions)
        assert mapped == pytest.approx([(r - 1.0) / 4.0 * 0.5 + 0.5 for r in raw], abs=1e-5)

    def test_a_tokenizer_without_pad_token_pads_with_eos_as_trl(self, tmp_path):
        folder = build_tiny_reward_model(tmp_path / "rm", pad_token=False, hidden_size=32)
        scorer = reward_model(str(folder), batch_size=5)
        assert scorer.tokenizer.pad_token == scorer.tokenizer.eos_token
        prompts, completions = batch()
        assert scorer(prompts, completions) == pytest.approx(direct_scores(folder, prompts, completions), abs=1e-5)

    def test_weights_load_once_on_the_first_call_in_eval_mode_without_gradients(self, rm_dir):
        scorer = reward_model(str(rm_dir), device="cpu")
        assert scorer.model is None
        first = scorer(*batch(2))
        model = scorer.model
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        assert model.device.type == "cpu" and model.dtype == torch.float32
        assert model.config.pad_token_id == scorer.tokenizer.pad_token_id
        assert scorer(*batch(2)) == first and scorer.model is model

    def test_weird_inputs_and_empty_batches(self, rm_dir):
        scorer = reward_model(str(rm_dir))
        completions = ["", None, "ünïcödé 😀 </think>", "x" * 2000, [{"role": "assistant", "content": "42"}]]
        scores = scorer([PROMPTS[0], "plain string prompt", [], None, PROMPTS[1]], completions, answer=[""] * 5)
        assert len(scores) == 5 and all(isinstance(s, float) and math.isfinite(s) for s in scores)
        assert scorer([], []) == []

    def test_registered_documented_and_doctests(self):
        assert REWARD_FUNCTIONS.get("reward_model") is reward_model
        assert "reward_funcs:" in reward_model.__doc__ and "_calculate_rewards" in reward_model.__doc__
        assert doctest.testmod(rm_module).failed == 0


class TestStartUp:
    @pytest.mark.parametrize("kwargs, fragment", [
        ({"label_index": None}, "has 3 labels: set label_index (0 to 2)"),
        ({"label_index": 3}, "label_index 3 is out of range"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"label_index": 0, "normalize": {"mean": 0.0, "std": 0.0}}, "positive std"),
        ({"label_index": 0, "normalize": {"average": 1.0}}, "normalize takes mean and std, not average"),
        ({"label_index": 0, "device": "gpu-please"}, "device 'gpu-please'"),
    ])
    def test_bad_settings(self, three_label_rm_dir, kwargs, fragment):
        with pytest.raises(ValueError, match="reward_model: ") as error:
            reward_model(str(three_label_rm_dir), **kwargs)
        assert fragment in str(error.value)

    def test_not_a_sequence_classifier(self, tiny_model_dir):
        with pytest.raises(ValueError, match=r"is not a sequence classifier \(architectures: LlamaForCausalLM"):
            reward_model(str(tiny_model_dir))

    def test_missing_model(self, tmp_path):
        with pytest.raises(ValueError, match="cannot read the config of"):
            reward_model(str(tmp_path / "nowhere"))

    def test_no_pad_and_no_eos_token(self, rm_dir, tmp_path):
        from transformers import AutoTokenizer

        folder = Path(shutil.copytree(rm_dir, tmp_path / "rm"))
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.pad_token, tokenizer.eos_token = None, None
        tokenizer.save_pretrained(folder)
        with pytest.raises(ValueError, match="has no pad token and no eos token"):
            reward_model(str(folder))

    @pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
    def test_a_gpu_device_without_a_gpu(self, rm_dir):
        with pytest.raises(ValueError, match="no CUDA GPU is visible"):
            reward_model(str(rm_dir), device="cuda:1")

    def test_the_dry_run_reads_no_weights(self, rm_dir, tmp_path, tiny_model_dir, capsys):
        folder = Path(shutil.copytree(rm_dir, tmp_path / "rm"))
        (folder / "model.safetensors").unlink()  # start-up must not need them
        config = rm_config(tmp_path, tiny_model_dir, folder)
        assert run_grpo_pipeline(config, dry_run=True).paths is None
        assert "reward_model (weight 1)" in capsys.readouterr().out

    def test_a_bad_reward_model_exits_2_before_the_policy_loads(self, tmp_path, tiny_model_dir):
        config = make_project(tmp_path, reward={"name": "reward_model", "model": str(tiny_model_dir)})
        result = run_cli(tmp_path, "--node", "grpo-rl-pipeline", "--config", str(config))  # policy 'm' does not exist
        assert_user_error(result, str(config), "reward 'reward_model'", "is not a sequence classifier")
        assert not (tmp_path / "run").exists()

    def test_the_pipeline_turns_the_refusal_into_a_user_error(self, tmp_path, tiny_model_dir, three_label_rm_dir):
        with pytest.raises(UserInputError, match="set label_index"):
            run_grpo_pipeline(rm_config(tmp_path, tiny_model_dir, three_label_rm_dir), dry_run=True)


def test_loading_whole_switches_off_zero3_and_fsdp_ram_efficient_loading(monkeypatch):
    """The switches only (a ZeRO-3 / FSDP load needs GPUs and DeepSpeed): off inside, restored after."""
    from transformers.integrations import deepspeed as hf_deepspeed

    class Zero3Config:
        def is_zero3(self):
            return True

    alive = Zero3Config()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", None)
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "true")
    hf_deepspeed.set_hf_deepspeed_config(alive)
    assert hf_deepspeed.is_deepspeed_zero3_enabled()
    with loading_whole():
        assert not hf_deepspeed.is_deepspeed_zero3_enabled()
        assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "false"
    assert hf_deepspeed.is_deepspeed_zero3_enabled()
    assert os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"


def rm_config(tmp_path: Path, policy_dir: Path, rm_folder: Path, **training) -> Path:
    """tiny_config (test_pipeline_e2e) with the reward model as the only reward, saving every completion."""
    path = tiny_config(tmp_path, policy_dir, **training)
    config = yaml.safe_load(path.read_text())
    config["datasets"][0]["reward_funcs"] = [{"name": "reward_model", "model": str(rm_folder), "batch_size": 3}]
    config["reward"]["score_save_threshold"] = -1e9
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_pipeline_run_scores_with_the_reward_model(tmp_path, tiny_model_dir, rm_dir):
    outcome = run_grpo_pipeline(rm_config(tmp_path, tiny_model_dir, rm_dir, max_steps=2, save_steps=10))
    assert outcome.steps == 2
    run = tmp_path / "run"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "rewards/reward_model/mean" in line] == [1, 2]
    examples = [json.loads(line) for line in (run / "high_scoring_examples.jsonl").read_text().splitlines()]
    assert len(examples) == 2 * 4  # every completion of both steps
    expected = direct_scores(rm_dir, [e["messages"][:-1] for e in examples], [e["completion"] for e in examples])
    assert [e["scores"]["reward_model"] for e in examples] == pytest.approx(expected, abs=1e-4)


def test_two_processes_each_score_their_own_completions(tmp_path, tiny_model_dir, rm_dir):
    """2 CPU ranks (gloo): each loads the RM and scores its completions; every saved score is the direct one."""
    from test_distributed import COMPLETIONS_PER_STEP, PER_DEVICE_BATCH, finish, launch, num_processes

    config = rm_config(tmp_path, tiny_model_dir, rm_dir, max_steps=1, per_device_train_batch_size=PER_DEVICE_BATCH)
    finish(launch(num_processes(config)))
    examples = [json.loads(line) for line in (tmp_path / "run" / "high_scoring_examples.jsonl").read_text().splitlines()]
    assert len(examples) == COMPLETIONS_PER_STEP  # both ranks' completions
    expected = direct_scores(rm_dir, [e["messages"][:-1] for e in examples], [e["completion"] for e in examples])
    assert [e["scores"]["reward_model"] for e in examples] == pytest.approx(expected, abs=1e-4)
