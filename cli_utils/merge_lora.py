"""Merge a trained LoRA adapter into its base model and save a standalone model, ready for inference.

    python cli_utils/merge_lora.py --base-model Qwen/Qwen2.5-0.5B-Instruct \
        --adapter-model outputs/my_run/final --save-path merged/my_model [--dtype bf16] [--verify]

What it does, in order:
  1. resolves --base-model as training does (a hub id, a folder, a .gguf file, 'smollm2-gguf'; a hub id that
     cannot load now fails at once), checks the save path (a non-empty one needs --overwrite) and reads the
     adapter's config (a full fine-tune's folder has nothing to merge: exit status 2);
  2. checks, before any weight loads, that every module and shape the adapter needs is in the base
     (a mismatch is exit status 2 with a clear message; a different base *name* only warns);
  3. loads the base (a GGUF base is dequantized: --gguf-file, or a path ending in .gguf), applies the
     adapter, merges it and saves the model with the tokenizer and chat template saved with the adapter
     (the base's when the adapter has none) into a temporary folder, renamed into place at the end;
  4. with --verify, reloads the saved model and compares its logits on a sample prompt with base+adapter;
     above the tolerance nothing is kept and the exit status is 1;
  5. with --export-gguf f16|bf16|q8_0, writes <save-path>/<name>-<type>.gguf with cli_utils/gguf_export.py
     (type and architecture checked in step 1); a full fine-tune's folder goes straight to this step.
Works on CPU. Exit status: 0 merged, 1 verification or GGUF export failed, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python cli_utils/merge_lora.py`
    sys.path.insert(0, str(ROOT))

from cli_utils.adapter_fit import find_mismatches  # noqa: E402
from cli_utils.cli_io import CliInputError  # noqa: E402
from cli_utils.gguf_export import GGUFExportError, check_export, converter_arch, export_gguf, find_full_model  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import (  # noqa: E402
    ModelLoadError,
    forget_gguf_quantization,
    hub_problem,
    resolve_model_source,
)

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
# Tolerance on the largest logit difference: atol + rtol * (largest reference logit), per saved dtype.
# Half-precision values sit at the noise of the dtype itself: SmolLM2-135M's logits move by up to ~1.3 (bf16)
# and ~0.26 (fp16) between a float32 and a half-precision load of the same weights.
TOLERANCES = {"float32": (1e-4, 1e-4), "bfloat16": (5e-2, 5e-2), "float16": (1e-2, 1.5e-2)}
SAMPLE_MESSAGES = [{"role": "user", "content": "What is 2 + 2? Answer briefly."}]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class MergeError(Exception):
    """Bad input the user can fix (paths, mismatched adapter and base); exit status 2, nothing written."""


class VerificationError(Exception):
    """The merged model's logits differ from base+adapter by more than the tolerance; exit status 1."""


@dataclass
class MergeResult:
    """What merge_lora did: where the model went and, with verify, how close it is to base+adapter."""

    save_path: Path
    dtype: str
    adapter_path: Path
    tokenizer_source: str
    warnings: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None  # merged vs base+adapter logits (verify only)
    tolerance: float | None = None
    adapter_effect: float | None = None  # base vs base+adapter logits: how much the adapter changes
    gguf: Any = None  # gguf_export.GGUFFile (export_gguf only)


# ------------------------------------------------------------------------------------------ inputs


def resolve_adapter_dir(adapter_model: str | Path) -> Path:
    """The folder holding adapter_config.json; a run directory means its final/ adapter.

    A full fine-tune's folder (model weights, no adapter: model.apply_lora false) has nothing to merge.
    """
    path = Path(adapter_model)
    if (path / "adapter_config.json").is_file():
        return path
    if (path / "final" / "adapter_config.json").is_file():
        return path / "final"
    if not path.exists():
        raise MergeError(f"adapter path {path} does not exist")
    folder = find_full_model(path)
    if folder is not None:
        raise MergeError(
            f"nothing to merge: {folder} holds a whole model (a full fine-tune, model.apply_lora false), not a "
            "LoRA adapter; it is already standalone: load it with AutoModelForCausalLM.from_pretrained"
        )
    raise MergeError(
        f"{path} holds no adapter_config.json: give a LoRA adapter folder (a run's final/ or best/, or a "
        "checkpoints/checkpoint-<step>/ folder)"
    )


