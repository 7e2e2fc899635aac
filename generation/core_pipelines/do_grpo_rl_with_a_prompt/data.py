"""The GRPO node's data: sample the configured datasets into prompt/answer rows, then fit prompts to length.

How many rows each dataset gives (the seed's rule): `percentage` is a per-dataset fraction of
`dataset_settings.total_rows`, and the percentages need NOT sum to 1. Dataset i is asked for
round(percentage_i * total_rows) rows (Python's round) and gives that many, or all of its usable rows when
it has fewer (sampling is without replacement; the report says "capped"). `eval_percentage` of a
dataset's sampled rows (rounded) go to the eval rows instead of the train rows. `dataset_settings.eval_path`
is one more, evaluation-only file: up to `eval_rows` of its rows, all in eval_rows, scored by the rewards
of the dataset named in `eval_rewards_from` (default: the first dataset).

Order of work, so that a 1M-row file costs about a second: index the file cheaply (data_formats.py), draw
row numbers with a seeded RNG, read and check only those rows, and draw replacements for bad ones until the
count is met or the file is exhausted. Each dataset draws from its own RNG stream (seed, name, purpose),
so adding a dataset does not change the rows of the others; the train rows of all datasets are then
shuffled together (seeded). Same seed, same rows in the same order.

Bad rows (broken JSON, no assistant turn after a user turn, an unknown role, empty text, no
conversations/messages/prompt) are skipped and counted, the first few kept as "path:line: reason", and
replaced by further draws; with dataset_settings.strict the first one raises DataError instead.

A row: {"prompt": [{"role", "content"}, ...] (the conversation before the target assistant turn),
"answer": the target assistant turn's text (the reference answer), "dataset_name", "source" ("path:line"
for JSON Lines, "path:#index" for JSON arrays and Parquet), plus the raw row's other top-level scalar
columns}. Every row carries every extra column (None where missing); a column whose types differ between
rows becomes str (int mixed with float becomes float), so all rows fit one `datasets.Dataset.from_list`.

The target turn: force_single_turn -> the first assistant turn that follows a user turn; otherwise with
chance single_turn_ratio the first, else the last. Prompt/completion rows keep their own split (answer =
completion, or the row's `answer` string when there is no completion). `system_prompt` is prepended to the
conversation's first system message (system_prompt + "\\n\\n" + existing) or inserted as the first message.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from generation.core_pipelines.do_grpo_rl_with_a_prompt.data_formats import (
    BadRow,
    DataError,
    detect_format,
    open_reader,
    to_conversation,
)

if TYPE_CHECKING:
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config import DatasetConfig, DatasetSettings

__all__ = ["DataError", "DataReport", "SampledData", "sample_datasets", "fit_prompts_to_length"]

BASE_COLUMNS = ("prompt", "answer", "dataset_name", "source")
BAD_EXAMPLES_PER_DATASET = 5
_PURPOSE = {"sample": 1, "eval": 2, "turn": 3, "mix": 4}
_COLUMNS = (
    ("requested", "requested"), ("available", "available"), ("sampled", "sampled"), ("train", "train"),
    ("eval", "eval"), ("skipped_bad", "bad"), ("truncated", "truncated"), ("dropped_overlong", "dropped"),
)


@dataclass
class DataReport:
    """What sampling and fitting did, per dataset, for the runner to print.

    per_dataset: name -> {"requested", "available" (rows in the file; None when not read), "sampled"
    (good rows drawn = train + eval), "train", "eval", "skipped_bad", "truncated", "dropped_overlong",
    "capped" (fewer usable rows than requested)}. bad_row_examples: the first few bad rows of each dataset
    as "path:line: reason". eval_path_entry: (file label, report key) of dataset_settings.eval_path.
    """

    per_dataset: dict[str, dict] = field(default_factory=dict)
    bad_row_examples: list[str] = field(default_factory=list)
    eval_path_entry: tuple[str, str] | None = None

    def summary(self) -> str:
        """A table with one line per dataset, then notes on capped datasets and examples of bad rows."""
        names = list(self.per_dataset) or ["(none)"]
        width = max(len("dataset"), *(len(name) for name in names))
        header = "dataset".ljust(width) + "".join(f"  {title:>9}" for _, title in _COLUMNS)
        lines = [header, "-" * len(header)]
        for name, entry in self.per_dataset.items():
            cells = ["-" if entry.get(key) is None else f"{entry[key]:,}" for key, _ in _COLUMNS]
            lines.append(name.ljust(width) + "".join(f"  {cell:>9}" for cell in cells))
        for name, entry in self.per_dataset.items():
            if entry.get("capped"):
                lines.append(
                    f"note: {name}: {entry['requested']:,} rows requested, only {entry['sampled']:,} usable "
                    "(capped: rows are sampled without replacement)"
                )
        if self.bad_row_examples:
            lines.append("bad rows skipped (first few per dataset):")
            lines += [f"  {example}" for example in self.bad_row_examples]
        return "\n".join(lines)


@dataclass
class SampledData:
    """The sampled rows, split into train and eval, and the report of how they were obtained."""

    train_rows: list[dict]
    eval_rows: list[dict]
    report: DataReport


def sample_datasets(
    datasets: list["DatasetConfig"], settings: "DatasetSettings", seed: int, base_dir: Path | None = None
) -> SampledData:
    """Sample every dataset (and dataset_settings.eval_path) into train and eval rows; see the module doc.

    Relative paths are taken from `base_dir` when given (else from the working directory). Raises
    DataError for a missing file, an unsupported file type or row format, or (strict) the first bad row.
    """
    report = DataReport()
    train_rows: list[dict] = []
    eval_rows: list[dict] = []
    for dataset in datasets:
        name = dataset.display_name
        requested = round(dataset.percentage * settings.total_rows)
        rows = _sample_file(dataset, name, requested, settings.strict, seed, base_dir, report)
        held_out = _rng(seed, name, "eval").choice(len(rows), round(dataset.eval_percentage * len(rows)), replace=False)
        held = set(held_out.tolist())
        eval_rows += [rows[i] for i in sorted(held)]
        train_rows += [row for i, row in enumerate(rows) if i not in held]
        report.per_dataset[name].update(train=len(rows) - len(held), eval=len(held))
    if settings.eval_path:
        scorer = settings.eval_rewards_from or (datasets[0].display_name if datasets else None)
        eval_rows += [{**row, "dataset_name": scorer or row["dataset_name"]}
                      for row in _sample_eval_path(settings, seed, base_dir, report)]
    order = _rng(seed, "", "mix").permutation(len(train_rows))
    train_rows = [train_rows[i] for i in order]
    _unify_columns(train_rows + eval_rows)
    return SampledData(train_rows, eval_rows, report)


def fit_prompts_to_length(
    data: SampledData,
    count_tokens: Callable[[list[dict]], int],
    max_prompt_length: int | None,
    mode: Literal["truncate", "drop"],
) -> SampledData:
    """Make every prompt (train and eval) fit max_prompt_length tokens, counting changes in the report.

    count_tokens(messages) is the prompt's token count after the chat template. "truncate" drops whole
    early turns (keeping the leading system message(s) and at least the final user turn, so that the prompt
    still starts with an optional system message then a user turn) and drops the row when even that is too
    long; "drop" drops every overlong row. Returns new lists and a new report, leaving `data` unchanged
    (with max_prompt_length None: `data` itself).
    """
    if mode not in ("truncate", "drop"):
        raise ValueError(f"mode must be 'truncate' or 'drop', got {mode!r}")
    if max_prompt_length is None:
        return data
    report = copy.deepcopy(data.report)
    fit = lambda rows, is_eval: _fit_rows(rows, count_tokens, max_prompt_length, mode, report, is_eval)  # noqa: E731
    return SampledData(fit(data.train_rows, False), fit(data.eval_rows, True), report)


# -------------------------------------------------------------------------------------------- sampling


def _sample_file(dataset, name, requested, strict, seed, base_dir, report, eval_only=False) -> list[dict]:
    """Draw `requested` good rows of one file (fewer when it has fewer) and turn them into output rows."""
    path = _resolve(dataset.path, base_dir)
    label = str(path)
    entry = report.per_dataset[name] = {
        "requested": requested, "available": None, "sampled": 0, "train": 0, "eval": 0,
        "skipped_bad": 0, "truncated": 0, "dropped_overlong": 0, "capped": False,
    }
    if requested <= 0:
        if not path.is_file():
            raise DataError(f"{label}: file not found")
        return []
    reader = open_reader(path, label)
    fmt = detect_format(reader, label)
    entry["available"] = len(reader)
    drawn = []
    order = _DrawOrder(_rng(seed, name, "sample"), len(reader), requested)
    while len(drawn) < requested and (batch := order.take(requested - len(drawn))):
        for source, raw in reader.read(batch):
            try:
                if isinstance(raw, BadRow):
                    raise raw
                drawn.append((source, to_conversation(raw, fmt)))
            except BadRow as reason:
                if strict:
                    raise DataError(f"{source}: {reason} (dataset_settings.strict is on)") from None
                entry["skipped_bad"] += 1
                if entry["skipped_bad"] <= BAD_EXAMPLES_PER_DATASET:
                    report.bad_row_examples.append(f"{source}: {reason}")
    entry["sampled"], entry["capped"] = len(drawn), len(drawn) < requested and not eval_only
    first_turn = _rng(seed, name, "turn").random(len(drawn)) < dataset.single_turn_ratio
    rows = []
    for (source, conversation), first in zip(drawn, first_turn):
        target = conversation.targets[0 if dataset.force_single_turn or first else -1]
        prompt = _with_system_prompt(conversation.messages[:target], dataset.system_prompt)
        answer = conversation.messages[target]["content"]
        rows.append({"prompt": prompt, "answer": answer, "dataset_name": dataset.display_name,
                     "source": source, **conversation.extras})
    return rows


def _sample_eval_path(settings, seed, base_dir, report) -> list[dict]:
    """Up to eval_rows rows of dataset_settings.eval_path, named after the file's stem."""
    from generation.core_pipelines.do_grpo_rl_with_a_prompt.config import DatasetConfig

    dataset = DatasetConfig(path=settings.eval_path)
    key = f"{dataset.display_name} (eval_path)"
    rows = _sample_file(dataset, key, settings.eval_rows, settings.strict, seed, base_dir, report, eval_only=True)
    report.per_dataset[key]["eval"] = len(rows)
    report.eval_path_entry = (str(_resolve(settings.eval_path, base_dir)), key)
    return rows


