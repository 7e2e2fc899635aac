"""The GRPO node's data: sample the configured datasets into prompt/answer rows, then fit prompts to length.

How many rows each dataset gives (the seed's rule): `percentage` is a per-dataset fraction of
`dataset_settings.total_rows`, and the percentages need NOT sum to 1. Dataset i is asked for
round(percentage_i * total_rows) rows (Python's round) and gives that many, or all of its usable rows when
it has fewer (sampling is without replacement; the report says "capped"). `eval_percentage` of a
dataset's sampled rows (rounded) go to the eval rows instead of the train rows. `dataset_settings.eval_path`
is one more, evaluation-only file: up to `eval_rows` of its rows, all in eval_rows, scored by the rewards
of the dataset named in `eval_rewards_from` (default: the first dataset).

Order of work, so that a 1M-row file costs about a second: index the file cheaply (formats.py), draw
row numbers with a seeded RNG, read and check only those rows, and draw replacements for bad ones until the
count is met or the file is exhausted. Each dataset draws from its own RNG stream (seed, name, purpose),
so adding a dataset does not change the rows of the others; the train rows of all datasets are then
shuffled together (seeded). Same seed, same rows in the same order.

Where the rows come from: a file (formats.py), or a hub id / dataset directory through 🤗 datasets
(hub.py; a streamed dataset is drawn in a seeded shuffle instead). Which fields are the prompt and
the answer: the dataset's layout (columns.py), detected from its first rows or configured.

Bad rows (broken JSON, nesting too deep to parse, no assistant turn after a user turn, an unknown role,
empty text, text that is not valid Unicode, a missing prompt / answer / template field) are skipped and
counted, the first few kept as "path:line: reason", and replaced by further draws; with
dataset_settings.strict the first one raises DataError instead.

A row: {"prompt": [{"role", "content"}, ...] (the conversation before the target assistant turn),
"answer": the target assistant turn's text (the reference answer), "dataset_name", "source" ("path:line"
for JSON Lines, "path:#index" for JSON arrays, Parquet and hub datasets), plus the raw row's other fields
as columns (data_columns.extra_columns: nested objects flattened to dotted names, lists kept as they are,
reserved names renamed row_<name>)}. Every row carries every extra column (None where missing); a scalar
column whose types differ between rows becomes str (int mixed with float becomes float); a column holding
a list or an object in some row is left as it is (json_columns.py carries it through 🤗 datasets).

The target turn: force_single_turn -> the first assistant turn that follows a user turn; otherwise with
chance single_turn_ratio the first, else the last. Rows of fields have one target: their answer.
`system_prompt` is prepended to the conversation's first system message (system_prompt + "\\n\\n" +
existing) or inserted as the first message. Fitting prompts to max_prompt_length: truncation.py.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .columns import (
    BASE_COLUMNS,
    RENAMED_PREFIX,
    RESERVED_NAMES as _RESERVED,
    BadRow,
    LayoutError,
    detect_layout,
    to_conversation,
)
from ..config.schema import DatasetConfig, DatasetSettings
from .formats import DataError, open_reader
from .hub import open_hub_dataset

__all__ = ["DataReport", "SampledData", "dataset_directories", "sample_datasets"]

BAD_EXAMPLES_PER_DATASET = 5
DETECT_ROWS = 20
FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".csv", ".tsv", ".txt", ".arrow")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
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
    layouts: name -> how its rows were read (data_columns.Layout.describe). renamed_columns: name -> the
    row fields renamed row_<name> because TRL or this node passes a reward argument of that name.
    image_rows: name -> (rows that carry images, where: e.g. 'images'); left_out_columns: name -> the
    fields left out because their values are not JSON values (bytes, dates).
    """

    per_dataset: dict[str, dict] = field(default_factory=dict)
    bad_row_examples: list[str] = field(default_factory=list)
    eval_path_entry: tuple[str, str] | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    renamed_columns: dict[str, list[str]] = field(default_factory=dict)
    image_rows: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    left_out_columns: dict[str, list[str]] = field(default_factory=dict)

    def from_eval_path(self, row: dict) -> bool:
        """Whether `row` was read from dataset_settings.eval_path (its source is that file's)."""
        return self.eval_path_entry is not None and row["source"].rsplit(":", 1)[0] == self.eval_path_entry[0]

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

    def rows_by_origin(self) -> tuple[list[dict], list[dict]]:
        """(the datasets' own rows, train and held out; dataset_settings.eval_path's rows)."""
        from_eval_path = [row for row in self.eval_rows if self.report.from_eval_path(row)]
        held_out = [row for row in self.eval_rows if not self.report.from_eval_path(row)]
        return self.train_rows + held_out, from_eval_path


