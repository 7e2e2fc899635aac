"""List and object columns through 🤗 datasets into the rewards, unchanged: carried as JSON text.

TRL builds its train set with `datasets.Dataset.from_list(rows)` and hands every extra column back to the
reward function, batch by batch. Arrow types each column once for all rows, so a list of objects whose keys
differ per row (google/IFEval's `kwargs`: [{}, {"num_highlights": 3}, {"relation": "at least", ...}])
would come back with every key in every object (None where the row had none), and a column holding a list
in one row and text in another would not build at all. So every column that holds a list or an object in
some row travels as JSON text and is decoded before the rewards are called: the reward gets the row's
values as they were read.

>>> rows = [{"kwargs": [{}, {"num_words": 300}]}, {"kwargs": None}]
>>> names = json_columns(rows)
>>> encoded = encode_rows(rows, names)
>>> encoded[0]["kwargs"], decode_columns({"kwargs": [r["kwargs"] for r in encoded]}, names)["kwargs"]
('[{}, {"num_words": 300}]', [[{}, {'num_words': 300}], None])
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from .columns import BASE_COLUMNS


def json_columns(rows: Iterable[dict]) -> frozenset[str]:
    """The names of the columns (besides prompt, answer, ...) that hold a list or an object in some row."""
    return frozenset(key for row in rows for key, value in row.items()
                     if isinstance(value, (list, dict)) and key not in BASE_COLUMNS)


def encode_rows(rows: list[dict], names: frozenset[str]) -> list[dict]:
    """Copies of `rows` with the `names` columns as JSON text (None stays None); the rows themselves are
    left unchanged."""
    if not names:
        return rows
    return [{key: (_encode(value) if key in names else value) for key, value in row.items()} for row in rows]


def decode_columns(columns: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """The reward arguments with the `names` columns (lists of JSON text, one per completion) decoded."""
    if not names:
        return columns
    decoded = dict(columns)
    for name in names & columns.keys():
        values = columns[name]
        if isinstance(values, list):
            decoded[name] = [json.loads(value) if isinstance(value, str) else value for value in values]
    return decoded


def _encode(value: Any) -> Any:
    return None if value is None else json.dumps(value, ensure_ascii=False)
