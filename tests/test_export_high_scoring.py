"""cli_utils/export_high_scoring.py: formats, threshold, de-duplication, malformed lines, atomic output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli_utils.export_high_scoring import ExportError, export_high_scoring, main

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = {"role": "system", "content": "Answer briefly."}


def record(question: str, completion: str, combined: float | None, length: float | None = 1.0, step: int = 1) -> dict:
    """A line as the trainer writes it (run_files.conversation_record)."""
    prompt = [SYSTEM, {"role": "user", "content": question}]
    messages = prompt + [{"role": "assistant", "content": completion}]
    roles = {"system": "system", "user": "human", "assistant": "gpt"}
    return {
        "conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in messages],
        "messages": messages,
        "prompt": prompt,
        "completion": completion,
        "scores": {"combined": combined, "length": length},
        "dataset_name": "math",
        "step": step,
    }


def write_run(run_dir: Path, records: list[dict], torn_tail: str = "") -> Path:
    run_dir.mkdir(parents=True)
    lines = [json.dumps(r) for r in records]
    (run_dir / "high_scoring_examples.jsonl").write_text("\n".join(lines) + "\n" + torn_tail)
    return run_dir


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run", [
        record("2+2?", "4", 0.9, step=1),
        record("2+2?", "4", 0.95, step=2),  # same prompt + completion: kept once, with 0.95
        record("2+2?", "four", 0.8, step=3),
        record("3+3?", "6", 0.5, length=0.1, step=4),
        record("5+5?", "10", None, step=5),
        {"scores": {"combined": 1.0}},  # no dialogue: malformed
        "not a dict",
    ], torn_tail='{"prompt": [{"role": "user", "con')


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sharegpt_with_threshold_and_dedup(run_dir, tmp_path):
    out = tmp_path / "sft.jsonl"

    report = export_high_scoring([run_dir], out, fmt="sharegpt", threshold=0.7)

    rows = read(out)
    assert [r["conversations"][-1]["value"] for r in rows] == ["4", "four"]
    assert rows[0]["conversations"][0] == {"from": "system", "value": "Answer briefly."}
    assert [turn["from"] for turn in rows[0]["conversations"]] == ["system", "human", "gpt"]
    assert set(rows[0]) == {"conversations"}
    assert (report.lines, report.malformed, report.without_score, report.below_threshold, report.duplicates,
            report.written) == (8, 3, 1, 1, 1, 2)


def test_dedup_keeps_highest_score_and_best_per_prompt(run_dir, tmp_path):
    out = tmp_path / "sft.jsonl"

    export_high_scoring([run_dir], out, fmt="messages", with_scores=True)
    rows = read(out)
    assert len(rows) == 4  # 2+2?/4, 2+2?/four, 3+3?/6, 5+5?/10 (no threshold: unscored kept)
    assert rows[0]["scores"]["combined"] == 0.95 and rows[0]["step"] == 2
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "4"}

    export_high_scoring([run_dir], out, fmt="messages", best_per_prompt=True, with_scores=True)
    rows = read(out)
    assert [(r["messages"][1]["content"], r["messages"][-1]["content"]) for r in rows] == [
        ("2+2?", "4"), ("3+3?", "6"), ("5+5?", "10")]


def test_prompt_completion_format_and_score_key(run_dir, tmp_path):
    out = tmp_path / "pc.jsonl"

    report = export_high_scoring([run_dir / "high_scoring_examples.jsonl"], out, fmt="prompt-completion",
                                 threshold=0.5, score_key="length")

    rows = read(out)
    assert report.below_threshold == 1  # 3+3? has length 0.1
    assert rows[0] == {"prompt": [SYSTEM, {"role": "user", "content": "2+2?"}],
                       "completion": [{"role": "assistant", "content": "4"}]}
    assert {r["completion"][0]["content"] for r in rows} == {"4", "four", "10"}


def test_several_runs_and_records_with_only_conversations(tmp_path):
    other = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}],
             "scores": {"combined": 2.0}}
    a = write_run(tmp_path / "a", [record("2+2?", "4", 0.9)])
    b = write_run(tmp_path / "b", [record("2+2?", "4", 0.99), other])

    report = export_high_scoring([a, b], tmp_path / "out.jsonl", fmt="messages", with_scores=True)

    rows = read(tmp_path / "out.jsonl")
    assert report.duplicates == 1 and rows[0]["scores"]["combined"] == 0.99
    assert rows[1]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_errors_and_nothing_passing(run_dir, tmp_path, capsys):
    with pytest.raises(ExportError, match="does not exist"):
        export_high_scoring([tmp_path / "missing"], tmp_path / "x.jsonl")
    with pytest.raises(ExportError, match="unknown format"):
        export_high_scoring([run_dir], tmp_path / "x.jsonl", fmt="alpaca")
    out = tmp_path / "none.jsonl"
    assert main([str(run_dir), "--output", str(out), "--threshold", "5"]) == 1
    assert not out.exists()
    assert main([str(tmp_path / "missing"), "--output", str(out)]) == 2


def test_main_writes_atomically_over_an_existing_file(run_dir, tmp_path, capsys):
    out = tmp_path / "data" / "sft.jsonl"
    out.parent.mkdir()
    out.write_text("old\n")

    code = main([str(run_dir), "--output", str(out), "--threshold", "0.7", "--format", "sharegpt"])

    assert code == 0
    assert "3 malformed" in capsys.readouterr().out
    assert len(read(out)) == 2
    assert [p.name for p in out.parent.iterdir()] == ["sft.jsonl"]  # no temporary file left


def test_script_runs_from_repo_root(run_dir, tmp_path):
    out = tmp_path / "cli.jsonl"
    done = subprocess.run([sys.executable, "cli_utils/export_high_scoring.py", str(run_dir), "-o", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(read(out)) == 4


@pytest.mark.parametrize("output", ["run/high_scoring_examples.jsonl", "run/./high_scoring_examples.jsonl",
                                    "link.jsonl", "hardlink.jsonl"])
def test_the_output_may_not_be_one_of_the_inputs(run_dir, tmp_path, output):
    (tmp_path / "link.jsonl").symlink_to(run_dir / "high_scoring_examples.jsonl")
    (tmp_path / "hardlink.jsonl").hardlink_to(run_dir / "high_scoring_examples.jsonl")
    before = (run_dir / "high_scoring_examples.jsonl").read_bytes()
    done = subprocess.run([sys.executable, "cli_utils/export_high_scoring.py", str(run_dir), "-o", str(tmp_path / output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: the output ") and "is the input" in done.stderr and "Traceback" not in done.stderr
    assert (run_dir / "high_scoring_examples.jsonl").read_bytes() == before  # the run's records untouched


def test_a_nan_threshold_is_refused(run_dir, tmp_path, capsys):
    out = tmp_path / "nan.jsonl"
    assert main([str(run_dir), "--output", str(out), "--threshold", "nan"]) == 2
    assert "--threshold nan" in capsys.readouterr().err
    assert not out.exists()
