"""GGUF export (cli_utils/gguf_export.py, merge_lora.py --export-gguf) with llama.cpp's real converter.

The shipped default's adapter after two GRPO steps is merged and exported; the file is read back by gguf's
reader, by transformers (PyPI's gguf, which the converter's own copy must not replace) and by llama.cpp
(llama-cpp-python, installed by `linux.sh --dev` from ../shared/wheels; that part skips without it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_utils import merge_lora as merge_cli
from cli_utils.gguf_export import find_converter, main, read_gguf, safetensors_count

PROMPT = "The capital of France is"
GREEDY_TOKENS = 8


def transformers_greedy(model_dir: Path, tokenizer_dir: Path, gguf_file: str | None = None) -> tuple[list, list]:
    """(prompt token ids, the first GREEDY_TOKENS greedy token ids after it) with transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf_file, dtype=torch.float32).eval()
    ids = tokenizer(PROMPT, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=GREEDY_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    return ids[0].tolist(), out[0, ids.shape[1]:].tolist()


@pytest.fixture(scope="module")
def exported(smollm2_two_step_run, tmp_path_factory):
    """The default's 2-step adapter merged into SmolLM2 and exported to GGUF f16 by merge_lora --export-gguf."""
    run, status, _ = smollm2_two_step_run
    assert status == 0
    save_path = tmp_path_factory.mktemp("gguf") / "merged"
    result = merge_cli.merge_lora("smollm2-gguf", run, save_path, export_gguf_type="f16")
    return save_path, result.gguf, transformers_greedy(save_path, save_path)


def test_default_model_merged_and_exported_to_gguf_f16(exported):
    save_path, written, _ = exported
    gguf_path = save_path / "merged-f16.gguf"

    assert written.path == gguf_path and gguf_path.is_file()
    assert (save_path / "merged-f16.Modelfile").read_text() == "FROM ./merged-f16.gguf\n"
    assert not [p.name for p in save_path.iterdir() if p.name.startswith(".")]  # no partial file left
    again = read_gguf(gguf_path)  # what the tool checked, read again here
    assert again.architecture == "llama" == written.architecture
    assert again.tensor_count == safetensors_count(save_path) == 272  # SmolLM2-135M: 30 blocks x 9 + 2
    assert again.vocab_size == 49152
    assert 200e6 < again.size_bytes < 300e6  # f16: about 2 bytes per parameter


def test_transformers_still_loads_gguf_and_reads_the_export_like_the_merged_model(exported):
    """PyPI's gguf (transformers' GGUF loader) is untouched by the converter's own copy and reads its file."""
    import gguf

    save_path, _, (prompt, merged) = exported
    assert not Path(gguf.__file__).resolve().is_relative_to(find_converter().folder)
    prompt_again, from_gguf = transformers_greedy(save_path, save_path, gguf_file="merged-f16.gguf")
    assert prompt == prompt_again and from_gguf == merged


def test_llama_cpp_continues_like_transformers_on_the_merged_model(exported):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (linux.sh --dev installs it)")
    _, written, (prompt, merged) = exported

    llm = llama_cpp.Llama(model_path=str(written.path), n_ctx=128, n_threads=2, seed=0, verbose=False)
    assert llm.tokenize(PROMPT.encode(), add_bos=False) == prompt
    continuation = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0):
        continuation.append(token)
        if len(continuation) == GREEDY_TOKENS:
            break
    assert continuation == merged, (llm.detokenize(continuation), llm.detokenize(merged))


def test_full_fine_tune_has_nothing_to_merge_and_exports_as_it_is(exported, tmp_path, capsys):
    """A run with model.apply_lora false keeps the whole model in final/: --export-gguf converts it directly."""
    save_path, _, _ = exported
    run = tmp_path / "full_run"
    (run / "final").mkdir(parents=True)
    for file in save_path.iterdir():
        if not file.name.endswith((".gguf", ".Modelfile")):
            (run / "final" / file.name).symlink_to(file)

    code = merge_cli.main(["--base-model", "smollm2-gguf", "--adapter-model", str(run),
                           "--save-path", str(tmp_path / "out"), "--export-gguf", "q8_0"])

    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["out-q8_0.Modelfile", "out-q8_0.gguf"]
    written = read_gguf(tmp_path / "out" / "out-q8_0.gguf")
    assert (written.architecture, written.tensor_count, written.vocab_size) == ("llama", 272, 49152)
    assert written.size_bytes < 0.6 * read_gguf(save_path / "merged-f16.gguf").size_bytes  # 8.5 bits vs 16
    out = capsys.readouterr().out
    assert "python -m llama_cpp.server --model" in out and "ollama create out -f" in out


# ------------------------------------------------------------------------------------------ bad input


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_unknown_type_exits_2_before_anything_loads(tiny_model_dir, tmp_path, capsys):
    code = merge_cli.main(["--base-model", str(tiny_model_dir), "--adapter-model", str(tmp_path / "missing"),
                           "--save-path", str(tmp_path / "out"), "--export-gguf", "q4_k"])
    assert code == 2
    assert "unknown GGUF type 'q4_k'" in one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_architecture_the_converter_does_not_know_exits_2_and_writes_nothing(tiny_model_dir, tmp_path, capsys):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    config = (model / "config.json").read_text().replace("LlamaForCausalLM", "NoSuchModelForCausalLM")
    (model / "config.json").write_text(config)
    before = sorted(p.name for p in model.iterdir())

    code = main(["--model", str(model), "--type", "f16"])

    assert code == 2
    assert "cannot convert architecture NoSuchModelForCausalLM" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in model.iterdir()) == before


def test_missing_converter_is_named_with_the_install_command(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GGUF_CONVERTER_DIR", str(tmp_path / "no_converter"))
    code = main(["--model", str(tiny_model_dir), "--type", "f16", "--save-path", str(tmp_path / "out")])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert "no_converter" in line and "requirements-gguf.txt" in line
    assert not (tmp_path / "out").exists()


def test_existing_file_needs_overwrite(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tiny-f16.gguf").write_text("mine")
    code = main(["--model", str(tiny_model_dir), "--type", "f16", "--save-path", str(tmp_path / "out"),
                 "--name", "tiny"])
    assert code == 2 and "--overwrite" in one_line(capsys.readouterr().err)
    assert (tmp_path / "out" / "tiny-f16.gguf").read_text() == "mine"


def test_converter_failure_after_merge_exits_1_keeps_the_merged_model_and_no_partial_file(
        tiny_model_dir, tmp_path, capsys):
    """The tiny model's home-made tokenizer is one llama.cpp does not know: the converter fails."""
    from test_merge_lora import make_adapter

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    code = merge_cli.main(["--base-model", str(tiny_model_dir), "--adapter-model", str(adapter),
                           "--save-path", str(tmp_path / "merged"), "--export-gguf", "f16"])

    assert code == 1
    [line] = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # else: progress bars
    assert "the GGUF converter failed" in line and "pre-tokenizer" in line and "is kept" in line
    names = sorted(p.name for p in (tmp_path / "merged").iterdir())
    assert "model.safetensors" in names and not [n for n in names if n.endswith(".gguf") or n.startswith(".")]
