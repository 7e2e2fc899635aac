"""Reading rows out of dataset files, and turning one raw row into a checked conversation.

File types (by extension): `.jsonl`/`.ndjson` (one JSON object a line), `.json` (an array of objects; a
`.json` file that is really JSON Lines is read as such) and `.parquet`. A reader knows how many rows the
file has and reads only the rows asked for:

- JSONL: the line offsets are indexed by scanning the file in 8 MB binary chunks for b"\\n" (numpy, a few
  threads), then each wanted line is read with one `os.pread` and parsed; nothing else is decoded. Empty
  lines are not rows.
- Parquet: only the row groups holding wanted rows are read (pyarrow, imported lazily), one at a time.
- JSON arrays are loaded whole.

Row shapes (detected per file from its first rows): ShareGPT (`conversations`: [{from, value}]), OpenAI
(`messages`: [{role, content}]) and TRL prompt/completion (`prompt`: str or messages, `completion`: str or
messages, optional). Roles: human/user -> user, gpt/assistant/model -> assistant, system -> system.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

FORMAT_KEYS = {"sharegpt": "conversations", "messages": "messages", "prompt": "prompt"}
ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "system": "system",
}
RESERVED_COLUMNS = frozenset({"prompt", "answer", "dataset_name", "source", "completion", "conversations", "messages"})
"""Columns the output rows define themselves; a raw row's own columns with these names are not copied."""

_CHUNK = 8 << 20
_INDEX_THREADS = 4
_DETECT_ROWS = 20


class DataError(ValueError):
    """Bad input that stops the run (missing file, unknown format, a bad row in strict mode), naming file:line."""


class BadRow(ValueError):
    """One row that cannot be used; the message is the reason shown after 'file:line: '."""


@dataclass
class Conversation:
    """A checked row: its messages, the positions an answer may be taken from, and its extra columns."""

    messages: list[dict[str, str]]
    targets: list[int]
    extras: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ readers


class JsonlReader:
    """Rows of a JSON Lines file, read by line without loading the file."""

    def __init__(self, path: Path, label: str):
        self.path, self.label = path, label
        self.starts, self.lengths, self.line_numbers = index_lines(path)

    def __len__(self) -> int:
        return len(self.starts)

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'path:line', parsed row or BadRow) for each index, in the order given."""
        results: dict[int, tuple[str, Any]] = {}
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for index in sorted(indices):  # in file order: sequential reads
                raw = os.pread(fd, int(self.lengths[index]), int(self.starts[index]))
                results[index] = (f"{self.label}:{self.line_numbers[index] + 1}", parse_json_line(raw))
        finally:
            os.close(fd)
        return [results[index] for index in indices]


class JsonArrayReader:
    """Rows of a JSON array file (loaded whole)."""

    def __init__(self, path: Path, label: str, rows: list):
        self.path, self.label, self.rows = path, label, rows

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'path:#index', row or BadRow) for each index, in the order given."""
        return [(f"{self.label}:#{i}", _as_object(self.rows[i])) for i in indices]


class ParquetReader:
    """Rows of a Parquet file; only the row groups that hold wanted rows are read."""

    def __init__(self, path: Path, label: str):
        import pyarrow.parquet as pq

        self.path, self.label = path, label
        try:
            self.file = pq.ParquetFile(path)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise DataError(f"{label}: cannot read Parquet file: {error}") from None
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def __len__(self) -> int:
        return int(self.group_starts[-1])

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'path:#index', row) for each index, in the order given."""
        wanted = np.asarray(indices, dtype=np.int64)
        groups = np.searchsorted(self.group_starts, wanted, side="right") - 1
        results: dict[int, tuple[str, Any]] = {}
        for group in np.unique(groups):
            members = wanted[groups == group]
            table = self.file.read_row_group(int(group)).take(members - self.group_starts[group])
            for index, row in zip(members.tolist(), table.to_pylist()):
                results[index] = (f"{self.label}:#{index}", row)
        return [results[int(i)] for i in wanted]


def open_reader(path: Path, label: str) -> JsonlReader | JsonArrayReader | ParquetReader:
    """The reader for `path` by its extension; DataError for a missing file or an unsupported type."""
    if not path.is_file():
        raise DataError(f"{label}: file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return JsonlReader(path, label)
    if suffix == ".parquet":
        return ParquetReader(path, label)
    if suffix == ".json":
        try:
            rows = json.loads(path.read_bytes())
        except json.JSONDecodeError as error:
            if error.msg == "Extra data":  # one object a line, named .json
                return JsonlReader(path, label)
            raise DataError(f"{label}:{error.lineno}: not valid JSON: {error.msg}") from None
        except UnicodeDecodeError as error:
            raise DataError(f"{label}: not UTF-8 text: {error}") from None
        if not isinstance(rows, list):
            raise DataError(f"{label}: expected a JSON array of rows, got a {type(rows).__name__}")
        return JsonArrayReader(path, label, rows)
    raise DataError(f"{label}: unsupported file type '{suffix or path.name}' (use .json, .jsonl or .parquet)")


def index_lines(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start offsets, byte lengths, 0-based line numbers) of the non-empty lines of a file.

    The file is split into one byte range per worker thread (numpy and reads release the GIL), each
    scanned in 8 MB chunks for b"\\n"; memory stays at a few chunks plus 24 bytes a line.
    """
    size = path.stat().st_size
    workers = max(1, min(_INDEX_THREADS, os.cpu_count() or 1, size // _CHUNK))
    step = -(-size // workers)
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda low: _newlines(fd, low, min(size, low + step)), range(0, size, step or 1)))
    finally:
        os.close(fd)
    newlines = np.concatenate([np.zeros(0, dtype=np.int64), *parts])
    if size and (not len(newlines) or newlines[-1] != size - 1):
        newlines = np.append(newlines, size)  # last line without a newline
    starts = np.concatenate([[0], newlines[:-1] + 1]).astype(np.int64)[: len(newlines)]
    lengths = newlines - starts
    keep = np.flatnonzero(lengths > 0)
    return starts[keep], lengths[keep], keep


def _newlines(fd: int, low: int, high: int) -> np.ndarray:
    """Offsets of the b"\\n" bytes in [low, high) of an open file."""
    buffer = bytearray(_CHUNK)
    found = [np.zeros(0, dtype=np.int64)]
    while low < high:
        count = os.preadv(fd, [memoryview(buffer)[: min(_CHUNK, high - low)]], low)
        if not count:
            break
        found.append(np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8, count=count) == 10) + low)
        low += count
    return np.concatenate(found)


