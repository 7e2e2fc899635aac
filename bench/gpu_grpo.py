"""Benchmark: GRPO on one NVIDIA GPU, same model and settings run with raw Unsloth, raw TRL and our node.

    python bench/gpu_grpo.py                                   # the five default variants
    python bench/gpu_grpo.py --variants raw_unsloth,ours_unsloth --steps 4
    python bench/gpu_grpo.py --variants raw_trl_paged,raw_trl_static   # generation levers without vLLM

Setting (issue 6): a randomly initialised Qwen2 with the Qwen2.5-0.5B shape (no weights travel), a byte-level
BPE tokenizer trained here, LoRA r16 / alpha 16 on all linear layers, 8 generations x 256 tokens, 32
completions per step (4 prompts), a cheap programmatic reward (brevity), beta 0, AdamW (torch) for everyone.
Each variant runs in its own process: peak GPU memory is its own, and Unsloth is imported first where used.

Measured per variant, over the steps after --warmup: completion tokens/s (TRL's completions/mean_length x 32
per step, over wall-clock step time between on_step_begin and on_step_end, CUDA synchronised), the median
step time, and peak GPU memory (torch max allocated and max reserved, whole process).
Goals: ours >= 0.95x raw Unsloth tokens/s and >= 1.8x raw TRL; peak memory <= 1.05x raw Unsloth.

Results are printed and written to $OUT/gpu_grpo.json (or --out) after each variant, so a run cut off by a
time limit keeps what finished; each variant's log tail goes next to it. Without CUDA it exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = 3407
BATCH, GENERATIONS, COMPLETION_TOKENS, MAX_WORDS = 32, 8, 256, 40
DEFAULT_VARIANTS = ("raw_unsloth", "ours_unsloth", "raw_trl", "raw_unsloth_4bit", "ours_unsloth_4bit")
LEVERS = ("raw_trl_paged", "raw_trl_static")
COMMON_GRPO = dict(
    num_generations=GENERATIONS, max_completion_length=COMPLETION_TOKENS, per_device_train_batch_size=BATCH,
    gradient_accumulation_steps=1, learning_rate=5e-6, beta=0.0, temperature=1.0, optim="adamw_torch",
    weight_decay=0.0, warmup_steps=0, logging_steps=1, report_to="none", seed=SEED, bf16=True,
)
QWEN25_05B = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
    num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ------------------------------------------------------------------------------------ set-up (parent)


def build_model(directory: Path) -> Path:
    """A random Qwen2 (Qwen2.5-0.5B shape, bf16) with a locally trained tokenizer, saved in `directory`."""
    if (directory / "config.json").is_file():
        return directory
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    words = "note item count list short long answer brief one two three four five six seven eight nine ten".split()
    corpus = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(16)) + f" {i}" for i in range(3000)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=4096, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(directory)
    torch.manual_seed(SEED)
    config = Qwen2Config(**QWEN25_05B, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=None)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    return directory


def prompts(count: int) -> list[str]:
    return [f"Write a short note about item {i}: list what it counts." for i in range(count)]


def write_node_inputs(workdir: Path, model_dir: Path, steps: int, four_bit: bool) -> Path:
    """The node's config + ShareGPT data for the same run."""
    import yaml

    data = workdir / "prompts.jsonl"
    with data.open("w") as handle:
        for text in prompts(steps * BATCH // GENERATIONS + 8):
            handle.write(json.dumps({"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": "ok"}]}) + "\n")
    training = {k: v for k, v in COMMON_GRPO.items()}
    training.update(output_dir=str(workdir / f"run_{'4bit' if four_bit else 'bf16'}"), max_steps=steps,
                    max_prompt_length=128, save_steps=10_000)
    config = {
        "training_parameters": training,
        "model": {"base_model_name": str(model_dir), "backend": "unsloth", "load_in_4bit": four_bit,
                  "lora_rank": 16, "lora_alpha": 16, "max_seq_length": 1024},
        "datasets": [{"path": str(data), "reward_funcs": [{"name": "max_length", "max_words": MAX_WORDS}]}],
        "dataset_settings": {"total_rows": steps * BATCH // GENERATIONS + 8},
        "reward": {"score_save_threshold": None},
    }
    path = workdir / f"config_{'4bit' if four_bit else 'bf16'}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


# ------------------------------------------------------------------------------------ variants (child)


def brevity(completions, **kwargs):
    """1.0 within MAX_WORDS words, falling linearly to 0.0 at twice that; blank scores 0 (as max_length)."""
    scores = []
    for completion in completions:
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        words = len(text.split())
        scores.append(0.0 if words == 0 else 1.0 if words <= MAX_WORDS else max(0.0, 2.0 - words / MAX_WORDS))
    return scores


def make_timer():
    """A TrainerCallback timing each optimizer step (CUDA synchronised) and keeping the completion lengths."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.lengths, self._start = [], [], 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

    return StepTimer()


def raw_dataset(steps: int):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts(steps * BATCH // GENERATIONS + 8)])


def run_raw_unsloth(model_dir: Path, workdir: Path, steps: int, four_bit: bool) -> dict:
    import importlib.util

    import unsloth  # noqa: F401  (first, as Unsloth requires)
    from trl import GRPOConfig, GRPOTrainer
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(model_dir), max_seq_length=1024, load_in_4bit=four_bit, dtype=None,
        fast_inference=importlib.util.find_spec("vllm") is not None, gpu_memory_utilization=0.6, max_lora_rank=16)
    model = FastLanguageModel.get_peft_model(
        model, r=16, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                    "down_proj"], use_gradient_checkpointing="unsloth", random_state=SEED)
    timer = make_timer()
    args = GRPOConfig(output_dir=str(workdir / "raw_unsloth"), max_steps=steps, save_strategy="no", **COMMON_GRPO)
    GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[brevity], args=args,
                train_dataset=raw_dataset(steps), callbacks=[timer]).train()
    generation = "vllm (colocate)" if getattr(model, "vllm_engine", None) is not None else "unsloth fast generate"
    return {"timer": timer, "generation": generation}


def run_raw_trl(model_dir: Path, workdir: Path, steps: int, lever: str = "") -> dict:
    import dataclasses

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").to("cuda")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    extra = {}
    if lever == "paged":
        extra = {"use_transformers_continuous_batching": True} if "use_transformers_continuous_batching" in fields \
            else {"use_transformers_paged": True}
    elif lever == "static":
        extra = {"cache_implementation": "static"}
    timer = make_timer()
    args = GRPOConfig(output_dir=str(workdir / "raw_trl"), max_steps=steps, save_strategy="no", **COMMON_GRPO, **extra)
    GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[brevity], args=args,
                train_dataset=raw_dataset(steps), callbacks=[timer]).train()
    return {"timer": timer, "generation": f"transformers generate{' + ' + lever if lever else ''}"}


def run_ours(model_dir: Path, workdir: Path, steps: int, four_bit: bool) -> dict:
    sys.path.insert(0, str(ROOT))
    from generation.core_pipelines.do_grpo_rl_with_a_prompt import pipeline
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.trainer import backends

    seen: dict = {}
    real_load_model, real_build = backends.load_model, pipeline.build_reward_and_callbacks

    def load_model(config, backend):
        seen["imported_before_model"] = sorted(m for m in ("transformers", "trl", "peft", "unsloth") if m in sys.modules)
        seen["loaded"] = real_load_model(config, backend)
        return seen["loaded"]

    def build_reward_and_callbacks(config, plan, paths):
        reward, callbacks = real_build(config, plan, paths)
        seen["timer"] = make_timer()
        return reward, callbacks + [seen["timer"]]

    backends.load_model, pipeline.build_reward_and_callbacks = load_model, build_reward_and_callbacks
    config_path = write_node_inputs(workdir, model_dir, steps, four_bit)
    pipeline.run_grpo_pipeline(config_path, fresh=True, base_dir=workdir)
    return {"timer": seen["timer"], "generation": seen["loaded"].generation_path,
            "imported_before_model": seen["imported_before_model"]}


def run_child(variant: str, model_dir: Path, workdir: Path, steps: int, warmup: int) -> dict:
    if variant.startswith("raw_unsloth"):
        outcome = run_raw_unsloth(model_dir, workdir, steps, four_bit=variant.endswith("4bit"))
    elif variant.startswith("raw_trl"):
        outcome = run_raw_trl(model_dir, workdir, steps, lever=variant.removeprefix("raw_trl").strip("_"))
    else:
        outcome = run_ours(model_dir, workdir, steps, four_bit=variant.endswith("4bit"))
    import torch

    timer = outcome.pop("timer")
    times, lengths = timer.times[warmup:], timer.lengths[warmup:]
    lengths_known = len(lengths) == len(times)
    tokens = sum(lengths) * BATCH if lengths_known else len(times) * BATCH * COMPLETION_TOKENS
    return {
        "variant": variant, **outcome, "steps_timed": len(times), "step_times_s": timer.times,
        "median_step_s": statistics.median(times) if times else None,
        "completion_tokens_per_s": tokens / sum(times) if times else None,
        "mean_completion_tokens": sum(lengths) / len(lengths) if lengths_known and lengths else None,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------------ report (parent)


def ratio(results: dict, a: str, b: str, key: str):
    x, y = results.get(a, {}).get(key), results.get(b, {}).get(key)
    return x / y if x and y else None


def summarize(results: dict) -> tuple[str, dict]:
    lines = [f"{'variant':<20}{'tokens/s':>10}{'median step s':>15}{'peak alloc GiB':>16}{'peak resv GiB':>15}  generation"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:<20}  failed: {r['error']}")
            continue
        lines.append(f"{name:<20}{r['completion_tokens_per_s']:>10.1f}{r['median_step_s']:>15.2f}"
                     f"{r['peak_allocated_gib']:>16.2f}{r['peak_reserved_gib']:>15.2f}  {r['generation']}")
    checks = {
        "ours/raw_unsloth tokens/s (>= 0.95)": (ratio(results, "ours_unsloth", "raw_unsloth", "completion_tokens_per_s"), 0.95, 1),
        "ours/raw_trl tokens/s (>= 1.8)": (ratio(results, "ours_unsloth", "raw_trl", "completion_tokens_per_s"), 1.8, 1),
        "ours/raw_unsloth peak allocated (<= 1.05)": (ratio(results, "ours_unsloth", "raw_unsloth", "peak_allocated_gib"), 1.05, -1),
        "ours/raw_unsloth peak reserved (<= 1.05)": (ratio(results, "ours_unsloth", "raw_unsloth", "peak_reserved_gib"), 1.05, -1),
        "ours_4bit/raw_unsloth_4bit tokens/s (>= 0.95)": (ratio(results, "ours_unsloth_4bit", "raw_unsloth_4bit", "completion_tokens_per_s"), 0.95, 1),
        "ours_4bit/raw_unsloth_4bit peak allocated (<= 1.05)": (ratio(results, "ours_unsloth_4bit", "raw_unsloth_4bit", "peak_allocated_gib"), 1.05, -1),
        "raw_unsloth/raw_trl tokens/s": (ratio(results, "raw_unsloth", "raw_trl", "completion_tokens_per_s"), None, 0),
    }
    ratios = {}
    for label, (value, goal, sense) in checks.items():
        if value is None:
            continue
        ratios[label] = value
        verdict = "" if goal is None else ("  met" if (value - goal) * sense >= 0 else "  MISSED")
        lines.append(f"{label:<52}{value:>7.3f}{verdict}")
    return "\n".join(lines), ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, from {', '.join(DEFAULT_VARIANTS + LEVERS)}")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per variant (warm-up included)")
    parser.add_argument("--warmup", type=int, default=1, help="first steps left out of the figures")
    parser.add_argument("--budget", type=float, default=570, help="seconds for the whole benchmark (device limit)")
    parser.add_argument("--workdir", type=Path, help="model, data and runs (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "outputs" / "bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = run_child(args.child, args.workdir / "model", args.workdir, args.steps, args.warmup)
        args.result.write_text(json.dumps(result, indent=2))
        return 0

    started = time.monotonic()
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu_grpo.py needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False here).\n"
              "Run it on a GPU machine, e.g. through the device tool with .gpu-site carried (see bench/README.md).",
              file=sys.stderr)
        return 2
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in DEFAULT_VARIANTS + LEVERS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; valid: {', '.join(DEFAULT_VARIANTS + LEVERS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gpu_grpo_"))
    args.out.mkdir(parents=True, exist_ok=True)
    build_model(workdir / "model")
    print(f"model built in {time.monotonic() - started:.0f} s; variants: {', '.join(variants)}", flush=True)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "UNSLOTH_DISABLE_STATISTICS": "1", "TOKENIZERS_PARALLELISM": "false"}
    results: dict = {}
    for variant in variants:
        left = args.budget - (time.monotonic() - started)
        if left < 60:
            results[variant] = {"error": f"skipped: {left:.0f} s of the budget left"}
            continue
        result_path, log_path = workdir / f"{variant}.json", args.out / f"gpu_grpo_{variant}.log"
        command = [sys.executable, __file__, "--child", variant, "--workdir", str(workdir), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--result", str(result_path)]
        began = time.monotonic()
        try:
            child = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=left - 10)
            log, failed = child.stdout + child.stderr, child.returncode != 0
        except subprocess.TimeoutExpired as error:
            log, failed = f"{error.stdout or ''}{error.stderr or ''}\ntimed out after {left - 10:.0f} s", True
        log = log if isinstance(log, str) else log.decode(errors="replace")
        log_path.write_text("\n".join(log.splitlines()[-300:]))
        if failed or not result_path.is_file():
            results[variant] = {"error": f"failed after {time.monotonic() - began:.0f} s, see {log_path.name}: "
                                         f"{(log.strip().splitlines() or [''])[-1][:200]}"}
        else:
            results[variant] = {**json.loads(result_path.read_text()), "wall_s": time.monotonic() - began}
        table, ratios = summarize(results)
        (args.out / "gpu_grpo.json").write_text(json.dumps({"results": results, "ratios": ratios,
                                                            "settings": {"steps": args.steps, "warmup": args.warmup,
                                                                         **COMMON_GRPO}}, indent=2))
        print(f"{variant}: done in {time.monotonic() - began:.0f} s", flush=True)
    print(summarize(results)[0])
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