def sample_datasets(
    datasets: list[DatasetConfig], settings: DatasetSettings, seed: int, base_dir: Path | None = None
) -> SampledData:
    """Sample every dataset (and dataset_settings.eval_path) into train and eval rows; see the module doc.

    Relative paths are taken from `base_dir` when given (else from the working directory). Raises
    DataError for a missing file, an unsupported file type or row format, a hub dataset that cannot be
    loaded, or (strict) the first bad row.
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


# -------------------------------------------------------------------------------------------- sampling


def _sample_file(dataset, name, requested, strict, seed, base_dir, report, eval_only=False) -> list[dict]:
    """Draw `requested` good rows of one dataset (fewer when it has fewer) and turn them into output rows."""
    entry = report.per_dataset[name] = {
        "requested": requested, "available": None, "sampled": 0, "train": 0, "eval": 0,
        "skipped_bad": 0, "truncated": 0, "dropped_overlong": 0, "capped": False,
    }
    local, is_file = _locate(dataset.path, base_dir)
    hub_only = [key for key in ("subset", "revision", "streaming") if getattr(dataset, key)]
    if is_file and (hub_only or dataset.split != "train"):
        keys = ", ".join(hub_only + (["split"] if dataset.split != "train" else []))
        raise DataError(f"{local}: {keys} apply to hub datasets and dataset directories, not to a file")
    if requested <= 0:
        if is_file and not local.is_file():
            raise DataError(f"{local}: file not found")
        return []
    reader = _open(dataset, local, is_file)
    try:
        layout = detect_layout(reader.head(DETECT_ROWS), dataset, reader.label)
    except LayoutError as error:
        raise DataError(str(error)) from None
    report.layouts[name] = layout.describe()
    entry["available"] = len(reader) if hasattr(reader, "__len__") else None
    drawn = []
    for batch in _draws(reader, _rng(seed, name, "sample"), seed, requested, lambda: requested - len(drawn)):
        for source, raw in batch:
            try:
                if isinstance(raw, BadRow):
                    raise raw
                drawn.append((source, to_conversation(raw, layout)))
            except BadRow as reason:
                if strict:
                    raise DataError(f"{source}: {reason} (dataset_settings.strict is on)") from None
                entry["skipped_bad"] += 1
                if entry["skipped_bad"] <= BAD_EXAMPLES_PER_DATASET:
                    report.bad_row_examples.append(f"{source}: {reason}")
    entry["sampled"], entry["capped"] = len(drawn), len(drawn) < requested and not eval_only
    renamed = sorted({key for _, conversation in drawn for key in conversation.extras
                      if key.startswith(RENAMED_PREFIX) and key[len(RENAMED_PREFIX):] in _RESERVED})
    if renamed:
        report.renamed_columns[name] = renamed
    with_images = [conversation.images for _, conversation in drawn if conversation.images]
    if with_images:
        report.image_rows[name] = (len(with_images), sorted({place for places in with_images for place in places}))
    left_out = sorted({column for _, conversation in drawn for column in conversation.left_out})
    if left_out:
        report.left_out_columns[name] = left_out
    first_turn = _rng(seed, name, "turn").random(len(drawn)) < dataset.single_turn_ratio
    rows, dataset_name = [], dataset.display_name
    for (source, conversation), first in zip(drawn, first_turn):
        target = conversation.targets[0 if dataset.force_single_turn or first else -1]
        prompt = _with_system_prompt(conversation.messages[:target], dataset.system_prompt)
        answer = conversation.messages[target]["content"]
        rows.append({"prompt": prompt, "answer": answer, "dataset_name": dataset_name,
                     "source": source, **conversation.extras})
    return rows


def _draws(reader, rng, seed, requested, still_needed):
    """Batches of (source, raw row) in sampling order until still_needed() is 0 or the dataset is exhausted."""
    if hasattr(reader, "stream"):
        stream = reader.stream(seed)
        while (needed := still_needed()) > 0:
            batch = [item for _, item in zip(range(needed), stream)]
            if not batch:
                return
            yield batch
        return
    order = _DrawOrder(rng, len(reader), requested)
    while (needed := still_needed()) > 0 and (indices := order.take(needed)):
        yield reader.read(indices)


def _sample_eval_path(settings, seed, base_dir, report) -> list[dict]:
    """Up to eval_rows rows of dataset_settings.eval_path, named after the file's stem."""
    dataset = DatasetConfig(path=settings.eval_path)
    key = f"{dataset.display_name} (eval_path)"
    rows = _sample_file(dataset, key, settings.eval_rows, settings.strict, seed, base_dir, report, eval_only=True)
    report.per_dataset[key]["eval"] = len(rows)
    label = rows[0]["source"].rsplit(":", 1)[0] if rows else str(_locate(settings.eval_path, base_dir)[0])
    report.eval_path_entry = (label, key)
    return rows


