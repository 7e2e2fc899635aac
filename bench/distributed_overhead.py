"""The same GRPO run with 1 and with 2 processes on CPU: completion tokens/s side by side.

    python bench/distributed_overhead.py [--steps 8] [--warmup 2] [--hidden 256]

Same global batch either way (16 completions per step: 16 on one process, 8 per process on two), same
model (a random-weight Llama built here), data, reward and seed; each run is a real `run_augmentoolkit.py`
in a subprocess (`--num-processes 2` for the second: accelerate, gloo). Tokens/s = completion tokens of the
steps after the warm-up (TRL's mean completion length x global batch) over the wall time between those
logged steps. Each process gets cores / N threads (OMP_NUM_THREADS). On a 2-core machine two processes share the cores, so the point is bounded overhead (the
gathers, barriers and single writer), not a speed-up. Goal: 2-process throughput >= 0.8x 1-process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
GLOBAL_BATCH = 16
DATA = ROOT / "inputs" / "grpo_default" / "short_answers.jsonl"


def run_config(folder: Path, model_dir: Path, processes: int, steps: int) -> Path:
    config = {
        "training_parameters": {
            "output_dir": str(folder / f"run_{processes}"), "max_steps": steps, "seed": 7, "learning_rate": 1e-4,
            "per_device_train_batch_size": GLOBAL_BATCH // processes, "num_generations": 8,
            "max_completion_length": 32, "save_steps": 1000, "logging_steps": 1, "beta": 0.0,
            "gradient_checkpointing": False,
        },
        "model": {"base_model_name": str(model_dir), "lora_rank": 16, "lora_alpha": 32},
        "datasets": [{"path": str(DATA), "system_prompt": "Answer in one short sentence.",
                      "reward_funcs": [{"name": "max_length", "max_words": 12}]}],
        "dataset_settings": {"total_rows": 64},
    }
    path = folder / f"config_{processes}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def tokens_per_second(run: Path, warmup: int) -> float:
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logs if "completions/mean_length" in m]
    measured = steps[warmup:]
    if len(measured) < 2:
        raise SystemExit(f"{run}: too few logged steps after the warm-up")
    tokens = sum(m["completions/mean_length"] * GLOBAL_BATCH for m in measured[1:])
    return tokens / (measured[-1]["wall_time"] - measured[0]["wall_time"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()

    from tiny_model import build_tiny_model

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as folder:
        folder = Path(folder)
        model_dir = build_tiny_model(folder / "model", hidden_size=args.hidden)
        for processes in (1, 2):
            config = run_config(folder, model_dir, processes, args.steps)
            launcher = ["--num-processes", str(processes)] if processes > 1 else []
            command = [sys.executable, str(ROOT / "run_augmentoolkit.py"), *launcher, "--node", "grpo-rl-pipeline",
                       "--config", str(config)]
            threads = str(max(1, (os.cpu_count() or 1) // processes))  # the same cores in all, shared out
            completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={
                **os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": threads})
            if completed.returncode != 0:
                print(completed.stdout[-3000:], completed.stderr[-3000:], sep="\n")
                return 1
            results[processes] = tokens_per_second(folder / f"run_{processes}", args.warmup)
    ratio = results[2] / results[1]
    print(f"completion tokens/s, global batch {GLOBAL_BATCH}, hidden {args.hidden}, {args.steps} steps "
          f"({args.warmup} warm-up), {os.cpu_count()} cores")
    print(f"  1 process : {results[1]:8.1f}")
    print(f"  2 processes: {results[2]:8.1f}")
    print(f"  ratio 2/1 : {ratio:8.3f}  (goal >= 0.8)")
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