def resolve_base(base_model: str, gguf_file: str | None) -> tuple[str, str | None]:
    """(folder or hub id, GGUF file name) for --base-model, by training's rules (model_loading.resolve_model_source):
    every name training accepts ('smollm2-gguf', a .gguf path, a folder, a hub id). A hub id that cannot load
    now (offline, not cached) fails at once."""
    try:
        source = resolve_model_source(base_model, gguf_file)
    except ModelLoadError as error:
        raise MergeError(str(error)) from None
    problem = None if source.is_local else hub_problem(source)
    if problem:
        raise MergeError(f"cannot load the base model '{base_model}': {problem}; give a local folder or .gguf file")
    return source.name_or_path, source.gguf_file


def check_save_path(save_path: Path, overwrite: bool, protected: list[Path]) -> None:
    if save_path.exists() and not save_path.is_dir():
        raise MergeError(f"save path {save_path} is a file, not a folder")
    if save_path.is_dir() and any(save_path.iterdir()) and not overwrite:
        raise MergeError(f"save path {save_path} is not empty: pass --overwrite to replace it")
    target = save_path.resolve()
    for other in protected:
        other = other.resolve()
        if target == other or target in other.parents:
            raise MergeError(f"save path {save_path} would replace the input {other}: choose another folder")


def same_model_name(a: str, b: str) -> bool:
    """Loosely the same model: same string, same local folder, or same last path component."""
    if not a or not b or a == b:
        return True
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return Path(a.rstrip("/")).name.lower() == Path(b.rstrip("/")).name.lower()


def adapter_tensor_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the adapter's saved tensors, without loading their data."""
    safetensors_file = adapter_dir / "adapter_model.safetensors"
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    bin_file = adapter_dir / "adapter_model.bin"
    if bin_file.is_file():
        import torch

        state = torch.load(bin_file, map_location="cpu", weights_only=True, mmap=True)
        return {key: tuple(value.shape) for key, value in state.items()}
    raise MergeError(f"{adapter_dir} has adapter_config.json but no adapter_model.safetensors or .bin")


# ------------------------------------------------------------------------------------------- model


def load_tokenizer(adapter_dir: Path, base_model: str, gguf_file: str | None) -> tuple[Any, str]:
    """The tokenizer saved with the adapter (it carries the training chat template), else the base's."""
    from transformers import AutoTokenizer

    if any((adapter_dir / name).is_file() for name in TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(adapter_dir), str(adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_model, gguf_file=gguf_file)
    template = adapter_dir / "chat_template.jinja"
    if template.is_file():
        tokenizer.chat_template = template.read_text(encoding="utf-8")
        return tokenizer, f"{base_model} (chat template from {template})"
    return tokenizer, base_model


def config_dtype(config: Any) -> str:
    """The dtype name a model config declares, float32 when it declares none."""
    value = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if value is None:
        return "float32"
    return str(value).removeprefix("torch.")


def gguf_kwargs(gguf_file: str | None) -> dict[str, Any]:
    """from_pretrained arguments that load a GGUF file as plain dense weights (PEFT needs nn.Linear)."""
    if not gguf_file:
        return {}
    import transformers

    kwargs: dict[str, Any] = {"gguf_file": gguf_file}
    config_class = getattr(transformers, "GgufConfig", None)  # newer transformers can keep GGUF blocks packed
    if config_class is not None and "dequantize" in inspect.signature(config_class).parameters:
        kwargs["quantization_config"] = config_class(gguf_file=gguf_file, dequantize=True)
    return kwargs


def sample_logits(model: Any, tokenizer: Any) -> Any:
    import torch

    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(SAMPLE_MESSAGES, tokenize=False, add_generation_prompt=True)
    else:
        text = SAMPLE_MESSAGES[0]["content"]
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=not tokenizer.chat_template)
    inputs = {key: value.to(model.device) for key, value in inputs.items() if key in ("input_ids", "attention_mask")}
    with torch.no_grad():
        return model(**inputs).logits.float().cpu()


# -------------------------------------------------------------------------------------------- merge


