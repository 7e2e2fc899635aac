"""Datasets that are not one file: a hub id (openai/gsm8k) or a local dataset directory, through 🤗 datasets.

- A directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` opens with `load_from_disk`.
- Anything else (a hub id, a directory of data files) goes to
  `datasets.load_dataset(path, name=subset, split=split, revision=revision)`: the hub's own loading, its
  offline cache (HF_DATASETS_OFFLINE=1 / HF_HUB_OFFLINE=1) and its builders for local directories.
- Without `streaming`, the split is prepared into the Arrow cache once and memory-mapped; only the sampled
  rows are read (`Dataset.select`). With `streaming: true`, nothing is prepared: rows arrive in a seeded
  shuffle through a buffer of STREAM_BUFFER rows, so about (rows wanted + buffer) rows are read, and the
  number of rows in the split stays unknown. (A streamed Parquet dataset costs 5 s more: datasets waits
  that long for pyarrow's threads when a Parquet stream closes, datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN;
  and IterableDataset.shuffle imports torch when it is installed, so a dry run with a streamed dataset does.)

Rows are named "path[subset/split]:#index" (streaming: ":stream#n", the n-th row of the shuffled stream).
"""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from .formats import DataError

STREAM_BUFFER = 10_000
_OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


class HubReader:
    """Rows of a prepared (memory-mapped) 🤗 Dataset, read by index."""

    def __init__(self, dataset: Any, label: str):
        self.dataset, self.label = dataset, label

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, indices: Sequence[int]) -> list[tuple[str, Any]]:
        """(source 'label:#index', row) for each index, in the order given."""
        rows = self.dataset.select(list(indices)).to_list()
        return [(f"{self.label}:#{index}", row) for index, row in zip(indices, rows)]

    def head(self, count: int) -> list[Any]:
        return self.dataset.select(range(min(count, len(self)))).to_list()


class StreamReader:
    """Rows of a streamed 🤗 IterableDataset, in a seeded shuffle; the length is unknown."""

    def __init__(self, dataset: Any, label: str):
        self.dataset, self.label = dataset, label

    def stream(self, seed: int) -> Iterator[tuple[str, Any]]:
        """(source 'label:stream#n', row) in a shuffled order that depends only on `seed`."""
        shuffled = iter(self.dataset.shuffle(seed=seed % 2**32, buffer_size=STREAM_BUFFER))
        position = 0
        while True:
            try:
                row = next(shuffled)
            except StopIteration:
                return
            except Exception as error:  # a broken file inside the stream: datasets stops the whole stream
                raise DataError(f"{self.label}: reading the stream failed near row {position}: "
                                f"{_one_line(error)}") from None
            yield f"{self.label}:stream#{position}", row
            position += 1

    def head(self, count: int) -> list[Any]:
        """The first rows; just the column names when the schema is known (opening a stream can be slow)."""
        features = getattr(self.dataset, "features", None)
        if features:
            return [{name: None for name in features}]
        try:
            return list(islice(iter(self.dataset), count))
        except Exception as error:  # as in stream()
            raise DataError(f"{self.label}: reading the stream failed near row 0: {_one_line(error)}") from None


def open_hub_dataset(path: str, local: Optional[Path], dataset: Any) -> HubReader | StreamReader:
    """The reader for a hub id or a dataset directory (`local`), per the dataset config's split and subset.

    Raises DataError naming the dataset when it cannot be loaded (not found, not cached while offline,
    an unknown split or subset).
    """
    import datasets

    datasets.disable_progress_bars()
    split, subset = dataset.split, dataset.subset
    label = f"{local or path}[{subset + '/' if subset else ''}{split}]"
    try:
        if local is not None and _saved_to_disk(local):
            loaded = datasets.load_from_disk(str(local))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(f"{label}: no split '{split}' (it has {', '.join(loaded)}); "
                                    "set the dataset's split")
                loaded = loaded[split]
            return StreamReader(loaded.to_iterable_dataset(), label) if dataset.streaming else HubReader(loaded, label)
        loaded = datasets.load_dataset(
            str(local or path), name=subset, split=split, revision=dataset.revision, streaming=dataset.streaming
        )
    except DataError:
        raise
    except Exception as error:  # datasets raises many types: ConnectionError, FileNotFoundError, ValueError ...
        raise DataError(f"{label}: cannot load the dataset: {_one_line(error)}{_hint(path, local)}") from None
    return StreamReader(loaded, label) if dataset.streaming else HubReader(loaded, label)


def _saved_to_disk(directory: Path) -> bool:
    """Whether `directory` is a save_to_disk output (a Dataset or a DatasetDict)."""
    return (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file()


def _one_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def _hint(path: str, local: Optional[Path]) -> str:
    if local is not None:
        return ""
    truthy = ("1", "true", "yes", "on")
    offline = [name for name in _OFFLINE_VARIABLES if os.environ.get(name, "").strip().lower() in truthy]
    if offline:
        return (f" (no such file or directory, and {offline[0]}=1 while the hub dataset '{path}' is not in the "
                "cache: load it once online, or point path at a local file)")
    return " (no such file or directory either)"
