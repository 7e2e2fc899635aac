"""Print a side-by-side table of GRPO runs: final and best metrics, and the config keys that differ.

    python cli_utils/compare_runs.py outputs/lr1e-5 outputs/lr3e-5 [--window 5]

Per run (one column each), from metrics.jsonl, summary.json and config.resolved.yaml:
  steps; final reward (mean of the last --window logged steps) and per reward function; best reward
  (highest mean of --window consecutive steps); final KL; final mean completion length; the best eval
  metric, its value and checkpoint (summary.json, else the best eval_reward in metrics.jsonl); then the
  key settings (learning rate, LoRA rank, ...) and every other config key whose value differs between runs.
The best value of each reward row is marked with '*'. The sweep runner prints this table at its end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python cli_utils/<tool>.py`
    sys.path.insert(0, str(ROOT))

from cli_utils.cli_io import CliInputError, read_utf8  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import read_jsonl  # noqa: E402

KEY_SETTINGS = (
    "model.base_model_name",
    "training_parameters.learning_rate",
    "model.lora_rank",
    "model.lora_alpha",
    "training_parameters.num_generations",
    "training_parameters.max_steps",
    "training_parameters.beta",
)
IGNORED_SETTINGS = ("training_parameters.output_dir",)
MISSING = "-"


# ------------------------------------------------------------------------------------------ reading




def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _values(records: list[dict], key: str) -> list[float]:
    values = [_number(r.get(key)) for r in records]
    return [v for v in values if v is not None]


def last_window(values: list[float], window: int) -> float | None:
    return sum(values[-window:]) / len(values[-window:]) if values else None


def best_window(values: list[float], window: int) -> float | None:
    """The highest mean of `window` consecutive values (of all of them when there are fewer)."""
    if not values:
        return None
    window = min(window, len(values))
    return max(sum(values[i:i + window]) / window for i in range(len(values) - window + 1))


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'c': [{'d': 2}]} -> {'a.b': 1, 'c[0].d': 2}."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        out = {}
        for index, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{index}]"))
        return out
    return {prefix: value}


def run_facts(run_dir: Path, window: int) -> dict[str, Any]:
    """Everything the table shows about one run."""
    records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if _number(r.get("step")) is not None]
    is_eval = [any(k.startswith(("eval_", "eval/")) for k in r) for r in records]
    train = [r for r, flag in zip(records, is_eval) if not flag]
    evals = [r for r, flag in zip(records, is_eval) if flag]
    summary: dict = {}
    if (run_dir / "summary.json").is_file():
        try:
            loaded = json.loads(read_utf8(run_dir / "summary.json"))
            summary = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            pass
    config: dict = {}
    if (run_dir / "config.resolved.yaml").is_file():
        try:
            loaded = yaml.safe_load(read_utf8(run_dir / "config.resolved.yaml"))
            config = flatten(loaded) if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            pass

    rewards = _values(train, "reward")
    facts: dict[str, Any] = {
        "steps": summary.get("steps") if _number(summary.get("steps")) is not None
        else (max(int(r["step"]) for r in records) if records else None),
        "final reward": last_window(rewards, window) if rewards else _number(summary.get("last_window_reward")),
        "best reward": best_window(rewards, window),
        "final KL": last_window(_values(train, "kl"), window),
        "mean length": last_window(_values(train, "completions/mean_length"), window),
        "functions": {},
        "config": config,
    }
    for key in dict.fromkeys(k for r in train for k in r if k.startswith("rewards/") and k.endswith("/mean")):
        facts["functions"][key[len("rewards/"):-len("/mean")]] = last_window(_values(train, key), window)
    # Best eval: what the trainer recorded in summary.json, else the best eval_reward logged.
    if summary.get("best_metric") or summary.get("best_checkpoint"):
        facts["best eval metric"] = summary.get("best_metric")
        facts["best eval value"] = _number(summary.get("best_value"))
        facts["best checkpoint"] = summary.get("best_checkpoint")
    else:
        logged = [(v, int(r["step"])) for r in evals if (v := _number(r.get("eval_reward"))) is not None]
        if logged:
            value, step = max(logged)
            facts.update({"best eval metric": "eval_reward", "best eval value": value,
                          "best checkpoint": f"step {step}"})
    facts["has data"] = bool(records or summary or config)
    return facts


# ------------------------------------------------------------------------------------------- table


def _format(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    text = str(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def _mark_best(values: list[Any]) -> list[str]:
    """Format a row of numbers, '*' after the highest when the runs differ."""
    numbers = [_number(v) for v in values]
    present = [n for n in numbers if n is not None]
    best = max(present) if len(present) > 1 and len(set(present)) > 1 else None
    return [_format(v) + (" *" if best is not None and n == best else "") for v, n in zip(values, numbers)]


def column_names(run_dirs: list[Path]) -> list[str]:
    """Each run's folder name, with parent folders added until the names are unique."""
    parts = [p.resolve().parts for p in run_dirs]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in run_dirs]


