"""Turn a run's high_scoring_examples.jsonl into an SFT-ready JSONL dataset.

    python cli_utils/export_high_scoring.py outputs/run_a outputs/run_b --format sharegpt \
        --threshold 0.8 --best-per-prompt --output data/grpo_sft.jsonl

Inputs are run directories (their high_scoring_examples.jsonl) or JSONL files. Formats:
  sharegpt           {"conversations": [{"from": "system"|"human"|"gpt", "value": ...}, ...]}
  messages           {"messages": [{"role": ..., "content": ...}, ...]}            (OpenAI chat)
  prompt-completion  {"prompt": [messages...], "completion": [{"role": "assistant", ...}]}  (TRL)
Examples scoring below --threshold on --score-key (default: the combined reward) are dropped; the same
prompt + completion is kept once, with its highest score (--best-per-prompt: one completion per prompt).
Malformed lines (a torn last line, missing fields) are skipped and counted. The output is written
atomically, and never over one of the inputs. Exit status: 0 written, 1 no example passed (nothing
written), 2 bad input (nothing written: a missing input, an output that is an input, --threshold nan).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python cli_utils/<tool>.py`
    sys.path.insert(0, str(ROOT))

from cli_utils.cli_io import CliInputError, read_utf8, writable_file  # noqa: E402

FORMATS = ("sharegpt", "messages", "prompt-completion")
EXAMPLES_FILE = "high_scoring_examples.jsonl"
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
FROM_SHAREGPT = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class ExportError(CliInputError):
    """Bad input the user can fix (a missing file, an unknown format, an unusable output path); exit status 2."""


@dataclass
class ExportReport:
    """Counts of what happened to every input line."""

    output: Path
    format: str
    lines: int = 0
    malformed: int = 0
    without_score: int = 0
    below_threshold: int = 0
    duplicates: int = 0
    written: int = 0
    files: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"read {self.lines} lines from {len(self.files)} file(s): {self.malformed} malformed, "
            f"{self.without_score} without a score, {self.below_threshold} below the threshold, "
            f"{self.duplicates} duplicates; {self.written} examples -> {self.output} ({self.format})"
        )


@dataclass
class Example:
    prompt: list[dict]  # chat messages before the completion
    completion: str
    score: float | None
    record: dict


# ------------------------------------------------------------------------------------------ reading


def input_files(inputs: list[str | Path]) -> list[Path]:
    """Each input as a JSONL file: a run directory means its high_scoring_examples.jsonl."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            path = path / EXAMPLES_FILE
        if not path.is_file():
            raise ExportError(f"{path} does not exist (give a run directory or a JSONL file)")
        files.append(path)
    if not files:
        raise ExportError("no input given")
    return files


def _message(item: Any) -> dict | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("role"), str) and isinstance(item.get("content"), str):
        return {"role": item["role"], "content": item["content"]}
    if isinstance(item.get("from"), str) and isinstance(item.get("value"), str):
        return {"role": FROM_SHAREGPT.get(item["from"], item["from"]), "content": item["value"]}
    return None


def _messages(items: Any) -> list[dict] | None:
    if not isinstance(items, list) or not items:
        return None
    messages = [_message(item) for item in items]
    return None if any(m is None for m in messages) else messages


def parse_example(record: Any, score_key: str) -> Example | None:
    """The prompt messages, completion and score of one record; None when it has no usable dialogue.

    Reads `prompt` + `completion` first, then `messages`, then `conversations` (the last turn, which must
    be the assistant's, is the completion).
    """
    if not isinstance(record, dict):
        return None
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    else:
        prompt = _messages(prompt)
    if isinstance(completion, list):  # TRL conversational completion: a list of assistant messages
        parts = _messages(completion)
        completion = "".join(m["content"] for m in parts) if parts else None
    if prompt is None or not isinstance(completion, str):
        dialogue = _messages(record.get("messages")) or _messages(record.get("conversations"))
        if not dialogue or dialogue[-1]["role"] != "assistant" or len(dialogue) < 2:
            return None
        prompt, completion = dialogue[:-1], dialogue[-1]["content"]
    scores = record.get("scores")
    score = scores.get(score_key) if isinstance(scores, dict) else None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or math.isnan(score):
        score = None
    return Example(prompt=prompt, completion=completion, score=None if score is None else float(score), record=record)


