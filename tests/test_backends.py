"""Trainer backends: selection, the Unsloth and vLLM arguments built from our config, the GPU extra's pins.

The CPU tests prove the configuration logic without unsloth, vllm or a GPU. The GPU tests (skipped without
CUDA) train a few real steps with each backend in a fresh process (Unsloth must be imported first) and check
that the saved adapter, reloaded with plain transformers + PEFT, gives the logits of the trained model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends import (
    BackendUnavailableError,
    load_model,
    select_backend,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.trl_backend import lora_config_kwargs
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.generation import (
    generation_path,
    stop_generation_kwargs,
    uses_vllm,
    vllm_grpo_kwargs,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.unsloth_backend import (
    STANDARD_LORA_TARGETS,
    imported_too_early,
    unsloth_from_pretrained_kwargs,
    unsloth_peft_kwargs,
    unsloth_source_problem,
)
from generation.core_pipelines.do_grpo_rl_with_a_prompt.config.files import validate_config
from generation.errors import UserInputError

ROOT = Path(__file__).resolve().parents[1]
HAS_CUDA = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
needs_gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def make_config(model_dir: str | Path = "Qwen/Qwen2.5-0.5B-Instruct", training: dict | None = None, **model):
    return validate_config({
        "model": {"base_model_name": str(model_dir), **model},
        "training_parameters": {"seed": 7, **(training or {})},
        "datasets": [{"path": "d.jsonl"}],
    })


def run_python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------ select_backend


@pytest.mark.parametrize(
    "requested, has_cuda, has_unsloth, expected",
    [
        ("trl", True, True, "trl"),
        ("trl", False, False, "trl"),
        ("auto", True, True, "unsloth"),
        ("auto", True, False, "trl"),
        ("auto", False, True, "trl"),
        ("auto", False, False, "trl"),
        ("unsloth", True, True, "unsloth"),
    ],
)
def test_select_backend(requested, has_cuda, has_unsloth, expected):
    assert select_backend(requested, has_cuda=has_cuda, has_unsloth=has_unsloth) == expected


@pytest.mark.parametrize("has_unsloth", [True, False])
def test_unsloth_without_gpu_is_a_user_error_naming_the_gpu(has_unsloth):
    with pytest.raises(BackendUnavailableError) as raised:
        select_backend("unsloth", has_cuda=False, has_unsloth=has_unsloth)
    assert isinstance(raised.value, UserInputError)  # exit status 2, no traceback
    assert "no CUDA GPU" in str(raised.value) and "'trl'" in str(raised.value)


def test_unsloth_without_the_package_says_how_to_install():
    with pytest.raises(BackendUnavailableError, match=r"linux\.sh --gpu"):
        select_backend("unsloth", has_cuda=True, has_unsloth=False)


def test_select_backend_needs_neither_torch_nor_unsloth(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torch", "unsloth") else real_find_spec(name, *a))
    assert select_backend("auto") == "trl"
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
        select_backend("unsloth")


def test_node_imports_nothing_heavy_and_refuses_unsloth_without_gpu_before_importing_it():
    result = run_python(textwrap.dedent("""
        import sys
        import generation.core_pipelines.do_grpo_rl_with_a_prompt.pipeline
        from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends import select_backend, unsloth_backend
        heavy = lambda: sorted(m for m in ("torch", "transformers", "trl", "peft", "unsloth", "vllm") if m in sys.modules)
        print("after import:", heavy())
        try:
            select_backend("unsloth", has_cuda=False)
        except Exception as error:
            print("refused:", type(error).__name__, error)
        print("after refusal:", heavy())
    """))
    assert result.returncode == 0, result.stderr
    assert "after import: []" in result.stdout and "after refusal: []" in result.stdout
    assert "refused: BackendUnavailableError model.backend is 'unsloth', but no CUDA GPU" in result.stdout


def test_imported_too_early_names_the_modules_unsloth_must_precede():
    assert imported_too_early({"transformers": 1, "peft": 1, "torch": 1}) == ["transformers", "peft"]
    assert imported_too_early({"torch": 1}) == []
    assert imported_too_early({"unsloth": 1, "transformers": 1}) == []


# ------------------------------------------------------------------------------- Unsloth arguments


def test_from_pretrained_kwargs_from_config(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    config = make_config(tmp_path, max_seq_length=1024, gpu_memory_utilization=0.4, lora_rank=32, load_in_4bit=True)
    assert unsloth_from_pretrained_kwargs(config, vllm_available=True) == {
        "model_name": str(tmp_path),
        "max_seq_length": 1024,
        "dtype": None,
        "load_in_4bit": True,
        "fast_inference": True,
        "gpu_memory_utilization": 0.4,
        "max_lora_rank": 32,
        "random_state": 7,
        "use_exact_model_name": True,
        "full_finetuning": False,
    }
    assert unsloth_from_pretrained_kwargs(make_config(tmp_path, apply_lora=False), vllm_available=False)[
        "full_finetuning"] is True


def test_from_pretrained_kwargs_defaults_hub_id_and_dtype():
    kwargs = unsloth_from_pretrained_kwargs(make_config(dtype="bfloat16"), vllm_available=False)
    assert kwargs["model_name"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert kwargs["dtype"] == "bfloat16"
    assert kwargs["load_in_4bit"] is False  # Unsloth's own default is True: we always say which
    assert kwargs["fast_inference"] is False


@pytest.mark.parametrize(
    "use_vllm, vllm_mode, vllm_available, fast",
    [("auto", "colocate", True, True), ("on", "colocate", True, True), ("off", "colocate", True, False),
     ("auto", "colocate", False, False), ("auto", "server", True, False), ("off", "server", False, False)],
)
def test_fast_inference_only_for_an_in_process_vllm(use_vllm, vllm_mode, vllm_available, fast):
    config = make_config(use_vllm=use_vllm, vllm_mode=vllm_mode)
    assert unsloth_from_pretrained_kwargs(config, vllm_available=vllm_available)["fast_inference"] is fast


def test_vllm_on_without_vllm_is_refused_before_loading():
    with pytest.raises(BackendUnavailableError, match="vllm is not installed"):
        unsloth_from_pretrained_kwargs(make_config(use_vllm="on"), vllm_available=False)


def test_peft_kwargs_expand_all_linear_and_seed_the_init():
    assert unsloth_peft_kwargs(make_config(lora_rank=8, lora_alpha=16, lora_dropout=0.05)) == {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": list(STANDARD_LORA_TARGETS),
        "bias": "none",
        "use_gradient_checkpointing": "unsloth",
        "random_state": 7,
    }
    assert unsloth_peft_kwargs(make_config(target_modules=["q_proj", "v_proj"]))["target_modules"] == ["q_proj", "v_proj"]


def test_exclude_modules_reach_peft_and_unsloth():
    config = make_config(exclude_modules=["o_proj", "down_proj"])
    assert lora_config_kwargs(config.model, 7)["exclude_modules"] == ["o_proj", "down_proj"]
    assert unsloth_peft_kwargs(config)["target_modules"] == ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
    assert "exclude_modules" not in lora_config_kwargs(make_config().model, 7)
    regex = make_config(exclude_modules=".*visual.*")
    assert lora_config_kwargs(regex.model, 7)["exclude_modules"] == ".*visual.*"
    with pytest.raises(BackendUnavailableError, match="regular expression.*backend to 'trl'"):
        unsloth_peft_kwargs(regex)


def test_exclude_modules_leave_those_modules_without_lora(tiny_model_dir):
    """PEFT really skips the excluded modules: the wrapped tiny model has no LoRA on them."""
    config = make_config(tiny_model_dir, lora_rank=4, lora_alpha=8, exclude_modules=".*layers\\.0\\..*")
    loaded = load_model(config, "trl")
    lora_modules = [name for name, _ in loaded.model.named_modules() if name.endswith("lora_A")]
    assert lora_modules and all(".layers.1." in name for name in lora_modules)


def test_training_mode_is_described_for_the_plan():
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends import describe_training_mode

    assert describe_training_mode(make_config(lora_rank=8, lora_alpha=16, exclude_modules=["o_proj"]).model) == \
        "LoRA r=8 alpha=16 on all-linear except o_proj"
    assert describe_training_mode(make_config(apply_lora=False).model).startswith("full fine-tuning: every weight")


def test_full_fine_tuning_memory_is_weights_gradients_and_adam_moments():
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.trl_backend import (
        describe_full_fine_tuning,
        full_fine_tuning_memory,
    )

    # 1e9 float32 parameters: 4 GB weights + 4 GB gradients + 8 GB for Adam's two float32 moments
    assert full_fine_tuning_memory(10**9, 4) == {"weights": 4e9, "gradients": 4e9, "optimizer state": 8e9,
                                                  "total": 16e9}
    assert full_fine_tuning_memory(10**9, 2)["total"] == 8e9  # bfloat16: Adam's moments are bfloat16 too
    assert full_fine_tuning_memory(10**9, 2, "adamw_8bit")["optimizer state"] == 2e9
    assert full_fine_tuning_memory(10**9, 2, "sgd")["optimizer state"] == 2e9
    line = describe_full_fine_tuning(135_000_000, 4)
    assert line.startswith("full fine-tuning: 135.0M parameters train; memory about 2.01 GiB")


def test_four_bit_loading_is_refused_without_cuda_even_past_the_config(tmp_path):
    """A config built elsewhere (validated on a GPU machine) still cannot load 4-bit here: a clear error."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.trl_backend import (
        four_bit_load_kwargs,
        load_four_bit_model,
    )
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends.base import four_bit_problem
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import ModelSource

    import torch

    quantization = four_bit_load_kwargs(torch.bfloat16)["quantization_config"]
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_use_double_quant and quantization.bnb_4bit_compute_dtype == torch.bfloat16
    if four_bit_problem() is None:
        pytest.skip("this machine can load 4-bit models")
    with pytest.raises(BackendUnavailableError, match="model.load_in_4bit: .*CUDA"):
        load_four_bit_model(ModelSource(str(tmp_path)), "auto", make_config().training_parameters)