def _resolve(path: str, base_dir: Path | None) -> Path:
    resolved = Path(path).expanduser()
    return Path(base_dir) / resolved if base_dir is not None and not resolved.is_absolute() else resolved


class _DrawOrder:
    """Row indices in a seeded random order without repeats: `k` first (cheap), the rest only if needed."""

    def __init__(self, rng: np.random.Generator, n: int, k: int):
        self.rng, self.n = rng, n
        self.pending = rng.choice(n, size=min(k, n), replace=False)
        self.rest: np.ndarray | None = None
        self.used = 0

    def take(self, count: int) -> list[int]:
        """The next `count` indices (fewer, or none, when the file is exhausted)."""
        if self.rest is None and self.used >= len(self.pending):
            self.rest = self.rng.permutation(np.setdiff1d(np.arange(self.n), self.pending))
            self.pending, self.used = self.rest, 0
        batch = self.pending[self.used:self.used + count]
        self.used += len(batch)
        return batch.tolist()


def _rng(seed: int, name: str, purpose: str) -> np.random.Generator:
    """An RNG stream of its own for each (seed, dataset name, purpose)."""
    return np.random.default_rng([seed % 2**64, zlib.crc32(name.encode("utf-8")), _PURPOSE[purpose]])


def _with_system_prompt(messages: list[dict], system_prompt: str | None) -> list[dict]:
    messages = [dict(message) for message in messages]
    if not system_prompt:
        return messages
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{system_prompt}\n\n{messages[0]['content']}"
        return messages
    return [{"role": "system", "content": system_prompt}] + messages