def render(header: list[str], sections: list[tuple[str, list[list[str]]]]) -> str:
    rows = [row for _, section in sections for row in section]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    line = lambda row: "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()  # noqa: E731
    out = [line(header), "  ".join("-" * w for w in widths)]
    for title, section in sections:
        if section:
            out.append(f"[{title}]")
            out.extend(line(row) for row in section)
    return "\n".join(out)


def compare_runs(run_dirs: list[str | Path], window: int = 5) -> str:
    """The comparison table as text (see the module doc). Raises FileNotFoundError for a missing run."""
    paths = [Path(p) for p in run_dirs]
    for path in paths:
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory")
    facts = [run_facts(p, window) for p in paths]
    for path, fact in zip(paths, facts):
        if not fact["has data"]:
            raise FileNotFoundError(f"{path} has no metrics.jsonl, summary.json or config.resolved.yaml")

    metrics = [["steps"] + [_format(f["steps"]) for f in facts]]
    for label in ("final reward", "best reward"):
        metrics.append([label] + _mark_best([f[label] for f in facts]))
    functions = list(dict.fromkeys(name for f in facts for name in f["functions"]))
    for name in functions:
        metrics.append([f"  final {name}"] + _mark_best([f["functions"].get(name) for f in facts]))
    metrics.append(["final KL"] + [_format(f["final KL"]) for f in facts])
    metrics.append(["final completion length"] + [_format(f["mean length"]) for f in facts])
    evaluation = []
    if any("best eval metric" in f for f in facts):
        evaluation.append(["best eval metric"] + [_format(f.get("best eval metric")) for f in facts])
        names = {f.get("best eval metric") for f in facts if f.get("best eval metric")}
        comparable = len(names) == 1 and "loss" not in next(iter(names))  # '*' means highest: not for a loss
        values = [f.get("best eval value") for f in facts]
        evaluation.append(["best eval value"] + (_mark_best(values) if comparable else [_format(v) for v in values]))
        evaluation.append(["best checkpoint"] + [_format(f.get("best checkpoint")) for f in facts])

    configs = [f["config"] for f in facts]
    keys = list(dict.fromkeys(k for c in configs for k in c if k not in IGNORED_SETTINGS))
    differing = [k for k in keys if len({json.dumps(c.get(k, MISSING), default=str) for c in configs}) > 1]
    shown = [k for k in KEY_SETTINGS if any(k in c for c in configs)]
    shown += [k for k in differing if k not in shown]
    settings = [[("≠ " if k in differing else "  ") + k] + [_format(c.get(k)) for c in configs] for k in shown]

    table = render(["run"] + column_names(paths),
                   [("metrics", metrics), ("evaluation", evaluation), ("config (≠: differs between runs)", settings)])
    note = (f"final = mean of the last {window} logged steps; best = highest mean of {window} consecutive steps; "
            "* = highest")
    return f"{table}\n{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compare GRPO runs side by side: final and best metrics, config.")
    parser.add_argument("run_dirs", nargs="+", help="Run directories.")
    parser.add_argument("--window", type=int, default=5, help="Logged steps averaged for 'final' and 'best' (default 5).")
    args = parser.parse_args(argv)
    try:
        print(compare_runs(args.run_dirs, window=max(1, args.window)))
    except (FileNotFoundError, CliInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
