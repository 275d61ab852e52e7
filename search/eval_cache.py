"""Model scores cached on disk across evaluation runs (SQLite, keyed by model version and text).

Evaluations re-score the same (query, passage) pairs and re-embed the same texts when only the
fusion weights, the feedback or the test split change; on two shared CPU cores that is most of their time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np


class CachedCrossEncoder:
    """Wraps a cross-encoder with an on-disk cache of pair scores (SQLite), keyed by its version.

    Evaluations re-score the same (query, passage) pairs when only the fusion weights or the test
    split change; on two shared CPU cores that is most of their time.
    """

    def __init__(self, inner, path: Path) -> None:
        self.inner = inner
        self.version = inner.version
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL)")
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _key(self, a: str, b: str) -> str:
        return hashlib.sha256(f"{self.version}\x1f{a}\x1f{b}".encode()).hexdigest()

    def predict(self, pairs: list[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        keys = [self._key(a, b) for a, b in pairs]
        with self._lock:
            found: dict[str, float] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(self.db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk))
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            scores = self.inner.predict([pairs[i] for i in todo], batch_size=batch_size)
            with self._lock:
                rows = [(keys[i], float(s)) for i, s in zip(todo, scores, strict=True)]
                self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?)", rows)
                self.db.commit()
            for i, s in zip(todo, scores, strict=True):
                found[keys[i]] = float(s)
        return np.array([found[k] for k in keys], dtype=np.float32)


class CachedEmbedder:
    """Wraps the bi-encoder with an on-disk cache of passage and query vectors, keyed by its version."""

    def __init__(self, inner, path: Path) -> None:
        self.inner = inner
        self.model = inner.model  # the tokenizer and input limit used for passage windows
        self.version = inner.version
        self.dim = inner.dim
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB)")
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        keys = [hashlib.sha256(f"{self.version}\x1f{t}".encode()).hexdigest() for t in texts]
        with self._lock:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = self.db.execute(
                    f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            vectors = self.inner.encode([texts[i] for i in todo], batch_size=batch_size)
            with self._lock:
                self.db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                    [(keys[i], np.asarray(v, dtype=np.float32).tobytes()) for i, v in zip(todo, vectors, strict=True)],
                )
                self.db.commit()
            for i, v in zip(todo, vectors, strict=True):
                found[keys[i]] = np.asarray(v, dtype=np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])