def test_peft_kwargs_match_the_trl_path():
    config = make_config(lora_rank=4, lora_alpha=8, lora_dropout=0.1)
    ours, theirs = unsloth_peft_kwargs(config), lora_config_kwargs(config.model, 7)
    assert {k: ours[k] for k in ("r", "lora_alpha", "lora_dropout", "bias")} == \
        {k: theirs[k] for k in ("r", "lora_alpha", "lora_dropout", "bias")}


def test_all_linear_expansion_gives_the_trl_paths_adapter_layout(tiny_model_dir):
    """Same adapter tensors either way: resume, merge and export cannot tell the backends apart."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    def adapter_keys(target_modules):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, task_type="CAUSAL_LM")
        return sorted(get_peft_model_state_dict(get_peft_model(model, lora)))

    assert adapter_keys("all-linear") == adapter_keys(list(STANDARD_LORA_TARGETS))


def test_gguf_sources_are_refused_with_the_way_out(tmp_path):
    gguf = tmp_path / "model.Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF")
    config = make_config(gguf)
    assert "GGUF" in unsloth_source_problem(config)
    with pytest.raises(BackendUnavailableError, match="'trl'"):
        unsloth_from_pretrained_kwargs(config, vllm_available=False)
    assert unsloth_source_problem(make_config(tmp_path, gguf_file=None)) is not None  # a directory holding one GGUF
    assert unsloth_source_problem(make_config()) is None


def test_load_model_refuses_gguf_before_importing_unsloth(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(BackendUnavailableError):
        load_model(make_config(gguf), "unsloth")
    assert "unsloth" not in sys.modules


def stand_in_unsloth(monkeypatch, calls: dict, with_engine: bool = False) -> None:
    """Put a module named unsloth in sys.modules whose FastLanguageModel records what it is given."""
    from types import ModuleType, SimpleNamespace

    class Model:  # what the loader touches: generate, and vllm_engine when fast_inference started one
        def generate(self, *args, **kwargs):
            return kwargs

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            calls["from_pretrained"] = kwargs
            model = Model()
            if with_engine and kwargs["fast_inference"]:
                model.vllm_engine = object()
            return model, SimpleNamespace(chat_template=None, pad_token=None, eos_token="<|im_end|>")

        @staticmethod
        def get_peft_model(model, **kwargs):
            calls["get_peft_model"] = kwargs
            return model

    monkeypatch.setitem(sys.modules, "unsloth", ModuleType("unsloth"))
    sys.modules["unsloth"].FastLanguageModel = FastLanguageModel


def test_load_unsloth_model_passes_our_arguments_and_finishes_the_tokenizer(monkeypatch, tmp_path):
    import torch

    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends import unsloth_backend
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.model_loading import CHATML_TEMPLATE

    calls: dict = {}
    stand_in_unsloth(monkeypatch, calls)
    monkeypatch.setattr(unsloth_backend, "vllm_importable", lambda: False)
    (tmp_path / "config.json").write_text("{}")
    config = make_config(tmp_path, {"seed": 5, "chat_template": "chatml", "model_stop_sequences": ["</answer>"]},
                         dtype="float32", lora_rank=4)
    loaded = load_model(config, "unsloth")
    assert calls["from_pretrained"]["dtype"] is torch.float32
    assert calls["from_pretrained"]["model_name"] == str(tmp_path) and calls["from_pretrained"]["random_state"] == 5
    assert calls["get_peft_model"] == unsloth_peft_kwargs(config)
    assert loaded.tokenizer.chat_template == CHATML_TEMPLATE and loaded.tokenizer.pad_token == "<|im_end|>"
    assert loaded.model.generate(max_new_tokens=3)["tokenizer"] is loaded.tokenizer  # stop_strings need it
    assert (loaded.backend, loaded.generation_path, loaded.grpo_kwargs) == \
        ("unsloth", "unsloth fast generate", {"use_vllm": False})


@pytest.mark.parametrize("engine_started", [True, False])
def test_load_unsloth_model_with_vllm_reports_what_actually_runs(monkeypatch, tmp_path, engine_started):
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer.backends import unsloth_backend

    calls: dict = {}
    stand_in_unsloth(monkeypatch, calls, with_engine=engine_started)
    monkeypatch.setattr(unsloth_backend, "vllm_importable", lambda: True)
    (tmp_path / "config.json").write_text("{}")
    config = make_config(tmp_path, {"chat_template": "chatml", "model_stop_sequences": ["</answer>"]},
                         gpu_memory_utilization=0.3)
    if engine_started:
        loaded = load_model(config, "unsloth")
        assert loaded.generation_path == "vllm (colocate)"
        assert loaded.grpo_kwargs["use_vllm"] and loaded.grpo_kwargs["vllm_gpu_memory_utilization"] == 0.3
        assert "tokenizer" not in loaded.model.generate()  # stops go to vLLM's SamplingParams instead
    else:
        with pytest.warns(UserWarning, match="did not start its vLLM engine"):
            loaded = load_model(config, "unsloth")
        assert (loaded.generation_path, loaded.grpo_kwargs) == ("unsloth fast generate", {"use_vllm": False})
    assert calls["from_pretrained"]["fast_inference"] is True


# ------------------------------------------------------------------------------ vLLM and generation


@pytest.mark.parametrize("model, available, on_gpu, expected", [
    ({"gpu_memory_utilization": 0.35, "max_seq_length": 1536}, True, True,
     {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.35, "vllm_max_model_length": 1536}),
    ({"vllm_mode": "server"}, True, True, {"use_vllm": True, "vllm_mode": "server"}),
    ({"use_vllm": "auto"}, False, True, {"use_vllm": False}),
    ({"use_vllm": "auto"}, True, False, {"use_vllm": False}),
    ({"use_vllm": "off"}, True, True, {"use_vllm": False}),
])
def test_vllm_grpo_kwargs(model, available, on_gpu, expected):
    assert vllm_grpo_kwargs(make_config(**model), vllm_available=available, on_gpu=on_gpu) == expected


@pytest.mark.parametrize("available, on_gpu, missing", [(False, True, "vllm is not installed"), (True, False, "no CUDA GPU")])
def test_vllm_on_but_unavailable_says_what_is_missing(available, on_gpu, missing):
    with pytest.raises(BackendUnavailableError, match=missing):
        uses_vllm(make_config(use_vllm="on").model, available, on_gpu)


def test_stop_sequences_reach_each_engine_through_its_own_argument():
    assert stop_generation_kwargs(["</answer>"], use_vllm=True, eos_token_id=2) == {"stop": ["</answer>"]}
    assert stop_generation_kwargs(["</answer>"], use_vllm=False, eos_token_id=2) == {
        "stop_strings": ["</answer>"], "pad_token_id": 2,
    }
    assert stop_generation_kwargs([], use_vllm=False, eos_token_id=2) == {}


def test_generation_path_names_what_ran():
    assert generation_path("unsloth", {"use_vllm": True, "vllm_mode": "colocate"}) == "vllm (colocate)"
    assert generation_path("trl", {"use_vllm": True, "vllm_mode": "server"}) == "vllm (server)"
    assert generation_path("unsloth", {"use_vllm": False}) == "unsloth fast generate"
    assert generation_path("trl", {"use_vllm": False}) == "transformers generate"


# ------------------------------------------------------------------------------- requirement pins


def read_requirements(path: Path) -> dict[str, tuple[Requirement, str]]:
    """{name: (requirement, its line's comment)} for each requirement line."""
    result = {}
    for line in path.read_text().splitlines():
        text, _, comment = line.partition("#")
        if text.strip():
            requirement = Requirement(text.strip())
            result[requirement.name.lower().replace("_", "-")] = (requirement, comment.strip())
    return result


def inclusive_bounds(requirement: Requirement) -> list[str]:
    """The versions a requirement pins or includes as a bound (==, <=, >=)."""
    return [spec.version for spec in requirement.specifier if spec.operator in ("==", "<=", ">=")]


def test_gpu_pins_satisfy_the_base_requirements_except_the_documented_trl():
    base = read_requirements(ROOT / "requirements.txt")
    gpu = read_requirements(ROOT / "requirements-gpu.txt")
    conflicts = {}
    for name, (requirement, _) in gpu.items():
        if name in base:
            outside = [v for v in inclusive_bounds(requirement) if not base[name][0].specifier.contains(v, prereleases=True)]
            if outside:
                conflicts[name] = outside
    assert conflicts == {"trl": ["1.15.0"]}, conflicts
    trl_comment = base["trl"][1]
    assert "1.15.0" in trl_comment and "GPU" in trl_comment, "requirements.txt must say why trl excludes 1.15.0"


def test_base_lower_bounds_allow_unsloths_upper_pins():
    base = read_requirements(ROOT / "requirements.txt")
    assert base["transformers"][0].specifier.contains("5.17")  # unsloth pins transformers<=5.17
    assert base["datasets"][0].specifier.contains("4.8.0")  # unsloth pins datasets<5
    assert base["trl"][0].specifier.contains("1.14")  # unsloth pins trl<=1.15
    gpu = read_requirements(ROOT / "requirements-gpu.txt")
    for name in ("unsloth", "unsloth-zoo", "trl", "bitsandbytes"):
        assert any(spec.operator == "==" for spec in gpu[name][0].specifier), f"{name} must be pinned exactly"
    uppers = [Version(spec.version) for spec in gpu["transformers"][0].specifier if spec.operator in ("<=", "<", "==")]
    assert uppers and max(uppers) <= Version("5.17")


# ------------------------------------------------------------------------------------- on a GPU

GPU_RUN = """
import json, os, sys
backend, config_path, out = sys.argv[1:4]
if backend == "unsloth":
    import unsloth  # noqa: F401  (before transformers, as the node does)
from generation.core_pipelines.do_grpo_rl_with_a_prompt import pipeline
from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer import backends

kept = {}
real_load_model = backends.load_model
def keep(config, name):
    kept["loaded"] = real_load_model(config, name)
    return kept["loaded"]
backends.load_model = keep
outcome = pipeline.run_grpo_pipeline(config_path, fresh=True)

import torch
model = kept["loaded"].model
if backend == "unsloth":
    from unsloth import FastLanguageModel
    os.environ["UNSLOTH_RETURN_LOGITS"] = "1"
    FastLanguageModel.for_inference(model)
model.eval()
ids = torch.tensor([[5, 17, 42, 99, 7, 3]], device=model.device)
with torch.no_grad():
    logits = model(input_ids=ids).logits.float().cpu()
torch.save(logits, out)
print(json.dumps({"steps": outcome.steps, "generation": kept["loaded"].generation_path,
                  "dtype": str(model.dtype).removeprefix("torch.")}))
"""


@needs_gpu
@pytest.mark.parametrize("backend", ["trl", "unsloth"])
def test_a_few_steps_then_the_saved_adapter_gives_the_same_logits(backend, tmp_path, tiny_model_dir):
    if backend == "unsloth" and importlib.util.find_spec("unsloth") is None:
        pytest.skip("unsloth is not installed (bash linux.sh --gpu)")
    import torch
    from peft import PeftModel
    from test_pipeline_e2e import tiny_config
    from transformers import AutoModelForCausalLM

    config = tiny_config(tmp_path, tiny_model_dir, model_stop_sequences=["</answer>"])
    raw = yaml.safe_load(config.read_text())
    raw["model"]["backend"] = backend
    config.write_text(yaml.safe_dump(raw))
    script = tmp_path / "run.py"
    script.write_text(GPU_RUN)
    python_path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    result = subprocess.run([sys.executable, str(script), backend, str(config), str(tmp_path / "logits.pt")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900,  # Unsloth's compile cache
                            env={**os.environ, "PYTHONPATH": python_path, "UNSLOTH_DISABLE_STATISTICS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["steps"] == 3
    assert report["generation"] == ("unsloth fast generate" if backend == "unsloth" else "transformers generate") \
        or report["generation"].startswith("vllm")

    final = tmp_path / "run" / "final"
    assert (final / "adapter_model.safetensors").is_file() and (final / "tokenizer_config.json").is_file()
    dtype = getattr(torch, report["dtype"])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype).cuda()
    reloaded = PeftModel.from_pretrained(base, final).eval()
    lora_b = [p for n, p in reloaded.named_parameters() if "lora_B" in n]
    assert any(p.abs().max() > 0 for p in lora_b), "training left every lora_B at its zero init"
    with torch.no_grad():
        expected = torch.load(tmp_path / "logits.pt")
        actual = reloaded(input_ids=torch.tensor([[5, 17, 42, 99, 7, 3]], device="cuda")).logits.float().cpu()
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2 * float(expected.abs().max()) + 1e-3
    assert float((actual - expected).abs().max()) <= tolerance


@needs_gpu
def test_qlora_on_the_trl_backend_trains_lora_over_a_4bit_base(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("bitsandbytes")
    from generation.core_pipelines.do_grpo_rl_with_a_prompt import pipeline
    from test_pipeline_e2e import tiny_config

    config = tiny_config(tmp_path, tiny_model_dir)
    raw = yaml.safe_load(config.read_text())
    raw["model"].update(backend="trl", load_in_4bit=True)
    config.write_text(yaml.safe_dump(raw))
    kept = {}

    def keep(config, name):
        kept["loaded"] = load_model(config, name)
        return kept["loaded"]

    monkeypatch.setattr(pipeline, "load_model", keep)
    outcome = pipeline.run_grpo_pipeline(config)
    assert outcome.steps == 3
    model = kept["loaded"].model
    assert any(type(module).__name__ == "Linear4bit" for module in model.modules())  # the base really is 4-bit
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    assert any(p.abs().max() > 0 for n, p in model.named_parameters() if "lora_B" in n)
