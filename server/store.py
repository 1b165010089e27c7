"""Durable jobs: a state directory holding an sqlite journal (WAL) of accepted jobs and their results.

A restart must be able to run an accepted job again, so what is kept is what the client sent: the
kind, the raw `params` map and the image bytes (files beside the database), parsed again on start.
A finished job keeps its terminal event; result images are files, so a retained result costs disk,
not memory. Commits are durable against a crash of the process (kill -9), not against a power cut
(nothing is fsynced per job); a job whose input file went missing that way ends in `bad_image`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

from .protocol import ImageRef

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    kind TEXT NOT NULL,
    params BLOB NOT NULL,
    images BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    accepted_at REAL NOT NULL,
    finished_at REAL,
    terminal BLOB,
    size INTEGER NOT NULL DEFAULT 0,
    preview BLOB
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, finished_at);
"""


class StateDirError(RuntimeError):
    """The state directory cannot be used (another server holds it, or it is not writable)."""


@dataclass(frozen=True)
class Accepted:
    """A job as its client sent it: what the journal keeps so that a restart can parse it again."""

    id: str
    owner: str
    kind: str
    params: Mapping[str, Any]
    images: Mapping[str, ImageRef]
    preview_formats: tuple[str, ...] = ()  # the submitting client's (empty: the server's default)


@dataclass(frozen=True)
class StoredJob(Accepted):
    """An accepted, unfinished job as the journal has it."""

    seq: int = 0
    attempts: int = 0  # runs started (a crash mid-run leaves them counted)


@dataclass(frozen=True)
class StoredResult:
    id: str
    owner: str
    finished_at: float  # wall clock (time.time), so retention counts across restarts
    size: int


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _formats(blob: bytes | None) -> tuple[str, ...]:
    return tuple(_unpack(blob)) if blob else ()


def _event_images(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("images") or [])


