"""cli_utils/plot_run.py on synthetic metrics: PNGs written, panels skipped without data, torn lines."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils.plot_run import eval_reward_keys, main, plot_run, read_metrics, series, smooth

ROOT = Path(__file__).resolve().parents[1]


def synthetic_metrics(steps: int = 120, eval_every: int = 20, seed: int = 0) -> list[dict]:
    """Metrics shaped like the trainer's: three rewards on different scales, KL, lengths, eval lines."""
    rng = random.Random(seed)
    records = []
    for step in range(1, steps + 1):
        progress = step / steps
        answer = min(1.0, 0.2 + 0.6 * progress + rng.gauss(0, 0.1))
        fmt = min(1.0, 0.5 + 0.5 * math.sqrt(progress) + rng.gauss(0, 0.05))
        length_penalty = -0.3 + 0.2 * progress + rng.gauss(0, 0.05)
        records.append({
            "step": step, "epoch": step / 40,
            "reward": answer + fmt + length_penalty, "reward_std": 0.3 - 0.1 * progress,
            "rewards/answer_match/mean": answer, "rewards/format/mean": fmt,
            "rewards/length_penalty/mean": length_penalty,
            "kl": 0.002 * step * (1 + rng.gauss(0, 0.1)),
            "completions/mean_length": 180 - 60 * progress + rng.gauss(0, 8),
            "completions/min_length": 40 + rng.gauss(0, 5), "completions/max_length": 256,
            "grad_norm": abs(rng.gauss(0.5, 0.2)), "learning_rate": 5e-6 * (1 - progress),
            "loss": rng.gauss(0, 0.01), "judge/quality/calls": step * 8,
        })
        if step % eval_every == 0:
            records.append({"step": step, "epoch": step / 40, "eval_reward": 0.5 + progress,
                            "eval_rewards/answer_match/mean": 0.2 + 0.6 * progress, "eval_runtime": 3.2})
    return records


def write_metrics(run_dir: Path, records: list[dict], torn_tail: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + torn_tail)
    return run_dir


def test_all_plots_written(tmp_path):
    run = write_metrics(tmp_path / "run", synthetic_metrics(), torn_tail='{"step": 121, "reward": 0.')

    written = plot_run(run)

    names = sorted(p.name for p in written)
    assert names == ["completion_length.png", "eval_reward.png", "kl.png", "overview.png", "reward.png"]
    for path in written:
        assert path.parent == run / "plots"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 15_000


def test_panels_without_data_are_skipped(tmp_path):
    records = [{"step": s, "reward": s / 10, "loss": 0.1} for s in range(1, 6)]
    run = write_metrics(tmp_path / "run", records, torn_tail="{not json")

    written = plot_run(run, out_dir=tmp_path / "pictures")

    assert sorted(p.name for p in written) == ["overview.png", "reward.png"]
    assert all(p.parent == tmp_path / "pictures" for p in written)


def test_nothing_to_plot_and_missing_file(tmp_path, capsys):
    run = write_metrics(tmp_path / "run", [{"step": 1, "epoch": 0.1}])
    assert plot_run(run) == []
    assert main([str(run)]) == 1
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_reading_helpers(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "kl": 0.1}\n[1, 2]\n{"kl": 5}\n{"step": 2, "kl": NaN}\n{"step": 1, "kl": 0.2}\n{"st')
    records = read_metrics(path)
    assert len(records) == 3  # the list, the step-less line and the torn tail are skipped
    kl = series(records, "kl")
    assert kl.steps == [1.0] and kl.values == [0.2]  # NaN dropped, a re-logged step keeps the last value
    assert smooth([1.0, 2.0, 3.0])[1] == 1
    assert smooth([float(i) for i in range(40)])[0][-1] == pytest.approx(37.5)
    keys = eval_reward_keys([{"eval/quality": 1, "eval_loss": 2, "eval_reward": 3, "eval/quality/std": 1}])
    assert keys == ["eval_reward", "eval/quality"]


def test_main_and_script(tmp_path, capsys):
    run = write_metrics(tmp_path / "run", synthetic_metrics(steps=30, eval_every=10))
    assert main([str(run), "--out", str(tmp_path / "out")]) == 0
    assert "overview.png" in capsys.readouterr().out
    done = subprocess.run([sys.executable, "cli_utils/plot_run.py", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--out" in done.stdout