def parse_json_line(raw: bytes) -> Any:
    """The object on one line, or a BadRow saying why not."""
    try:
        return _as_object(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        if not raw.strip():
            return BadRow("blank line")
        return BadRow(f"broken JSON line: {getattr(error, 'msg', error)}")


def _as_object(row: Any) -> Any:
    return row if isinstance(row, dict) else BadRow(f"row is a JSON {type(row).__name__}, not an object")


# --------------------------------------------------------------------------------------- row shapes


def detect_format(reader, label: str) -> str:
    """'sharegpt', 'messages' or 'prompt', from the keys of the file's first rows; DataError otherwise."""
    if isinstance(reader, ParquetReader):
        candidates = [{name: None for name in reader.file.schema_arrow.names}]
    else:
        candidates = [row for _, row in reader.read(range(min(_DETECT_ROWS, len(reader))))]
    seen: set[str] = set()
    for row in candidates:
        if isinstance(row, dict):
            seen.update(row)
            for name, key in FORMAT_KEYS.items():
                if key in row:
                    return name
    found = f"the first rows have the keys {sorted(seen)}" if seen else "no readable row among the first rows"
    raise DataError(
        f"{label}: unknown row format: {found}; expected 'conversations' (ShareGPT), 'messages' (OpenAI) "
        "or 'prompt' (+ optional 'completion')"
    )


def to_conversation(row: dict, fmt: str) -> Conversation:
    """Check one raw row of format `fmt` and return its Conversation; BadRow with the reason otherwise."""
    extras = {
        key: value for key, value in row.items()
        if key not in RESERVED_COLUMNS and (value is None or isinstance(value, (str, int, float, bool)))
    }
    if fmt == "prompt":
        return _prompt_completion(row, extras)
    key = FORMAT_KEYS[fmt]
    turns = row.get(key)
    if turns is None:
        raise BadRow(f"missing '{key}'")
    if not isinstance(turns, list):
        raise BadRow(f"'{key}' is a {type(turns).__name__}, not a list")
    messages = _messages(turns)
    targets, seen_user = [], False
    for index, message in enumerate(messages):
        seen_user = seen_user or message["role"] == "user"
        if seen_user and message["role"] == "assistant":
            targets.append(index)
    if not targets:
        has_assistant = any(message["role"] == "assistant" for message in messages)
        raise BadRow("no assistant turn" + (" after a user turn" if has_assistant else ""))
    return Conversation(messages, targets, extras)


def _prompt_completion(row: dict, extras: dict) -> Conversation:
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise BadRow("empty text in 'prompt'")
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = _messages(prompt)
        if not messages:
            raise BadRow("'prompt' has no messages")
    else:
        raise BadRow("missing 'prompt'" if prompt is None else f"'prompt' is a {type(prompt).__name__}")
    completion = row.get("completion")
    if completion is None:
        answer = row.get("answer") if isinstance(row.get("answer"), str) else ""
    elif isinstance(completion, str):
        answer = completion
    elif isinstance(completion, list):
        said = [m["content"] for m in _messages(completion) if m["role"] == "assistant"]
        if not said:
            raise BadRow("'completion' has no assistant message")
        answer = said[0]
    else:
        raise BadRow(f"'completion' is a {type(completion).__name__}")
    messages.append({"role": "assistant", "content": answer})
    return Conversation(messages, [len(messages) - 1], extras)


def _messages(turns: list) -> list[dict[str, str]]:
    """Normalized {role, content} messages; empty system messages are left out."""
    messages = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise BadRow(f"message {number} is a {type(turn).__name__}, not an object")
        raw_role = turn.get("from")
        if raw_role is None:  # Parquet structs carry every key, some null
            raw_role = turn.get("role")
        role = ROLES.get(raw_role) or ROLES.get(raw_role.lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise BadRow(f"unknown role {raw_role!r} in message {number}")
        content = turn.get("value")
        text = _text(turn.get("content") if content is None else content)
        if text is None:
            raise BadRow(f"message {number} ({role}) has no text")
        if not text.strip():
            if role == "system":
                continue
            raise BadRow(f"empty text in message {number} ({role})")
        messages.append({"role": role, "content": text})
    return messages


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of an OpenAI content list joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return None