class JobStore:
    """The journal of one state directory; one server at a time holds it (a lock file)."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.inputs = state_dir / "inputs"
        self.results = state_dir / "results"
        try:
            for d in (state_dir, self.inputs, self.results):
                d.mkdir(parents=True, exist_ok=True)
            self._lock_file = _lock(state_dir / "lock")
            self._db = sqlite3.connect(state_dir / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        except OSError as exc:
            raise StateDirError(f"cannot use state dir {state_dir}: {exc}") from exc
        self._mutex = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit is in the OS's hands before the client hears `queued`, so it survives
        # the process dying (kill -9); only a power cut can lose the newest ones. No fsync per job.
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StateDirError(f"state dir {state_dir} was written by a newer sdbridge (schema {version})")
        self._db.executescript(SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "preview" not in columns:  # a state dir from before step-preview formats
            self._db.execute("ALTER TABLE jobs ADD COLUMN preview BLOB")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._remove_orphans()

    # --- writes ------------------------------------------------------------------------------------

    def add(self, job: Accepted) -> None:
        """Journal an accepted job: its image bytes as files first, then the row that names them."""
        with self._mutex:
            seq = self._next_seq()
            meta = {}
            for n, (name, ref) in enumerate(job.images.items()):
                (self.inputs / f"{seq}.{n}").write_bytes(ref.data)
                meta[name] = {"format": ref.format, "w": ref.w, "h": ref.h, "n": n}
            self._db.execute(
                "INSERT INTO jobs (seq, id, owner, kind, params, images, state, accepted_at, preview)"
                " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
                (
                    seq,
                    job.id,
                    job.owner,
                    job.kind,
                    _pack(dict(job.params)),
                    _pack(meta),
                    time.time(),
                    _pack(list(job.preview_formats)),
                ),
            )

    def started(self, job_id: str) -> None:
        """Count a run: a job that keeps killing the server is not retried forever."""
        self._exec("UPDATE jobs SET attempts = attempts + 1 WHERE id = ?", job_id)

    def requeued(self, job_id: str) -> None:
        """A run that was stopped on purpose (shutdown) does not count."""
        self._exec("UPDATE jobs SET attempts = max(attempts - 1, 0) WHERE id = ?", job_id)

    def finish(self, job_id: str, event: Mapping[str, Any]) -> int:
        """Record the terminal event, result images as files; the inputs are deleted. → bytes kept."""
        with self._mutex:
            row = self._db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return 0
            seq, size = row[0], 0
            images = []
            for n, img in enumerate(_event_images(event)):
                data = img.get("data", b"")
                (self.results / f"{seq}.{n}").write_bytes(data)
                size += len(data)
                images.append({k: v for k, v in img.items() if k != "data"})
            stored = {**event, "images": images} if "images" in event else dict(event)
            self._db.execute(
                "UPDATE jobs SET state = 'done', terminal = ?, finished_at = ?, size = ?, params = x'80',"
                " images = x'80' WHERE seq = ?",
                (_pack(stored), time.time(), size, seq),
            )
            self._unlink(self.inputs, seq)
            return size

    def delete(self, job_ids: list[str]) -> None:
        with self._mutex:
            for job_id in job_ids:
                row = self._db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if row is not None:
                    self._db.execute("DELETE FROM jobs WHERE seq = ?", (row[0],))
                    self._unlink(self.inputs, row[0])
                    self._unlink(self.results, row[0])

    # --- reads --------------------------------------------------------------------------------------

    def terminal(self, job_id: str) -> dict[str, Any] | None:
        """The finished job's terminal event with its image bytes, as first delivered."""
        with self._mutex:
            row = self._db.execute(
                "SELECT seq, terminal FROM jobs WHERE id = ? AND state = 'done'", (job_id,)
            ).fetchone()
            if row is None:
                return None
            event = _unpack(row[1])
            for n, img in enumerate(_event_images(event)):
                img["data"] = (self.results / f"{row[0]}.{n}").read_bytes()
            return event

    def pending(self) -> list[StoredJob]:
        """Accepted, unfinished jobs in the order they were accepted."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT seq, id, owner, kind, params, images, attempts, preview FROM jobs"
                " WHERE state = 'queued' ORDER BY seq"
            ).fetchall()
            return [
                StoredJob(
                    r[1], r[2], r[3], _unpack(r[4]), self._refs(r[0], r[5]), _formats(r[7]), seq=r[0], attempts=r[6]
                )
                for r in rows
            ]

    def finished(self) -> list[StoredResult]:
        with self._mutex:
            rows = self._db.execute(
                "SELECT id, owner, finished_at, size FROM jobs WHERE state = 'done' ORDER BY finished_at"
            ).fetchall()
            return [StoredResult(*r) for r in rows]

    def close(self) -> None:
        """Fold the WAL into the database and let the next server have the directory."""
        with self._mutex, contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
        _unlock(self._lock_file)

    # --- internals -----------------------------------------------------------------------------------

    def _exec(self, sql: str, *args: Any) -> None:
        with self._mutex:
            self._db.execute(sql, args)

    def _next_seq(self) -> int:
        # AUTOINCREMENT never reuses a number, so files of a deleted job can't be taken for a new one's.
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        return (row[0] if row else 0) + 1

    def _refs(self, seq: int, meta_blob: bytes) -> dict[str, ImageRef]:
        refs = {}
        for name, m in _unpack(meta_blob).items():
            path = self.inputs / f"{seq}.{m['n']}"
            data = path.read_bytes() if path.exists() else b""  # missing: parsing says bad_image
            refs[name] = ImageRef(m["format"], data, m["w"], m["h"])
        return refs

    def _unlink(self, folder: Path, seq: int) -> None:
        for path in _files_of(folder, seq):
            with contextlib.suppress(OSError):
                path.unlink()

    def _remove_orphans(self) -> None:
        """Files a crash left without their row (written just before the insert / after the delete)."""
        state = dict(self._db.execute("SELECT seq, state FROM jobs").fetchall())
        for folder, keep in ((self.inputs, "queued"), (self.results, "done")):
            for path in folder.iterdir():
                seq = path.name.split(".")[0]
                if not seq.isdigit() or state.get(int(seq)) != keep:
                    with contextlib.suppress(OSError):
                        path.unlink()


def _files_of(folder: Path, seq: int) -> Iterator[Path]:
    return folder.glob(f"{seq}.*")


# --- one server per state dir ----------------------------------------------------------------------


def _lock(path: Path) -> Any:
    fh = open(path, "a+")  # noqa: SIM115 - held open for the server's lifetime
    try:
        fh.seek(0)  # every server locks the same first byte
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = "unknown"
        with contextlib.suppress(OSError):
            fh.seek(0)
            holder = fh.read().strip() or holder
        fh.close()
        raise StateDirError(
            f"state dir {path.parent} is in use by another sdbridge server (pid {holder}): "
            "give this one its own --state-dir"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _unlock(fh: Any) -> None:
    with contextlib.suppress(OSError):
        fh.close()  # closing releases flock / msvcrt locks
