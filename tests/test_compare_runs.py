"""cli_utils/compare_runs.py on synthetic run directories: metrics, best eval, config differences."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from cli_utils.compare_runs import best_window, compare_runs, flatten, last_window, main

ROOT = Path(__file__).resolve().parents[1]


def make_run(root: Path, name: str, rewards: list[float], lr: float, rank: int, summary: dict | None = None,
             evals: dict[int, float] | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    lines = []
    for step, reward in enumerate(rewards, start=1):
        lines.append({"step": step, "reward": reward, "rewards/answer/mean": reward / 2, "kl": 0.01 * step,
                      "completions/mean_length": 100 + step})
        if evals and step in evals:
            lines.append({"step": step, "eval_reward": evals[step], "eval_runtime": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 99, "rew')
    config = {"training_parameters": {"output_dir": str(run), "learning_rate": lr, "max_steps": len(rewards)},
              "model": {"base_model_name": "tiny", "lora_rank": rank},
              "datasets": [{"path": "inputs/a.jsonl", "reward_funcs": [{"name": "answer"}]}]}
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(config))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    return run


def row(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.lstrip("≠ ").startswith(label))
    return line.lstrip("≠ ")[len(label):].split()


def test_table_content(tmp_path):
    a = make_run(tmp_path, "lr1e-5", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 1e-5, 8,
                 summary={"steps": 6, "best_checkpoint": "checkpoints/checkpoint-4", "best_metric": "eval_reward",
                          "best_value": 0.7})
    b = make_run(tmp_path, "lr3e-5", [0.5, 0.9, 0.8, 0.2, 0.1, 0.1], 3e-5, 8, evals={2: 0.4, 4: 0.9})

    table = compare_runs([a, b], window=2)

    assert table.splitlines()[0].split() == ["run", "lr1e-5", "lr3e-5"]
    assert row(table, "steps") == ["6", "6"]  # the torn step-99 line is ignored
    assert row(table, "final reward") == ["0.55", "*", "0.1"]
    assert row(table, "best reward") == ["0.55", "0.85", "*"]
    assert row(table, "final answer") == ["0.275", "*", "0.05"]
    assert row(table, "final KL") == ["0.055", "0.055"]
    assert row(table, "final completion length") == ["105.5", "105.5"]
    assert row(table, "best eval value") == ["0.7", "0.9", "*"]
    assert row(table, "best checkpoint") == ["checkpoints/checkpoint-4", "step", "4"]
    assert row(table, "training_parameters.learning_rate") == ["1e-05", "3e-05"]
    assert "≠ training_parameters.learning_rate" in table
    assert "  model.lora_rank" in table and "≠ model.lora_rank" not in table  # shown (key setting), not differing
    assert "output_dir" not in table
    assert "last 2 logged steps" in table


def test_differing_nested_keys_and_run_without_metrics(tmp_path):
    a = make_run(tmp_path / "x", "run", [0.1, 0.2], 1e-5, 8)
    b = tmp_path / "y" / "run"
    b.mkdir(parents=True)
    config = yaml.safe_load((a / "config.resolved.yaml").read_text())
    config["datasets"][0]["path"] = "inputs/b.jsonl"
    (b / "config.resolved.yaml").write_text(yaml.safe_dump(config))

    table = compare_runs([a, b])

    assert table.splitlines()[0].split() == ["run", "x/run", "y/run"]  # same folder names: parents added
    assert row(table, "datasets[0].path") == ["inputs/a.jsonl", "inputs/b.jsonl"]
    assert row(table, "final reward") == ["0.15", "-"]


def test_helpers():
    assert last_window([1.0, 2.0, 3.0], 2) == 2.5 and last_window([], 3) is None
    assert best_window([1.0, 5.0, 1.0, 1.0], 2) == 3.0 and best_window([2.0], 5) == 2.0
    assert flatten({"a": {"b": 1}, "c": [{"d": 2}], "e": [1, 2]}) == {"a.b": 1, "c[0].d": 2, "e": [1, 2]}


def test_main_and_errors(tmp_path, capsys):
    run = make_run(tmp_path, "run", [0.1, 0.2, 0.3], 1e-5, 8)
    assert main([str(run)]) == 0
    assert "final reward" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main([str(run), str(tmp_path / "empty")]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    done = subprocess.run([sys.executable, "cli_utils/compare_runs.py", str(run), str(run)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "final KL" in done.stdout
