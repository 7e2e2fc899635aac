"""Draw a run's metrics.jsonl as PNG plots: rewards, eval reward, KL, completion length, and an overview.

    python cli_utils/plot_run.py outputs/my_run [--out some/folder]

Writes into <run>/plots/ (or --out): reward.png (total reward and one panel per reward function, raw and
smoothed), eval_reward.png, kl.png, completion_length.png and overview.png (all panels on one page, plus
loss, grad norm and learning rate when logged). A panel with no data is left out; a torn last line (a
run still writing, or killed) is skipped. The pipeline calls plot_run() at the end of every run.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python cli_utils/<tool>.py`
    sys.path.insert(0, str(ROOT))

from cli_utils.cli_io import CliInputError, writable_dir  # noqa: E402
from generation.core_pipelines.do_grpo_rl_with_a_prompt.run.files import read_jsonl  # noqa: E402

METRICS_FILE = "metrics.jsonl"
EVAL_PREFIXES = ("eval_", "eval/")
TOTAL_REWARD = "reward"
LENGTH = "completions/mean_length"
LENGTH_MIN, LENGTH_MAX = "completions/min_length", "completions/max_length"


@dataclass
class Series:
    label: str
    steps: list[float]
    values: list[float]


# ------------------------------------------------------------------------------------------ reading


def read_metrics(path: Path) -> list[dict]:
    """Every complete JSON object in a metrics file; torn or foreign lines are skipped."""
    return [record for record in read_jsonl(path) if _number(record.get("step")) is not None]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def is_eval_record(record: dict) -> bool:
    return any(key.startswith(EVAL_PREFIXES) for key in record)


def series(records: Iterable[dict], key: str, label: str | None = None) -> Series | None:
    """(step, value) pairs of `key`, sorted by step; a step logged twice (after a resume) keeps the last."""
    by_step: dict[float, float] = {}
    for record in records:
        value = _number(record.get(key))
        if value is not None:
            by_step[float(record["step"])] = value
    if not by_step:
        return None
    steps = sorted(by_step)
    return Series(label or key, steps, [by_step[s] for s in steps])


def reward_function_keys(records: list[dict]) -> list[str]:
    """rewards/<name>/mean keys, in first-logged order."""
    keys: dict[str, None] = {}
    for record in records:
        for key in record:
            if key.startswith("rewards/") and key.endswith("/mean"):
                keys.setdefault(key)
    return list(keys)


def eval_reward_keys(records: list[dict]) -> list[str]:
    """Eval reward keys, eval_reward first: eval_reward, eval_rewards/<name>/mean, eval/<name>[/mean]."""
    keys: dict[str, None] = {}
    for record in records:
        for key in record:
            if (key == "eval_reward" or key.startswith("eval_rewards/") and key.endswith("/mean")
                    or key.startswith("eval/") and not key.endswith(("std", "count", "runtime"))):
                keys.setdefault(key)
    return sorted(keys, key=lambda key: key != "eval_reward")


def _same(a: Series, b: Series) -> bool:
    return a.steps == b.steps and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(a.values, b.values))


def smooth(values: list[float]) -> tuple[list[float], int]:
    """Trailing rolling mean with a window of ~1/10 of the points (1 = no smoothing)."""
    window = max(1, min(50, len(values) // 10))
    if window == 1:
        return values, 1
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out, window


def _short(key: str) -> str:
    """'rewards/answer_match/mean' -> 'answer_match'; 'eval_rewards/x/mean' -> 'x'; 'eval/x' -> 'x'."""
    for prefix in ("eval_rewards/", "rewards/", "eval/", "eval_"):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.removesuffix("/mean")


# ------------------------------------------------------------------------------------------ drawing


def _style(ax, title: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_xlim()
    if high - low < 2:  # one or two logged steps: keep whole-number ticks
        ax.set_xlim((low + high) / 2 - 1, (low + high) / 2 + 1)
    ax.grid(True, alpha=0.3)


def _draw_smoothed(ax, s: Series, color: str, label: str | None = None, smoothing: bool = True) -> None:
    smoothed, window = smooth(s.values) if smoothing else (s.values, 1)
    if window > 1:
        ax.plot(s.steps, s.values, color=color, alpha=0.25, linewidth=1, label=f"{label or s.label} (raw)")
        ax.plot(s.steps, smoothed, color=color, linewidth=2, label=f"{label or s.label} (mean of {window})")
    else:
        ax.plot(s.steps, s.values, color=color, linewidth=1.8, marker="o" if len(s.steps) < 30 else None,
                markersize=3, label=label or s.label)


def _legend(ax, many: bool = False) -> None:
    if len(ax.get_legend_handles_labels()[0]) > 1:  # a lone line is named by the title
        ax.legend(fontsize=8, loc="best", ncol=2 if many else 1, framealpha=0.8)


def _colors(n: int) -> list[str]:
    palette = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    return [palette[i % len(palette)] for i in range(n)]


def panel_reward_total(ax, total: Series, std: Series | None) -> None:
    if std is not None and std.steps == total.steps:
        low = [v - s for v, s in zip(total.values, std.values)]
        high = [v + s for v, s in zip(total.values, std.values)]
        ax.fill_between(total.steps, low, high, color="C0", alpha=0.1, linewidth=0, label="± std within step")
    _draw_smoothed(ax, total, "C0", "total reward")
    _style(ax, "Total reward", "reward")
    _legend(ax)


def panel_reward_functions(ax, functions: list[Series]) -> None:
    for s, color in zip(functions, _colors(len(functions))):
        smoothed, window = smooth(s.values)
        ax.plot(s.steps, smoothed, color=color, linewidth=1.8, label=_short(s.label))
    _style(ax, "Reward per function" + (" (smoothed)" if smooth(functions[0].values)[1] > 1 else ""), "mean reward")
    _legend(ax, many=len(functions) > 4)


def panel_eval(ax, evals: list[Series], train_total: Series | None) -> None:
    if train_total is not None:  # the training reward for comparison, smoothed, in the background
        smoothed, window = smooth(train_total.values)
        label = "train reward" + (f" (mean of {window})" if window > 1 else "")
        ax.plot(train_total.steps, smoothed, color="0.6", linestyle="--", linewidth=1.2, label=label)
    for s, color in zip(evals, _colors(len(evals))):
        label = "eval reward (total)" if s.label == "eval_reward" else f"eval {_short(s.label)}"
        ax.plot(s.steps, s.values, color=color, linewidth=1.8, marker="o", markersize=4, label=label)
    _style(ax, "Eval reward", "reward")
    _legend(ax, many=len(evals) > 4)


def panel_single(ax, s: Series, title: str, ylabel: str, color: str = "C0", smoothing: bool = True) -> None:
    _draw_smoothed(ax, s, color, ylabel, smoothing)
    _style(ax, title, ylabel)
    _legend(ax)


def panel_length(ax, mean: Series, low: Series | None, high: Series | None) -> None:
    if low is not None and high is not None and low.steps == high.steps:
        ax.fill_between(low.steps, low.values, high.values, color="C2", alpha=0.12, linewidth=0, label="min to max")
    _draw_smoothed(ax, mean, "C2", "mean length")
    _style(ax, "Completion length", "tokens")
    _legend(ax)


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write the PNGs for `run_dir` into `out_dir` (default <run>/plots); returns the files written.

    Raises FileNotFoundError when the run has no metrics.jsonl.
    """
    from matplotlib.figure import Figure  # drawing straight to a Figure uses Agg; no pyplot, no display

    run_dir = Path(run_dir)
    metrics_path = run_dir / METRICS_FILE if run_dir.is_dir() else run_dir
    if not metrics_path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILE} in {run_dir}")
    out = writable_dir(out_dir if out_dir is not None else metrics_path.parent / "plots")
    records = read_metrics(metrics_path)
    train = [r for r in records if not is_eval_record(r)]
    evals = [r for r in records if is_eval_record(r)]

    total = series(train, TOTAL_REWARD)
    functions = [s for s in (series(train, key) for key in reward_function_keys(train)) if s is not None]
    if total is not None:  # a function series that only repeats the total adds nothing
        functions = [s for s in functions if not _same(s, total)] or functions
    eval_series = [s for s in (series(evals, key) for key in eval_reward_keys(evals)) if s is not None]
    if eval_series and eval_series[0].label == "eval_reward":
        eval_series = eval_series[:1] + [s for s in eval_series[1:] if not _same(s, eval_series[0])]
    kl = series(train, "kl")
    length = series(train, LENGTH)
    extras = [(series(train, key), title, ylabel) for key, title, ylabel in (
        ("loss", "Loss", "loss"), ("grad_norm", "Gradient norm", "grad norm"),
        ("learning_rate", "Learning rate", "learning rate"), ("entropy", "Entropy", "entropy"))]

    # Each panel: (file name or None for overview-only, drawing function).
    panels = []
    if total is not None or functions:
        def draw_rewards(axes_row):
            index = 0
            if total is not None:
                panel_reward_total(axes_row[index], total, series(train, "reward_std"))
                index += 1
            if functions:
                panel_reward_functions(axes_row[index], functions)
        panels.append(("reward", (total is not None) + bool(functions), draw_rewards))
    if eval_series:
        panels.append(("eval_reward", 1, lambda axes: panel_eval(axes[0], eval_series, total)))
    if kl is not None:
        panels.append(("kl", 1, lambda axes: panel_single(axes[0], kl, "KL divergence to the reference", "KL", "C3")))
    if length is not None:
        panels.append(("completion_length", 1, lambda axes: panel_length(
            axes[0], length, series(train, LENGTH_MIN), series(train, LENGTH_MAX))))
    extra_panels = [
        (None, 1, (lambda s, t, y: lambda axes: panel_single(axes[0], s, t, y, "C7", y != "learning rate"))(s, t, y))
        for s, t, y in extras if s is not None
    ]
    if not panels:
        return []

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, width, draw in panels:
        fig = Figure(figsize=(6.5 * width, 4.2), layout="constrained")
        axes = fig.subplots(1, width, squeeze=False)[0]
        draw(list(axes))
        fig.suptitle(f"{run_dir.name}", fontsize=9, color="0.4")
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        written.append(path)

    # Overview: every panel in a grid, 2 columns.
    cells = sum(width for _, width, _ in panels + extra_panels)
    columns = 2 if cells > 1 else 1
    rows = math.ceil(cells / columns)
    fig = Figure(figsize=(6.5 * columns, 4.0 * rows), layout="constrained")
    grid = list(fig.subplots(rows, columns, squeeze=False).flat)
    index = 0
    for _, width, draw in panels + extra_panels:
        draw(grid[index:index + width])
        index += width
    for ax in grid[index:]:
        ax.set_visible(False)
    steps = max((float(r["step"]) for r in records), default=0)
    fig.suptitle(f"{run_dir.name}: {int(steps)} step{'s' if steps != 1 else ''}", fontsize=13)
    path = out / "overview.png"
    fig.savefig(path, dpi=90)
    written.append(path)
    return written


# --------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw a GRPO run's metrics.jsonl as PNG plots.")
    parser.add_argument("run_dir", help="Run directory (holding metrics.jsonl).")
    parser.add_argument("--out", default=None, help="Folder for the PNGs (default <run>/plots).")
    args = parser.parse_args(argv)
    try:
        written = plot_run(args.run_dir, args.out)
    except (FileNotFoundError, CliInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot write the plots: {error.strerror or error}", file=sys.stderr)
        return 2
    if not written:
        print(f"error: {args.run_dir}/{METRICS_FILE} has nothing to plot yet", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
