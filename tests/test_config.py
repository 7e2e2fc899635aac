"""The config schema: defaults, seed compatibility, and every error path (with file, key path, hint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.schema import ConfigError, grpo_config_fields
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import (
    apply_override,
    load_config,
    validate_config,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.redaction import redact_secrets
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.batching import fit_batch_to_groups

SEED_CONFIG = Path(__file__).parent / "data" / "seed_config.yaml"
MINIMAL = {"model": {"base_model_name": "m"}, "datasets": [{"path": "d.jsonl"}]}


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_minimal_config_gets_defaults():
    config = validate_config(MINIMAL)
    assert config.training_parameters.seed == 42
    assert config.reward.combination_function == "sum"
    assert config.datasets[0].display_name == "d"
    assert config.model.backend == "auto"


def test_seed_config_validates_and_its_batch_is_raised_to_a_prompt_group():
    # The seed trains 1 completion per step with num_generations 6; Augmentoolkit's Unsloth trainer raised the
    # batch to 6. Here the launch check does the same and says so (the schema itself reads no environment).
    config = load_config(SEED_CONFIG)
    assert config.training_parameters.per_device_train_batch_size == 1
    note = fit_batch_to_groups(config.training_parameters, processes=1)
    assert config.training_parameters.per_device_train_batch_size == 6
    assert note.startswith("per_device_train_batch_size 1 -> 6") and "yourself to silence this" in note
    assert config.training_parameters.model_extra["optim"] == "paged_adamw_8bit"
    assert config.training_parameters.model_extra["warmup_steps"] == 0.1  # warmup_ratio, renamed in transformers 5
    assert config.training_parameters.model_stop_sequences == ["**Finished.**", "Human:", "AI:"]
    assert config.reward.scaling_function == "identity"  # the seed's "none"
    gsm8k = config.datasets[1]
    assert [r.name for r in gsm8k.reward_funcs] == ["gsm8k_reward"]  # a single dict became a list
    judge = config.datasets[0].reward_funcs[0]
    assert judge.kwargs["score_types"][1] == {"type": "autofail", "name": "making_sense"}
    assert config.datasets[0].reward_funcs[1].weight == 1.3


def test_unknown_keys_are_all_reported_with_path_and_hint(tmp_path):
    bad = {
        "model": {"base_model_name": "m", "lora_rnk": 8},
        "training_parameters": {"learning_rat": 1e-5},
        "datasets": [{"path": "d.jsonl", "percentge": 0.5}],
    }
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, bad))
    message = str(error.value)
    assert str(tmp_path / "config.yaml") in message
    assert "model.lora_rnk: unknown key (did you mean 'lora_rank'?)" in message
    assert "datasets.0.percentge: unknown key (did you mean 'percentage'?)" in message
    assert "'learning_rat' (did you mean 'learning_rate'?)" in message
    assert "3 problem(s)" in message


def test_trl_fields_pass_through_and_are_checked_against_trl_source():
    assert {"beta", "epsilon", "loss_type", "num_iterations", "scale_rewards", "learning_rate"} <= grpo_config_fields()
    config = validate_config({**MINIMAL, "training_parameters": {"beta": 0.04, "loss_type": "dr_grpo"}})
    assert config.training_parameters.model_extra == {"beta": 0.04, "loss_type": "dr_grpo"}


def test_reward_weights_is_refused_with_the_alternative():
    with pytest.raises(ConfigError, match="give each entry of a dataset's reward_funcs a 'weight'"):
        validate_config({**MINIMAL, "training_parameters": {"reward_weights": [1.0]}})


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "model:\n  base_model_name: m\ndatasets: [\n  - path: x\n")
    with pytest.raises(ConfigError, match=r"config.yaml:\d+:\d+: YAML syntax error"):
        load_config(path)


def test_missing_required_and_wrong_types_are_reported():
    with pytest.raises(ConfigError) as error:
        validate_config({"datasets": [{"path": "d", "percentage": "lots"}]})
    assert "model: Field required" in str(error.value)
    assert "datasets.0.percentage" in str(error.value)


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path, MINIMAL)
    config = load_config(path, ["training_parameters.max_steps=7", "model.lora_rank=4", "datasets.0.percentage=0.5",
                                "training_parameters.beta=0.1"])
    assert config.training_parameters.max_steps == 7
    assert config.model.lora_rank == 4
    assert config.datasets[0].percentage == 0.5
    assert config.training_parameters.model_extra["beta"] == 0.1
    with pytest.raises(ConfigError, match="model.lora_rank"):
        load_config(path, ["model.lora_rank=many"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_override({}, "no_equals_sign")


def test_seed_post_processors_section_maps_onto_reward_and_conflicts_fail():
    config = validate_config({**MINIMAL, "post_processors": {"reward_combination_function": "mean"}})
    assert config.reward.combination_function == "mean"
    with pytest.raises(ConfigError, match="contradicts reward.combination_function"):
        validate_config({**MINIMAL, "reward": {"combination_function": "min"},
                         "post_processors": {"reward_combination_function": "mean"}})


def test_duplicate_dataset_names_fail():
    with pytest.raises(ConfigError, match="distinct 'name'"):
        validate_config({"model": {"base_model_name": "m"}, "datasets": [{"path": "a/d.jsonl"}, {"path": "b/d.jsonl"}]})


def test_secrets_are_redacted_everywhere():
    raw = yaml.safe_load(SEED_CONFIG.read_text())
    redacted = redact_secrets(raw)
    text = yaml.safe_dump(redacted)
    assert "sk-secret" not in text
    assert redacted["datasets"][0]["eval_llm_api_key"] == "***"
    assert redacted["datasets"][0]["reward_funcs"][0]["eval_llm_api_key"] == "***"
    assert redact_secrets({"eval_llm_api_key_env": "MY_KEY"}) == {"eval_llm_api_key_env": "MY_KEY"}


@pytest.mark.parametrize("override, message", [
    ("datasets.1.path=x", "--set datasets.1.path: datasets is a list of 1 item(s): use an index from 0 to 0, got '1'"),
    ("datasets.-1.path=x", "got '-1'"),
    ("model.base_model_name.size=3", "--set model.base_model_name.size: model.base_model_name is a plain value ('m')"),
    ("model.lora_rank={a: [", "--set model.lora_rank: the value is not valid YAML"),
    ("model..lora_rank=3", "empty key in the path"),
])
def test_bad_overrides_name_the_set_argument(override, message):
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    with pytest.raises(ConfigError) as error:
        apply_override(raw, override)
    assert message in str(error.value)
    assert raw == MINIMAL  # nothing half-applied


def test_overrides_create_missing_and_empty_sections():
    raw = {"model": {"base_model_name": "m"}, "datasets": [{"path": "d"}], "reward": None}
    apply_override(raw, "reward.score_save_threshold=0.5")
    apply_override(raw, "dataset_settings.total_rows=10")
    apply_override(raw, "datasets.0.reward_funcs=[{name: max_length}]")
    config = validate_config(raw)
    assert config.reward.score_save_threshold == 0.5 and config.dataset_settings.total_rows == 10
    assert config.datasets[0].reward_funcs[0].name == "max_length"


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"# only a comment\n", "the file is empty"),
    (b"- a\n- b\n", "expected a mapping of sections (training_parameters, model, datasets, ...) at the top level, got a list"),
    (b"model:\n  base_model_name: caf\xe9\n", ":2: not UTF-8 text (byte 0xe9 at offset 29)"),
])
def test_unusable_files_are_config_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(f"{path}:") and message in str(error.value)


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match="it is a directory"):
        load_config(tmp_path)


def test_redaction_keeps_prices_and_tokenizer_tokens_visible():
    raw = {"reward_funcs": [{"name": "generic_llm_reward", "price_per_prompt_token": 1e-6, "max_tokens": 300,
                             "apikey": "k1", "openai_key": "k2"}], "chat": {"pad_token": "<pad>"}}
    redacted = redact_secrets(raw)
    assert redacted["reward_funcs"][0] == {"name": "generic_llm_reward", "price_per_prompt_token": 1e-6,
                                           "max_tokens": 300, "apikey": "***", "openai_key": "***"}
    assert redacted["chat"] == {"pad_token": "<pad>"}