def dataset_directories(datasets: list[DatasetConfig], settings: DatasetSettings,
                        base_dir: Path | None = None) -> dict[str, Path]:
    """The local dataset directories the config reads (config key -> directory): save_to_disk outputs and
    folders of data files."""
    paths = {f"datasets[{i}].path": dataset.path for i, dataset in enumerate(datasets)}
    if settings.eval_path:
        paths["dataset_settings.eval_path"] = settings.eval_path
    located = {key: _locate(path, base_dir) for key, path in paths.items()}
    return {key: local for key, (local, is_file) in located.items() if local is not None and not is_file}


def _locate(path: str, base_dir: Path | None) -> tuple[Path | None, bool]:
    """(the local path, whether it names a file) for a dataset path; (None, False) for a hub id.

    An existing file is a file and an existing directory a dataset directory; a path that exists nowhere
    is a file when it looks like one (a data-file suffix, or starts with /, ./, ../ or ~), else a hub id.
    """
    resolved = Path(path).expanduser()
    local = Path(base_dir) / resolved if base_dir is not None and not resolved.is_absolute() else resolved
    if local.is_file():
        return local, True
    if local.is_dir():
        return local, False
    looks_local = path.startswith(("/", "./", "../", "~")) or resolved.suffix.lower() in FILE_SUFFIXES
    if looks_local or not _HUB_ID.match(path):
        return local, True
    return None, False


def _open(dataset, local: Path | None, is_file: bool):
    """The reader for a dataset: a file reader, or a 🤗 datasets reader for a hub id / directory."""
    if is_file:
        return open_reader(local, str(local))
    return open_hub_dataset(dataset.path, local, dataset)


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
    """Give every row every extra column (None where missing); mixed scalar types become str (int+float:
    float); a column with a list or an object in some row keeps every value as it is."""
    types: dict[str, set[type]] = {}
    for row in rows:
        for key, value in row.items():
            if key not in BASE_COLUMNS:
                kinds = types.setdefault(key, set())
                if value is not None:
                    kinds.add(type(value))
    convert = {key: (float if kinds == {int, float} else str) for key, kinds in types.items()
               if len(kinds) > 1 and not kinds & {list, dict}}
    for row in rows:
        extras = {}
        for key in types:
            value = row.get(key)
            extras[key] = convert[key](value) if key in convert and value is not None else value
        base = {key: row[key] for key in BASE_COLUMNS}
        row.clear()
        row.update(base, **extras)