# ------------------------------------------------------------------------------------------ writing


def format_example(example: Example, fmt: str, with_scores: bool = False) -> dict:
    dialogue = example.prompt + [{"role": "assistant", "content": example.completion}]
    if fmt == "sharegpt":
        out: dict = {"conversations": [{"from": SHAREGPT_ROLES.get(m["role"], m["role"]), "value": m["content"]}
                                       for m in dialogue]}
    elif fmt == "messages":
        out = {"messages": dialogue}
    else:
        out = {"prompt": example.prompt, "completion": [{"role": "assistant", "content": example.completion}]}
    if with_scores:
        for key in ("scores", "dataset_name", "step"):
            if key in example.record:
                out[key] = example.record[key]
    return out


def write_jsonl_atomically(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def export_high_scoring(
    inputs: list[str | Path],
    output: str | Path,
    fmt: str = "sharegpt",
    threshold: float | None = None,
    score_key: str = "combined",
    best_per_prompt: bool = False,
    with_scores: bool = False,
) -> ExportReport:
    """Read, filter, de-duplicate and write the examples (see the module doc); returns the counts.

    Nothing is written when no example passes (report.written == 0).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format '{fmt}': use one of {', '.join(FORMATS)}")
    if threshold is not None and math.isnan(threshold):
        raise ExportError("--threshold nan compares false with every score, so it would keep every example: give a number")
    report = ExportReport(output=writable_file(output), format=fmt, files=input_files(inputs))
    for path in report.files:
        if _same_file(path, report.output):
            raise ExportError(f"the output {report.output} is the input {path}: writing it would replace those records "
                              "(a run's scores, steps and datasets); choose another output file")
    kept: dict[str, Example] = {}  # dedup key -> best example so far, in first-seen order
    for path in report.files:
        for line in read_utf8(path).splitlines():
            if not line.strip():
                continue
            report.lines += 1
            try:
                example = parse_example(json.loads(line), score_key)
            except json.JSONDecodeError:
                example = None
            if example is None:
                report.malformed += 1
                continue
            if threshold is not None:
                if example.score is None:
                    report.without_score += 1
                    continue
                if example.score < threshold:
                    report.below_threshold += 1
                    continue
            prompt_key = json.dumps(example.prompt, sort_keys=True, ensure_ascii=False)
            key = prompt_key if best_per_prompt else prompt_key + "\0" + example.completion
            previous = kept.get(key)
            if previous is not None:
                report.duplicates += 1
                if _rank(example) <= _rank(previous):
                    continue
            kept[key] = example
    report.written = len(kept)
    if kept:
        try:
            write_jsonl_atomically(report.output, [format_example(e, fmt, with_scores) for e in kept.values()])
        except OSError as error:
            raise ExportError(f"cannot write {report.output}: {error.strerror or error}") from None
    return report


def _same_file(a: Path, b: Path) -> bool:
    """The same file, by path (links resolved) or, when both exist, by inode (a hard link)."""
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def _rank(example: Example) -> float:
    return -math.inf if example.score is None else example.score


# --------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export high-scoring GRPO completions as an SFT dataset (ShareGPT, OpenAI messages or TRL "
        "prompt/completion JSONL).",
        epilog="Exit status: 0 written, 1 no example passed (nothing written), 2 bad input.",
    )
    parser.add_argument("inputs", nargs="+", help="Run directories or high_scoring_examples.jsonl files.")
    parser.add_argument("--output", "-o", required=True, help="JSONL file to write.")
    parser.add_argument("--format", choices=FORMATS, default="sharegpt", help="Output format (default sharegpt).")
    parser.add_argument("--threshold", type=float, default=None, help="Keep examples scoring at least this.")
    parser.add_argument("--score-key", default="combined",
                        help="Key in each record's scores that --threshold and de-duplication use (default combined).")
    parser.add_argument("--best-per-prompt", action="store_true", help="Keep only the best completion of each prompt.")
    parser.add_argument("--with-scores", action="store_true", help="Also copy scores, dataset_name and step.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = export_high_scoring(args.inputs, args.output, fmt=args.format, threshold=args.threshold,
                                     score_key=args.score_key, best_per_prompt=args.best_per_prompt,
                                     with_scores=args.with_scores)
    except CliInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.describe())
    if not report.written:
        print("error: no example passed, nothing written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
