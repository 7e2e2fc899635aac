"""Config strictness in-process: TRL's GRPOConfig built from ours (what it refuses, what we refuse for it), the
batch rule, epochs, chat templates, YAML booleans, secrets (config.py, grpo_args.py, chat_templates.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.batching import fit_batch_to_groups, generation_batch_problem
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.redaction import redact_argv, redact_secrets
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.grpo_args import (
    TRL_CHOICES,
    build_grpo_config,
    key_named_in,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.batching import planned_steps
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import CHATML_TEMPLATE
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import RunPaths

BASE = {"model": {"base_model_name": "m"}, "datasets": [{"path": "d.jsonl"}],
        "training_parameters": {"num_generations": 2, "per_device_train_batch_size": 4, "max_steps": 3}}


def config_with(**training):
    return validate_config({**BASE, "training_parameters": {**BASE["training_parameters"], **training}})


def build(tmp_path, has_eval=False, **training):
    return build_grpo_config(config_with(**training), RunPaths(tmp_path / "run"), has_eval=has_eval, source="c.yaml")


# ------------------------------------------------------------------------------- TRL's GRPOConfig, built


class TestGRPOConfigBuild:
    def test_a_valid_config_builds_and_writes_nothing(self, tmp_path):
        args = build(tmp_path, loss_type="dr_grpo", beta=0.02)
        assert (args.loss_type, args.beta, args.num_generations, args.max_steps) == ("dr_grpo", 0.02, 2, 3)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("training, message", [
        ({"optim": "adamw_bogus"}, "c.yaml: training_parameters.optim: adamw_bogus is not a valid OptimizerNames"),
        ({"warmup_steps": -3}, "training_parameters.warmup_steps: Got warmup_steps = -3"),
        ({"eval_strategy": "sometimes"}, "training_parameters.eval_strategy: sometimes is not a valid IntervalStrategy"),
        ({"auto_find_batch_size": True}, "training_parameters.auto_find_batch_size: auto_find_batch_size is not supported"),
    ])
    def test_what_trl_refuses_names_the_key(self, tmp_path, training, message):
        with pytest.raises(ConfigError, match="refused by TRL's GRPOConfig") as error:
            build(tmp_path, **training)
        assert message in str(error.value)

    def test_reduce_lr_on_plateau_without_eval_data_says_how_to_get_some(self, tmp_path):
        with pytest.raises(ConfigError, match="training_parameters.lr_scheduler_type: .*no eval data: give a dataset "
                                              "an eval_percentage or set dataset_settings.eval_path"):
            build(tmp_path, lr_scheduler_type="reduce_lr_on_plateau")

    def test_reduce_lr_on_plateau_is_fine_with_eval_data(self, tmp_path):
        assert build(tmp_path, has_eval=True, lr_scheduler_type="reduce_lr_on_plateau").eval_strategy == "steps"

    @pytest.mark.parametrize("key", sorted(TRL_CHOICES))
    def test_values_trl_reads_only_at_the_first_step_are_checked_here(self, tmp_path, key):
        with pytest.raises(ConfigError, match=rf"training_parameters.{key}: 'bogus' is not one of"):
            build(tmp_path, **{key: "bogus"})
        build(tmp_path, **{key: TRL_CHOICES[key][0]})

    @pytest.mark.parametrize("key", sorted(TRL_CHOICES))
    def test_the_allowed_values_are_the_ones_the_installed_trl_documents(self, key):
        import trl.trainer.grpo_config as source

        tree = ast.parse(Path(source.__file__).read_text(encoding="utf-8"))
        help_text = next(
            " ".join(ast.literal_eval(kw.value.values[0]) if isinstance(kw.value, ast.Dict) else "" for kw in
                     item.value.keywords if kw.arg == "metadata")
            for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == "GRPOConfig"
            for item in node.body if isinstance(item, ast.AnnAssign) and getattr(item.target, "id", None) == key
        )
        for value in TRL_CHOICES[key]:
            assert value in help_text, (key, value)

    def test_report_to_integrations_must_exist_and_be_installed(self, tmp_path):
        with pytest.raises(ConfigError, match=r"report_to: 'mlflow' is not installed: pip install mlflow"):
            build(tmp_path, report_to="mlflow")
        with pytest.raises(ConfigError, match=r"report_to: 'tensorbord' is not a reporting integration \(did you mean "
                                              r"'tensorboard'\?\)"):
            build(tmp_path, report_to=["tensorbord"])
        assert build(tmp_path, report_to="none").report_to in ([], "none", ["none"])

    def test_deepspeed_needs_its_package(self, tmp_path):
        with pytest.raises(ConfigError, match="training_parameters.deepspeed: the deepspeed package is not installed"):
            build(tmp_path, deepspeed={"zero_optimization": {"stage": 2}})

    def test_key_named_in_prefers_a_named_key_then_a_quoted_value(self):
        params = {"optim": "adamw_bogus", "lr_scheduler_type": "linear", "seed": 3}
        keys = set(params)
        assert key_named_in("lr_scheduler_type linear requires x", params, keys) == "lr_scheduler_type"
        assert key_named_in("adamw_bogus is not a valid OptimizerNames", params, keys) == "optim"
        assert key_named_in("something else entirely", params, keys) is None


# ---------------------------------------------------------------------------- schema rules, torch-free


class TestGenerationBatch:
    @pytest.mark.parametrize("args, fragment", [
        ((6, 1, 4, None, None, 1), "per_device_train_batch_size: each generation round samples per_device_train_batch_size 6"),
        ((2, 1, 4, None, None, 3), "2 x 3 process(es) x gradient_accumulation_steps 1 = 6 completions"),
        ((2, 1, 4, 3, None, 1), "steps_per_generation 3 = 6"),
        ((2, 1, 4, None, 6, 1), "generation_batch_size 6 completions"),
        ((4, 1, 4, None, 6, 1), "generation_batch_size: 6 must be a multiple of per_device_train_batch_size 4"),
        ((4, 1, 4, 2, 8, 1), "give steps_per_generation or generation_batch_size, not both"),
    ])
    def test_layouts_trl_refuses(self, args, fragment):
        assert fragment in generation_batch_problem(*args)

    @pytest.mark.parametrize("args", [(8, 1, 4, None, None, 1), (2, 2, 4, None, None, 1), (2, 1, 4, None, None, 2),
                                      (2, 1, 4, 2, None, 1), (2, 1, 4, None, 8, 1)])
    def test_layouts_trl_accepts(self, args, tmp_path):
        assert generation_batch_problem(*args) is None

    def test_our_rule_agrees_with_trls(self, tmp_path):
        for batch, accumulation, generations in ((6, 1, 4), (2, 3, 3), (4, 2, 8), (3, 2, 2)):
            ours = generation_batch_problem(batch, accumulation, generations, None, None, 1)
            from trl import GRPOConfig

            try:
                GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=batch, num_generations=generations,
                           gradient_accumulation_steps=accumulation, bf16=False, report_to="none")
                trl_refuses = False
            except ValueError:
                trl_refuses = True
            assert (ours is not None) == trl_refuses, (batch, accumulation, generations, ours)

    def test_the_number_of_processes_counts_and_is_a_parameter(self):
        with pytest.raises(ConfigError, match=r"training_parameters.per_device_train_batch_size: .*2 x 3 process\(es\)"):
            fit_batch_to_groups(config_with(per_device_train_batch_size=2, num_generations=4).training_parameters, 3)
        assert fit_batch_to_groups(config_with(per_device_train_batch_size=2, num_generations=4).training_parameters, 2) is None

    def test_a_batch_smaller_than_a_group_is_raised_to_the_smallest_whole_group(self):
        # Augmentoolkit's configs: per_device_train_batch_size 1, gradient_accumulation_steps 1, num_generations 6
        for processes, raised in ((1, 6), (2, 3), (3, 2), (4, 3)):
            training = config_with(per_device_train_batch_size=1, num_generations=6).training_parameters
            note = fit_batch_to_groups(training, processes)
            assert training.per_device_train_batch_size == raised, processes
            assert f"per_device_train_batch_size 1 -> {raised}" in note
        training = config_with(per_device_train_batch_size=1, num_generations=6, steps_per_generation=4).training_parameters
        fit_batch_to_groups(training, 1)
        assert training.per_device_train_batch_size == 3  # a round of 3 x 4 = 12 completions: two whole groups

    def test_a_larger_batch_that_is_no_multiple_stays_an_error(self):
        with pytest.raises(ConfigError, match="multiple of num_generations 2"):
            fit_batch_to_groups(config_with(per_device_train_batch_size=3, num_generations=2).training_parameters, 1)
        training = config_with(per_device_train_batch_size=2, num_generations=6, generation_batch_size=2).training_parameters
        with pytest.raises(ConfigError, match="generation_batch_size 2 completions"):
            fit_batch_to_groups(training, 1)  # a generation_batch_size the user set is never raised
        assert training.per_device_train_batch_size == 2


class TestSettingsThatCannotTrain:
    @pytest.mark.parametrize("training, message", [
        ({"num_generations": 1}, "training_parameters.num_generations: must be at least 2"),
        ({"max_completion_length": 0}, "training_parameters.max_completion_length: must be at least 1"),
        ({"temperature": 0}, "training_parameters.temperature: must be a number > 0"),
        ({"temperature": "hot"}, "training_parameters.temperature: must be a number > 0"),
        ({"temperature": True}, "training_parameters.temperature: must be a number > 0"),
        ({"max_steps": 0}, "training_parameters.max_steps: must be positive, or -1"),
        ({"max_steps": -1}, "training_parameters.max_steps: -1 trains for num_train_epochs, which must then be > 0"),
        ({"max_prompt_length": 0}, "training_parameters.max_prompt_length: must be at least 1"),
    ])
    def test_refused_with_the_key(self, training, message):
        with pytest.raises(ConfigError) as error:
            config_with(**training)
        assert message in str(error.value)


class TestEpochs:
    def test_num_train_epochs_without_max_steps_trains_for_epochs(self):
        config = validate_config({**BASE, "training_parameters": {"num_train_epochs": 2, "num_generations": 2,
                                                                  "per_device_train_batch_size": 4}})
        assert config.training_parameters.max_steps == -1
        assert planned_steps(config.training_parameters, train_rows=10, processes=1) == 10  # 10 prompts x 2 completions / 4 per step, x 2 epochs

    def test_max_steps_wins_when_both_are_given(self):
        config = config_with(num_train_epochs=2)
        assert config.training_parameters.max_steps == 3 and planned_steps(config.training_parameters, 10, 1) == 3

    def test_trl_trains_for_the_epochs(self, tmp_path):
        config = validate_config({**BASE, "training_parameters": {"num_train_epochs": 2, "num_generations": 2,
                                                                  "per_device_train_batch_size": 4}})
        args = build_grpo_config(config, RunPaths(tmp_path / "run"), has_eval=False)
        assert (args.max_steps, args.num_train_epochs) == (-1, 2)


class TestTriStateBooleans:
    @pytest.mark.parametrize("value, expected", [(False, "off"), (True, "on"), ("auto", "auto"), ("off", "off")])
    def test_use_vllm_accepts_yaml_booleans(self, value, expected):
        config = validate_config({**BASE, "model": {"base_model_name": "m", "use_vllm": value}})
        assert config.model.use_vllm == expected

    def test_report_to_no_means_none(self):
        assert config_with(report_to=False).training_parameters.report_to == "none"


# ---------------------------------------------------------------------------------------- chat templates


class TestChatTemplate:
    def test_a_file_is_read_as_the_template(self, tmp_path, monkeypatch):
        (tmp_path / "tpl.jinja").write_text(CHATML_TEMPLATE)
        monkeypatch.chdir(tmp_path)
        assert config_with(chat_template="tpl.jinja").training_parameters.chat_template == CHATML_TEMPLATE

    def test_a_name_trl_ships_is_its_template_and_chatml_stays_a_name(self):
        template = config_with(chat_template="llama3").training_parameters.chat_template
        assert "<|start_header_id|>" in template and "messages" in template
        assert config_with(chat_template="ChatML").training_parameters.chat_template == "ChatML"

    def test_jinja_text_is_kept(self):
        assert config_with(chat_template=CHATML_TEMPLATE).training_parameters.chat_template == CHATML_TEMPLATE

    @pytest.mark.parametrize("value, message", [
        ("llama", "did you mean 'llama3'?"),
        ("templates/missing.jinja", "template file not found: templates/missing.jinja"),
        ("{{ bos_token }}hello", "never reads `messages`"),
        ("{% for m in messages %}{{ m.content }}", "is not valid Jinja (line 1"),
    ])
    def test_templates_that_cannot_work(self, value, message):
        with pytest.raises(ConfigError, match="training_parameters.chat_template") as error:
            config_with(chat_template=value)
        assert message in str(error.value)

    def test_the_resolved_template_renders_messages(self):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = config_with(chat_template="qwen2_5").training_parameters.chat_template
        text = ImmutableSandboxedEnvironment().from_string(template).render(
            messages=[{"role": "user", "content": "hi there"}], add_generation_prompt=True)
        assert "hi there" in text


# ------------------------------------------------------------------------------------------------ secrets


class TestSecrets:
    @pytest.mark.parametrize("key", ["api_key", "apikey", "apiKey", "openai_key", "OPENAI_API_KEY", "hf_token", "token",
                                     "access_token", "client_secret", "password", "eval_llm_api_key", "private_key"])
    def test_real_secrets_are_redacted(self, key):
        assert redact_secrets({key: "s3cr3t"}) == {key: "***"}

    @pytest.mark.parametrize("key, value", [("price_per_prompt_token", 1e-6), ("price_per_completion_token", 2e-6),
                                            ("pad_token", "<pad>"), ("eos_token", "</s>"), ("max_tokens", 300),
                                            ("tokens_per_minute", 1000), ("eval_llm_api_key_env", "OPENAI_API_KEY"),
                                            ("score_key", "combined"), ("api_key_file", "/run/key")])
    def test_lookalikes_are_kept(self, key, value):
        assert redact_secrets({key: value}) == {key: value}

    def test_nested_reward_arguments_are_redacted(self):
        raw = {"datasets": [{"reward_funcs": [{"name": "r", "openai_key": "sk-1", "pad_token": "<p>"}]}]}
        assert redact_secrets(raw)["datasets"][0]["reward_funcs"][0] == {"name": "r", "openai_key": "***", "pad_token": "<p>"}

    def test_argv_loses_the_secret_values_only(self):
        argv = ["--node", "n", "--set", "datasets.0.reward_funcs.0.eval_llm_api_key=sk-live", "--set=a.hf_token=hf_1",
                "--set", "training_parameters.max_steps=3", "--sweep", "x.password=a,b", "--config", "c.yaml"]
        assert redact_argv(argv) == ["--node", "n", "--set", "datasets.0.reward_funcs.0.eval_llm_api_key=***",
                                     "--set=a.hf_token=***", "--set", "training_parameters.max_steps=3", "--sweep",
                                     "x.password=***", "--config", "c.yaml"]
