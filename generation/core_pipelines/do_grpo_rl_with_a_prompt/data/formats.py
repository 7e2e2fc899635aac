"""Reading rows out of dataset files: a reader knows how many rows there are and reads only those asked for.

File types (by extension): `.jsonl`/`.ndjson` (one JSON object a line), `.json` (an array of objects; a
`.json` file that is really JSON Lines is read as such) and `.parquet`:

- JSONL: the line offsets are indexed by scanning the file in 8 MB binary chunks for b"\\n" (numpy, a few
  threads), then each wanted line is read with one `os.pread` and parsed; nothing else is decoded. Empty
  lines are not rows; a line nested too deeply for the JSON parser is a bad row.
- Parquet: only the row groups holding wanted rows are read (pyarrow, imported lazily), each streamed in
  batches so that a file written as one huge row group never sits in memory whole.
- JSON arrays are loaded whole.

A `path` that is no file (a hub id such as openai/gsm8k, or a dataset directory) goes to hub.py. How
a row's fields become a prompt and an answer is columns.py's business.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from generation.errors import UserInputError

from .columns import BadRow

__all__ = ["BadRow", "DataError", "open_reader", "JsonlReader", "JsonArrayReader", "ParquetReader"]

_CHUNK = 8 << 20
_INDEX_THREADS = 4
_PARQUET_BATCH = 8_192


class DataError(UserInputError, ValueError):
    """Bad input that stops the run (missing file, unknown format, a bad row in strict mode), naming file:line.

    A UserInputError: the runner prints it in one line and exits with status 2.
    """


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

    def head(self, count: int) -> list[Any]:
        """The first `count` rows (for layout detection)."""
        return [row for _, row in self.read(range(min(count, len(self))))]


class JsonArrayReader:
    """Rows of a JSON array file (loaded whole)."""

    def __init__(self, path: Path, label: str, rows: list):
        self.path, self.label, self.rows = path, label, rows

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'path:#index', row or BadRow) for each index, in the order given."""
        return [(f"{self.label}:#{i}", _as_object(self.rows[i])) for i in indices]

    def head(self, count: int) -> list[Any]:
        return self.rows[:count]


class ParquetReader:
    """Rows of a Parquet file; only the row groups that hold wanted rows are read, in batches."""

    def __init__(self, path: Path, label: str):
        import pyarrow.parquet as pq

        self.path, self.label = path, label
        try:
            # streamed reads of 1 MB: no whole row group buffered ahead
            self.file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise DataError(f"{label}: cannot read Parquet file: {error}") from None
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])

    def __len__(self) -> int:
        return int(self.group_starts[-1])

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'path:#index', row) for each index, in the order given."""
        import pyarrow as pa

        wanted = np.asarray(indices, dtype=np.int64)
        groups = np.searchsorted(self.group_starts, wanted, side="right") - 1
        results: dict[int, tuple[str, Any]] = {}
        for group in np.unique(groups):
            members = np.sort(wanted[groups == group]) - self.group_starts[group]
            offset = 0
            for batch in self.file.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[int(group)]):
                low, high = np.searchsorted(members, [offset, offset + batch.num_rows])
                if high > low:
                    # one-row slices, not batch.take: take loads Arrow's compute kernels (about 50 MB more RSS)
                    locals_ = members[low:high].tolist()
                    picked = pa.Table.from_batches([batch.slice(local - offset, 1) for local in locals_]).to_pylist()
                    for local, row in zip(locals_, picked):
                        index = int(local + self.group_starts[group])
                        results[index] = (f"{self.label}:#{index}", row)
                offset += batch.num_rows
                if high == len(members):
                    break
        return [results[int(i)] for i in wanted]

    def head(self, count: int) -> list[Any]:
        for batch in self.file.iter_batches(batch_size=max(1, count)):
            return batch.to_pylist()
        return []


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
        except RecursionError:
            raise DataError(f"{label}: nested too deeply for the JSON parser (as JSON Lines, such rows would "
                            "be skipped as bad rows)") from None
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
    except RecursionError:
        return BadRow("nested too deeply for the JSON parser")


def _as_object(row: Any) -> Any:
    return row if isinstance(row, dict) else BadRow(f"row is a JSON {type(row).__name__}, not an object")