def _unify_columns(rows: list[dict]) -> None:
    """Give every row every extra column (None where missing); mixed types become str (int+float: float)."""
    types: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in BASE_COLUMNS:
                kinds = types.setdefault(key, set())
                if value is not None:
                    kinds.add(type(value))
    convert = {key: (float if kinds == {int, float} else str) for key, kinds in types.items() if len(kinds) > 1}
    for row in rows:
        extras = {}
        for key in types:
            value = row.get(key)
            extras[key] = convert[key](value) if key in convert and value is not None else value
        base = {key: row[key] for key in BASE_COLUMNS}
        row.clear()
        row.update(base, **extras)


# --------------------------------------------------------------------------------------------- fitting


def _fit_rows(rows, count_tokens, limit, mode, report, is_eval) -> list[dict]:
    kept = []
    for row in rows:
        if count_tokens(row["prompt"]) <= limit:
            kept.append(row)
            continue
        entry = report.per_dataset.setdefault(_entry_key(row, is_eval, report), {"truncated": 0, "dropped_overlong": 0})
        prompt = _truncate(row["prompt"], count_tokens, limit) if mode == "truncate" else None
        if prompt is None:
            entry["dropped_overlong"] = entry.get("dropped_overlong", 0) + 1
            continue
        entry["truncated"] = entry.get("truncated", 0) + 1
        kept.append({**row, "prompt": prompt})
    return kept


def _entry_key(row: dict, is_eval: bool, report: DataReport) -> str:
    """The report entry a row counts under (eval_path rows have their own)."""
    if is_eval and report.eval_path_entry and row["source"].rsplit(":", 1)[0] == report.eval_path_entry[0]:
        return report.eval_path_entry[1]
    return row["dataset_name"]


def _truncate(prompt: list[dict], count_tokens, limit: int) -> list[dict] | None:
    """The prompt without the fewest whole early turns that makes it fit, or None when nothing does.

    Candidates keep the leading system message(s) and start the rest at a later user message; fewer
    messages never cost more tokens, so a binary search finds the longest one that fits.
    """
    head = 0
    while head < len(prompt) and prompt[head]["role"] == "system":
        head += 1
    system, body = prompt[:head], prompt[head:]
    starts = [i for i, message in enumerate(body) if message["role"] == "user" and i > 0]
    fits = lambda j: count_tokens(system + body[starts[j]:]) <= limit  # noqa: E731
    if not starts or not fits(len(starts) - 1):
        return None
    low, high = 0, len(starts) - 1
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return system + body[starts[low]:]