def merge_lora(
    base_model: str | Path,
    adapter_model: str | Path,
    save_path: str | Path,
    dtype: str = "auto",
    overwrite: bool = False,
    verify: bool = False,
    gguf_file: str | None = None,
    tolerance: float | None = None,
    export_gguf_type: str | None = None,
    log=print,
) -> MergeResult:
    """Merge `adapter_model` into `base_model` and save the result at `save_path` (see the module doc).

    Raises MergeError for bad input and VerificationError when verify finds the logits too far apart; in
    both cases nothing is left at `save_path`.
    """
    if dtype not in ("auto", *DTYPES):
        raise MergeError(f"unknown dtype '{dtype}': use auto, bf16, fp16 or fp32")
    if export_gguf_type:
        check_export(export_gguf_type)
    save_path = Path(save_path)
    adapter_dir = resolve_adapter_dir(adapter_model)
    base_model, gguf_file = resolve_base(str(base_model), gguf_file)
    protected = [adapter_dir] + ([Path(base_model)] if Path(base_model).exists() else [])
    check_save_path(save_path, overwrite, protected)
    try:
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise MergeError(f"cannot read {adapter_dir / 'adapter_config.json'}: {error}") from error
    result = MergeResult(save_path=save_path, dtype="", adapter_path=adapter_dir, tokenizer_source="")

    # 1. Does the adapter fit the base? Checked on an empty (meta) model: no weights loaded yet.
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    trained_on = adapter_config.get("base_model_name_or_path") or ""
    try:
        config = AutoConfig.from_pretrained(base_model, gguf_file=gguf_file)
    except (OSError, ValueError) as error:
        raise MergeError(f"cannot load the base model config from '{base_model}': {error}") from error
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    problems = find_mismatches(skeleton, adapter_tensor_shapes(adapter_dir))
    architecture = type(skeleton).__name__  # what save_pretrained writes in config.json
    del skeleton
    if problems:
        shown = "\n  ".join(problems[:8]) + (f"\n  ... and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise MergeError(
            f"the adapter in {adapter_dir} does not fit the base model '{base_model}' "
            f"(it was trained on '{trained_on or 'unknown'}'):\n  {shown}"
        )
    gguf_arch = converter_arch({"architectures": [architecture]}) if export_gguf_type else None
    if not same_model_name(trained_on, base_model):
        result.warnings.append(f"the adapter was trained on '{trained_on}', merging it into '{base_model}'")
        log(f"warning: {result.warnings[-1]} (its modules and shapes match, so going on)")

    # 2. Load base + adapter in the chosen dtype.
    result.dtype = config_dtype(config) if dtype == "auto" else DTYPES[dtype]
    torch_dtype = getattr(torch, result.dtype)
    tokenizer, result.tokenizer_source = load_tokenizer(adapter_dir, base_model, gguf_file)
    log(f"loading {base_model}{f' ({gguf_file})' if gguf_file else ''} as {result.dtype} and the adapter {adapter_dir}")
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch_dtype, **gguf_kwargs(gguf_file))
    if gguf_file:
        model = forget_gguf_quantization(model)
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        result.warnings.append(f"the tokenizer has {len(tokenizer)} tokens but the model only {rows} embeddings")
        log(f"warning: {result.warnings[-1]}")
    from peft import PeftModel

    try:
        model = PeftModel.from_pretrained(model, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as error:
        raise MergeError(f"cannot apply the adapter {adapter_dir} to '{base_model}': {error}") from error
    model.eval()
    reference = None
    if verify:
        reference = sample_logits(model, tokenizer)
        with model.disable_adapter():
            result.adapter_effect = float((sample_logits(model, tokenizer) - reference).abs().max())

    # 3. Merge and save into a temporary folder next to the target; rename into place at the end.
    merged = model.merge_and_unload()
    del model
    save_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{save_path.name}.tmp-", dir=save_path.parent))
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        del merged
        gc.collect()
        if verify:
            _verify(staging, tokenizer, reference, torch_dtype, result, tolerance, log)
        _replace(staging, save_path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"merged model saved to {save_path} ({result.dtype}; tokenizer from {result.tokenizer_source})")
    if export_gguf_type:
        result.gguf = export_gguf(save_path, export_gguf_type, save_path, name=save_path.resolve().name,
                                  gguf_arch=gguf_arch, log=log)
    return result


def _verify(staging: Path, tokenizer: Any, reference: Any, torch_dtype: Any, result: MergeResult,
            tolerance: float | None, log) -> None:
    """Reload the saved model and compare its logits with base+adapter's."""
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(staging, dtype=torch_dtype)
    reloaded.eval()
    logits = sample_logits(reloaded, tokenizer)
    del reloaded
    result.max_abs_diff = float((logits - reference).abs().max())
    if tolerance is None:
        atol, rtol = TOLERANCES[result.dtype] if result.dtype in TOLERANCES else TOLERANCES["bfloat16"]
        tolerance = atol + rtol * float(reference.abs().max())
    result.tolerance = tolerance
    log(
        f"verify: largest |merged - (base+adapter)| logit difference {result.max_abs_diff:.3g} "
        f"(tolerance {tolerance:.3g}); the adapter itself moves logits by up to {result.adapter_effect:.3g}"
    )
    if result.adapter_effect == 0.0:
        result.warnings.append("the adapter does not change the base model's logits (untrained adapter?)")
        log(f"warning: {result.warnings[-1]}")
    elif result.adapter_effect <= tolerance:
        result.warnings.append(
            f"the adapter moves logits by less than the {result.dtype} tolerance, so this check cannot tell the "
            "merged model from the base; --dtype fp32 gives a sharper check"
        )
        log(f"warning: {result.warnings[-1]}")
    if result.max_abs_diff > tolerance:
        raise VerificationError(
            f"merged logits differ from base+adapter by {result.max_abs_diff:.3g} > tolerance {tolerance:.3g}; "
            "nothing was saved (re-run with --tolerance to accept it, or with --dtype fp32)"
        )


def _replace(staging: Path, save_path: Path) -> None:
    """Put `staging` at `save_path`, moving an existing folder aside first and deleting it after."""
    old = None
    if save_path.exists():
        old = save_path.with_name(f".{save_path.name}.old-{os.getpid()}")
        os.replace(save_path, old)
    os.replace(staging, save_path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Merge a LoRA adapter into its base model and save a standalone model.",
        epilog="Exit status: 0 merged, 1 --verify failed, 2 bad input (nothing written).",
    )
    parser.add_argument("--base-model", required=True,
                        help="What model.base_model_name accepts: a hub id, a local model folder, a .gguf file, "
                        "or 'smollm2-gguf' (the packaged SmolLM2 GGUF).")
    parser.add_argument("--adapter-model", required=True,
                        help="LoRA adapter folder: a run's final/ or best/, or checkpoints/checkpoint-<step>/.")
    parser.add_argument("--save-path", required=True, help="Folder to write the merged model into.")
    parser.add_argument("--dtype", choices=["auto", *DTYPES], default="auto",
                        help="Saved weights' dtype; auto = the dtype in the base model's config.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty --save-path.")
    parser.add_argument("--verify", action="store_true",
                        help="Check the saved model's logits against base+adapter on a sample prompt.")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="Largest logit difference --verify accepts (default depends on --dtype).")
    parser.add_argument("--gguf-file", default=None, help="GGUF file name inside --base-model (dequantized on load).")
    parser.add_argument("--export-gguf", default=None, metavar="TYPE",
                        help="Also write <save-path>/<name>-TYPE.gguf for llama.cpp/Ollama (f16, bf16 or q8_0); "
                        "a full fine-tune's folder is exported as it is.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    full_model = find_full_model(args.adapter_model) if args.export_gguf else None  # a full fine-tune: export only
    try:
        if full_model is not None:
            export_gguf(full_model, args.export_gguf, args.save_path, name=Path(args.save_path).resolve().name,
                        overwrite=args.overwrite)
        else:
            merge_lora(args.base_model, args.adapter_model, args.save_path, dtype=args.dtype,
                       overwrite=args.overwrite, verify=args.verify, gguf_file=args.gguf_file,
                       tolerance=args.tolerance, export_gguf_type=args.export_gguf)
    except (MergeError, CliInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (VerificationError, GGUFExportError) as error:
        kept = isinstance(error, GGUFExportError) and full_model is None
        print(f"error: {error}" + (f" (the merged model in {args.save_path} is kept)" if kept else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
