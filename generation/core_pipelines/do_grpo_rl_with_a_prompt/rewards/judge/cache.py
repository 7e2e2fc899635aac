"""On-disk cache of judge answers (sqlite), so re-runs and resumed runs do not pay twice.

The key is a SHA-256 of the judge model, the rendered messages and the sampling parameters; the value is
the judge's answer (text, logprobs, token usage). Only answers that parsed are stored, so a failure is
asked again next time. One connection per file per process, guarded by a lock: safe from any thread or
event loop (a lookup takes microseconds, so it runs inline). Several processes share one file (WAL, busy
timeout 30 s). `cache: false` on the reward turns it off.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from .client import JudgeRequest, JudgeResponse

DEFAULT_CACHE_PATH = "outputs/judge_cache.sqlite"
"""Relative to the working directory (the repo root for run_augmentoolkit.py; outputs/ is git-ignored).
Shared by every run: entries are keyed by judge model, rendered messages and sampling settings, so sharing
is safe, and resumed, repeated or swept runs do not pay twice."""

_OPEN: dict[Path, "JudgeCache"] = {}
_OPEN_LOCK = threading.Lock()


def open_cache(path: str | Path = DEFAULT_CACHE_PATH) -> "JudgeCache":
    """The process-wide cache for `path` (created with its folder on first use)."""
    resolved = Path(path).expanduser().resolve()
    with _OPEN_LOCK:
        if resolved not in _OPEN:
            _OPEN[resolved] = JudgeCache(resolved)
        return _OPEN[resolved]


def request_key(request: JudgeRequest) -> str:
    encoded = json.dumps(request.cache_fields(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._set_up()

    @retry(retry=retry_if_exception(lambda error: "locked" in str(error)), stop=stop_after_attempt(30),
           wait=wait_random_exponential(multiplier=0.05, max=1.0), reraise=True)
    def _set_up(self) -> None:
        """WAL mode and the table. Several processes opening a new file at once can get "database is locked"
        from the switch to WAL (SQLite does not wait for it): try again shortly."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers "
            "(key TEXT PRIMARY KEY, model TEXT, value TEXT, created REAL DEFAULT (julianday('now')))"
        )

    def get(self, request: JudgeRequest) -> Optional[JudgeResponse]:
        with self._lock:
            row = self._db.execute("SELECT value FROM answers WHERE key = ?", (request_key(request),)).fetchone()
        if row is None:
            return None
        value: dict[str, Any] = json.loads(row[0])
        return JudgeResponse(**value)

    def put(self, request: JudgeRequest, response: JudgeResponse) -> None:
        value = json.dumps(vars(response), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, model, value) VALUES (?, ?, ?)",
                (request_key(request), request.model, value),
            )

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
