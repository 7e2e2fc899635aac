"""Step time of our node against a plain TRL GRPOTrainer script: same model, data, reward and settings.

    python bench/cpu_overhead.py [--steps 8] [--warmup 2] [--hidden 256]

Each side runs in its own subprocess, one after the other, on a small random-weight Llama built here
(no download). Step time = the gap between consecutive logged steps (wall clock), median after warm-up.
Goal: ours / plain <= 1.10.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "inputs" / "grpo_default" / "short_answers.jsonl"

SETTINGS = dict(learning_rate=1e-4, per_device_train_batch_size=8, num_generations=8, max_completion_length=32,
                gradient_checkpointing=False, beta=0.0, seed=7, logging_steps=1, report_to="none", bf16=False)

PLAIN_TRL = textwrap.dedent('''
    """A plain TRL GRPO script: the baseline."""
    import json, sys, time
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model_dir, data_path, out_dir, steps, settings = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
    rows = []
    for line in open(data_path):
        turns = json.loads(line)["conversations"]
        rows.append({"prompt": [{"role": "system", "content": "Answer in one short sentence."},
                                {"role": "user", "content": turns[0]["value"]}]})

    def brevity(completions, **kwargs):
        words = [len(c[0]["content"].split()) for c in completions]
        return [1.0 if n <= 12 else max(0.0, 1.0 - (n - 12) / 12) for n in words]

    times = []
    class Timer(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            times.append((state.global_step, time.time()))

    args = GRPOConfig(output_dir=out_dir, max_steps=steps, save_strategy="no", **settings)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=brevity, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(model_dir),
                          peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
                          callbacks=[Timer()])
    trainer.train()
    json.dump(times, open(out_dir + "/times.json", "w"))
''')


def build_model(directory: Path, hidden: int) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_model import build_tiny_model

    return build_tiny_model(directory, hidden_size=hidden)


def our_config(model_dir: Path, out_dir: Path, steps: int) -> dict:
    settings = {k: v for k, v in SETTINGS.items() if k not in ("bf16",)}
    return {
        "training_parameters": {**settings, "output_dir": str(out_dir), "max_steps": steps, "save_steps": 10_000,
                                "max_prompt_length": None},
        "model": {"base_model_name": str(model_dir), "lora_rank": 16, "lora_alpha": 32, "backend": "trl"},
        "reward": {"score_save_threshold": None},
        "datasets": [{"path": str(DATA), "system_prompt": "Answer in one short sentence.",
                      "reward_funcs": [{"name": "max_length", "max_words": 12}]}],
        "dataset_settings": {"total_rows": 80},
    }


def median_step_time(times: list[tuple[int, float]], warmup: int) -> float:
    """Median gap between consecutive logged steps, skipping the first `warmup` steps."""
    by_step = {}
    for step, stamp in times:
        by_step.setdefault(step, stamp)  # first log line of each step
    steps = sorted(s for s in by_step if s >= 1)
    gaps = [by_step[b] - by_step[a] for a, b in zip(steps, steps[1:]) if a >= warmup]
    return statistics.median(gaps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp / "model", args.hidden)

        script = tmp / "plain_trl.py"
        script.write_text(PLAIN_TRL)
        (tmp / "plain").mkdir()
        subprocess.run([sys.executable, str(script), str(model_dir), str(DATA), str(tmp / "plain"), str(args.steps),
                        json.dumps(SETTINGS)], check=True, cwd=tmp, capture_output=True)
        plain = median_step_time(json.loads((tmp / "plain" / "times.json").read_text()), args.warmup)

        config = tmp / "ours.yaml"
        config.write_text(yaml.safe_dump(our_config(model_dir, tmp / "ours", args.steps)))
        subprocess.run([sys.executable, str(ROOT / "run_augmentoolkit.py"), "--node", "grpo-rl-pipeline",
                        "--config", str(config)], check=True, cwd=ROOT, capture_output=True)
        records = [json.loads(line) for line in (tmp / "ours" / "metrics.jsonl").read_text().splitlines()]
        ours = median_step_time([(r["step"], r["wall_time"]) for r in records], args.warmup)

    print(f"model: random Llama hidden={args.hidden}, 2 layers; {args.steps} steps, median after {args.warmup}")
    print(f"{'':24}{'median s/step':>14}")
    print(f"{'plain TRL GRPOTrainer':24}{plain:14.3f}")
    print(f"{'ours (grpo-rl-pipeline)':24}{ours:14.3f}")
    print(f"ratio ours/plain: {ours / plain:.3f}  (goal <= 1.10: {'met' if ours / plain <= 1.10 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
