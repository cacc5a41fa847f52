"""The state file: what each workspace holds, cursors, pending events and runs, in one SQLite file.

Layout, chosen to stay near 200 bytes per indicator: ids and uuids are 16-byte blobs, times are
integer milliseconds since the epoch, and the indicator table is `WITHOUT ROWID` with the workspace
and STIX id as its key. A row keeps what a revocation must re-send (pattern, pattern type,
`valid_from`, `created`), because revocations are rebuilt from the state alone.

The file carries `PRAGMA application_id` and a schema version in `PRAGMA user_version`; a file with
another application id is refused as foreign. Changes happen in one transaction per acknowledged
batch. A lock file beside the state stops two runs from using it at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from misp2sentinel.errors import LockHeldError, StateError
from misp2sentinel.mapping.ids import canonical_uuid

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4D325354  # "M2ST"
SCHEMA_VERSION = 4

LIVE = 0
FAILED = 1
REVOKED = 2
STATUS_NAMES = {LIVE: "live", FAILED: "failed", REVOKED: "revoked"}

KIND_PREFIXES = {0: "indicator--", 1: "identity--", 2: "attack-pattern--", 3: "relationship--"}
PREFIX_KINDS = {prefix: kind for kind, prefix in KIND_PREFIXES.items()}

SCHEMA = [
    """CREATE TABLE workspaces (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        workspace_id TEXT,
        source_system TEXT
    )""",
    """CREATE TABLE indicators (
        workspace INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        stix_id BLOB NOT NULL,
        source_key BLOB NOT NULL,
        event_uuid BLOB,
        attribute_uuid BLOB,
        digest BLOB,
        status INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        created INTEGER NOT NULL,
        modified INTEGER NOT NULL,
        valid_from INTEGER NOT NULL,
        pattern TEXT,
        pattern_type TEXT,
        last_upload INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        rejected_digest BLOB,
        PRIMARY KEY (workspace, stix_id)
    ) WITHOUT ROWID""",
    # The status column makes the index cover the per-run question "which events hold live indicators".
    "CREATE INDEX indicators_by_event ON indicators (workspace, event_uuid, status)",
    """CREATE TABLE cursors (
        workspace INTEGER NOT NULL,
        source TEXT NOT NULL,
        selection BLOB NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (workspace, source, selection)
    ) WITHOUT ROWID""",
    """CREATE TABLE pending_events (
        workspace INTEGER NOT NULL,
        event_uuid TEXT NOT NULL,
        since INTEGER NOT NULL,
        PRIMARY KEY (workspace, event_uuid)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        workspace INTEGER NOT NULL,
        event_uuid TEXT NOT NULL,
        timestamp INTEGER,
        tags_digest BLOB,
        selected INTEGER NOT NULL,
        PRIMARY KEY (workspace, event_uuid)
    ) WITHOUT ROWID""",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        command TEXT NOT NULL,
        started INTEGER NOT NULL,
        finished INTEGER,
        outcome TEXT,
        summary TEXT
    )""",
]


def _migrate_to_2(db: sqlite3.Connection) -> None:
    """Add the workspace binding and the table of evaluated events."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(workspaces)")}
    for column in ("workspace_id", "source_system"):
        if column not in columns:
            db.execute(f"ALTER TABLE workspaces ADD COLUMN {column} TEXT")
    db.execute(next(statement for statement in SCHEMA if statement.startswith("CREATE TABLE events")))


def _migrate_to_3(db: sqlite3.Connection) -> None:
    """Let the event index cover the status, so listing events with live indicators reads the index only."""
    db.execute("DROP INDEX IF EXISTS indicators_by_event")
    db.execute("CREATE INDEX indicators_by_event ON indicators (workspace, event_uuid, status)")


def _migrate_to_4(db: sqlite3.Connection) -> None:
    """Add the digest of content Sentinel rejected three times, which is not sent again."""
    db.execute("ALTER TABLE indicators ADD COLUMN rejected_digest BLOB")


# The step that brings a file from the previous schema version to each version.
MIGRATIONS = {2: _migrate_to_2, 3: _migrate_to_3, 4: _migrate_to_4}

# A record refused this many times in a row with the same validation message is rejected: its
# content is not sent again until it changes, or until `sync --retry-rejected`.
REJECT_AFTER = 3


def key16(text: str | None) -> bytes | None:
    """Return a uuid as its 16 bytes, or a 16-byte BLAKE2b digest of text that is not a uuid."""
    if text is None:
        return None
    canonical = canonical_uuid(text)
    if canonical:
        return uuid.UUID(canonical).bytes
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def source_key(source: str, part: str) -> bytes:
    return hashlib.blake2b(f"{source}|{part}".encode("utf-8"), digest_size=16).digest()


def encode_id(stix_id: str) -> tuple[int, bytes]:
    prefix, _, value = stix_id.partition("--")
    return PREFIX_KINDS[prefix + "--"], uuid.UUID(value).bytes


def decode_id(kind: int, blob: bytes) -> str:
    # Formatting the hex directly is about five times faster than str(uuid.UUID(bytes=blob)), and a
    # full sync decodes every stored id of every fetched event.
    text = blob.hex()
    return f"{KIND_PREFIXES[kind]}{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(slots=True)
class Row:
    """The state's record of one STIX id in one workspace."""

    stix_id: str
    source_key: bytes
    digest: bytes | None
    status: int
    generation: int
    created: int
    modified: int
    valid_from: int
    pattern: str | None
    pattern_type: str | None
    last_upload: int | None
    attempts: int
    last_error: str | None
    rejected_digest: bytes | None


@dataclass(slots=True)
class Outcome:
    """The result of sending one object: what to write for it once Sentinel responded."""

    stix_id: str
    source_key: bytes
    event_uuid: str | None
    attribute_uuid: str | None
    digest: bytes | None
    generation: int
    created: int
    modified: int
    valid_from: int
    pattern: str | None
    pattern_type: str | None
    revoke: bool
    ok: bool
    message: str | None
    validation: bool = False


ROW_COLUMNS = (
    "kind, stix_id, source_key, digest, status, generation, created, modified, valid_from, "
    "pattern, pattern_type, last_upload, attempts, last_error, rejected_digest"
)


def _row(values: tuple) -> Row:
    kind, blob, *rest = values
    return Row(decode_id(kind, blob), *rest)


class StateStore:
    """An open state file. Use as a context manager; `readonly` neither creates nor locks it."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock: FileLock | None = None
        self._db: sqlite3.Connection | None = None
        self._workspace_ids: dict[str, int] = {}

    def __enter__(self) -> StateStore:
        self.open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def exists(self) -> bool:
        return self._db is not None

    @property
    def connection(self) -> sqlite3.Connection | None:
        """The open SQLite connection, for read-only reports; None when no state file exists."""
        return self._db

    def open(self) -> None:
        if self.path.is_dir():
            raise StateError(
                f"the state path {self.path} is a folder",
                hint="set state.path to a file name, e.g. /var/lib/misp2sentinel/state.sqlite",
            )
        if not self.readonly:
            self._acquire_lock()
        elif not self.path.exists() or self.path.stat().st_size == 0:
            # A missing or empty (pre-created) file holds no state yet; a dry run reads nothing.
            return
        try:
            if not self.readonly and not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            uri = f"file:{self.path}?mode=ro" if self.readonly else f"file:{self.path}"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._check_and_migrate()
        except sqlite3.DatabaseError as error:
            self.close()
            raise StateError(
                f"the state file {self.path} is corrupt or not an SQLite database ({error})",
                hint="restore it from a backup, or move it away to start again (everything will be re-sent)",
            ) from None
        except OSError as error:
            self.close()
            raise StateError(f"cannot open the state file {self.path}: {error.strerror}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _acquire_lock(self) -> None:
        lock_path = Path(f"{self.path}.lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StateError(f"cannot create the state folder {lock_path.parent}: {error.strerror}") from None
        self._lock = FileLock(str(lock_path), timeout=0, mode=0o600)
        try:
            self._lock.acquire()
        except Timeout:
            self._lock = None
            raise LockHeldError(
                f"another misp2sentinel run holds the lock on {self.path}",
                hint="wait for it to finish; the lock is released when that process exits",
            ) from None

    def _check_and_migrate(self) -> None:
        db = self._db
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id == 0 and version == 0 and tables == 0:
            if self.readonly:
                return
            db.execute("PRAGMA journal_mode = WAL")
            with self.transaction():
                for statement in SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return
        if application_id != APPLICATION_ID:
            raise StateError(
                f"{self.path} is an SQLite file of another application (application_id {application_id:#x})",
                hint="point state.path at a new file; this one is not a misp2sentinel state file",
            )
        if version > SCHEMA_VERSION:
            raise StateError(
                f"{self.path} has schema version {version}, newer than this misp2sentinel supports ({SCHEMA_VERSION})",
                hint="upgrade misp2sentinel",
            )
        if version < SCHEMA_VERSION and self.readonly:
            raise StateError(
                f"{self.path} has schema version {version} and needs an upgrade to {SCHEMA_VERSION}",
                hint="run a sync without --dry-run once; it upgrades the file",
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                MIGRATIONS[number](db)
                db.execute(f"PRAGMA user_version = {number}")
            log.warning("upgraded the state file %s to schema version %d", self.path, number)
        if not self.readonly:
            db.execute("PRAGMA synchronous = FULL")

    # -- transactions

    class _Transaction:
        def __init__(self, db: sqlite3.Connection) -> None:
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, exc, traceback) -> None:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def transaction(self) -> StateStore._Transaction:
        return self._Transaction(self._db)

    # -- reads

    def bind_workspace(self, name: str, workspace_id: str, source_system: str) -> None:
        """Record which Sentinel workspace and source system a workspace name stands for, and
        raise StateError when the configuration changed either, because the state would then
        describe what another workspace holds, or Sentinel would keep a second copy of everything."""
        key = self.workspace_id(name)
        if key is None:
            return
        stored = self._db.execute(
            "SELECT workspace_id, source_system FROM workspaces WHERE id = ?", (key,)
        ).fetchone()
        if stored == (None, None):
            if not self.readonly:
                with self.transaction():
                    self._db.execute(
                        "UPDATE workspaces SET workspace_id = ?, source_system = ? WHERE id = ?",
                        (workspace_id, source_system, key),
                    )
            return
        if stored[0] != workspace_id:
            raise StateError(
                f"workspace {name} was synced to Sentinel workspace {stored[0]}, but the configuration now gives {workspace_id}",
                hint="give the new workspace a new name so it is filled from scratch; the old name keeps what the old workspace holds",
            )
        if stored[1] != source_system:
            raise StateError(
                f"workspace {name} was synced with source system {stored[1]!r}, but the configuration now gives {source_system!r}",
                hint="Sentinel keys indicators by source system, so it would keep a second copy of everything; "
                "restore the old name, or revoke everything with the old one first",
            )

    def workspace_id(self, name: str) -> int | None:
        """Return the key of a workspace, creating it unless the store is read-only."""
        if name in self._workspace_ids:
            return self._workspace_ids[name]
        if self._db is None:
            return None
        found = self._db.execute("SELECT id FROM workspaces WHERE name = ?", (name,)).fetchone()
        if found is None:
            if self.readonly:
                return None
            self._db.execute("INSERT INTO workspaces (name) VALUES (?)", (name,))
            found = self._db.execute("SELECT id FROM workspaces WHERE name = ?", (name,)).fetchone()
        self._workspace_ids[name] = found[0]
        return found[0]

    # Queries by event name their index: without ANALYZE statistics SQLite prefers the primary key,
    # which scans the whole workspace. Each sync asks this once per event and workspace.
    def rows_for_event(self, workspace: str, event_uuid: str) -> dict[str, Row]:
        key = self.workspace_id(workspace)
        if key is None:
            return {}
        cursor = self._db.execute(
            f"SELECT {ROW_COLUMNS} FROM indicators INDEXED BY indicators_by_event WHERE workspace = ? AND event_uuid = ?",
            (key, key16(event_uuid)),
        )
        return {row.stix_id: row for row in map(_row, cursor)}

    def row(self, workspace: str, stix_id: str) -> Row | None:
        key = self.workspace_id(workspace)
        if key is None:
            return None
        kind, blob = encode_id(stix_id)
        found = self._db.execute(
            f"SELECT {ROW_COLUMNS} FROM indicators WHERE workspace = ? AND stix_id = ?", (key, blob)
        ).fetchone()
        return _row(found) if found else None

    def generations(self, workspace: str) -> Iterator[tuple[bytes, int, int]]:
        """Yield (source key, generation, status) of every row of a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return
        yield from self._db.execute(
            "SELECT source_key, generation, status FROM indicators WHERE workspace = ?", (key,)
        )

    def cursor(self, workspace: str, source: str, selection: bytes) -> int | None:
        key = self.workspace_id(workspace)
        if key is None:
            return None
        found = self._db.execute(
            "SELECT value FROM cursors WHERE workspace = ? AND source = ? AND selection = ?",
            (key, source, selection),
        ).fetchone()
        return found[0] if found else None

    def known_events(self, workspace: str) -> dict[str, tuple[int | None, bytes | None, bool]]:
        """Return {event uuid: (timestamp, tags digest, selected)} of every event evaluated for a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return {}
        cursor = self._db.execute(
            "SELECT event_uuid, timestamp, tags_digest, selected FROM events WHERE workspace = ?", (key,)
        )
        return {uuid_text: (timestamp, digest, bool(selected)) for uuid_text, timestamp, digest, selected in cursor}

    def live_count(self, workspace: str) -> int:
        key = self.workspace_id(workspace)
        if key is None:
            return 0
        return self._db.execute(
            "SELECT count(*) FROM indicators WHERE workspace = ? AND status = ? AND kind = 0", (key, LIVE)
        ).fetchone()[0]

    def refresh_due(self, workspace: str, uploaded_before: int, limit: int) -> list[tuple[str, str | None]]:
        """Return up to `limit` (stix id, event uuid) of live indicators last uploaded before
        `uploaded_before`, oldest first. Event uuids come back in their stored 16-byte form's text."""
        key = self.workspace_id(workspace)
        if key is None or limit <= 0:
            return []
        cursor = self._db.execute(
            "SELECT kind, stix_id, event_uuid FROM indicators WHERE workspace = ? AND status = ? AND kind = 0"
            " AND last_upload < ? ORDER BY last_upload LIMIT ?",
            (key, LIVE, uploaded_before, limit),
        )
        return [(decode_id(kind, blob), event_key) for kind, blob, event_key in cursor]

    def rows_for_event_key(self, workspace: str, event_key: bytes) -> dict[str, Row]:
        key = self.workspace_id(workspace)
        if key is None:
            return {}
        cursor = self._db.execute(
            f"SELECT {ROW_COLUMNS} FROM indicators INDEXED BY indicators_by_event WHERE workspace = ? AND event_uuid = ?", (key, event_key)
        )
        return {row.stix_id: row for row in map(_row, cursor)}

    def live_event_keys(self, workspace: str) -> list[bytes]:
        """Return the stored keys of the events that hold live indicators in a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return []
        cursor = self._db.execute(
            "SELECT DISTINCT event_uuid FROM indicators INDEXED BY indicators_by_event WHERE workspace = ? AND status = ? AND event_uuid IS NOT NULL",
            (key, LIVE),
        )
        return [row[0] for row in cursor]

    def live_rows(self, workspace: str) -> Iterator[tuple[Row, bytes | None]]:
        """Yield (row, event key) of every live indicator of a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return
        cursor = self._db.execute(
            f"SELECT {ROW_COLUMNS}, event_uuid FROM indicators WHERE workspace = ? AND status = ? AND kind = 0",
            (key, LIVE),
        )
        for values in cursor.fetchall():
            yield _row(values[:-1]), values[-1]

    def live_ids(self, workspace: str) -> Iterator[tuple[str, bytes | None]]:
        """Yield (stix id, event key) of every live indicator of a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return
        cursor = self._db.execute(
            "SELECT kind, stix_id, event_uuid FROM indicators WHERE workspace = ? AND status = ? AND kind = 0",
            (key, LIVE),
        )
        for kind, blob, event_key in cursor:
            yield decode_id(kind, blob), event_key

    def pending_events(self, workspace: str) -> list[str]:
        key = self.workspace_id(workspace)
        if key is None:
            return []
        return [r[0] for r in self._db.execute("SELECT event_uuid FROM pending_events WHERE workspace = ?", (key,))]

    def rejected_event_keys(self, workspace: str) -> list[bytes]:
        """Return the stored keys of the events that hold rejected records in a workspace."""
        key = self.workspace_id(workspace)
        if key is None:
            return []
        cursor = self._db.execute(
            "SELECT DISTINCT event_uuid FROM indicators WHERE workspace = ? AND rejected_digest IS NOT NULL"
            " AND event_uuid IS NOT NULL",
            (key,),
        )
        return [row[0] for row in cursor]

    def rejected_count(self, workspace: str) -> int:
        key = self.workspace_id(workspace)
        if key is None:
            return 0
        return self._db.execute(
            "SELECT count(*) FROM indicators WHERE workspace = ? AND rejected_digest IS NOT NULL", (key,)
        ).fetchone()[0]

    def counts(self, workspace: str) -> dict[str, int]:
        key = self.workspace_id(workspace)
        if key is None:
            return {}
        rows = self._db.execute(
            "SELECT status, count(*) FROM indicators WHERE workspace = ? GROUP BY status", (key,)
        )
        return {STATUS_NAMES[status]: number for status, number in rows}

    # -- writes

    def record_outcomes(self, workspace: str, outcomes: Iterable[Outcome], uploaded_at: int) -> None:
        """Write the results of one acknowledged batch in one transaction.

        A sent object becomes live (or revoked); a failed create is kept as failed so the next run
        retries it; a failed update or revocation keeps the row's previous content and digest, so
        the next run sees the difference again, and only counts the attempt and its message.
        """
        key = self.workspace_id(workspace)
        db = self._db
        with self.transaction():
            for outcome in outcomes:
                kind, blob = encode_id(outcome.stix_id)
                if outcome.ok:
                    db.execute(
                        "INSERT OR REPLACE INTO indicators (workspace, kind, stix_id, source_key, event_uuid,"
                        " attribute_uuid, digest, status, generation, created, modified, valid_from, pattern,"
                        " pattern_type, last_upload, attempts, last_error)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL)",
                        (
                            key, kind, blob, outcome.source_key, key16(outcome.event_uuid),
                            key16(outcome.attribute_uuid), outcome.digest,
                            REVOKED if outcome.revoke else LIVE, outcome.generation, outcome.created,
                            outcome.modified, outcome.valid_from, outcome.pattern, outcome.pattern_type,
                            uploaded_at,
                        ),
                    )
                    continue
                # Attempts count failures in a row with the same message; a validation failure
                # reaching REJECT_AFTER marks the content as rejected.
                updated = db.execute(
                    "UPDATE indicators SET"
                    " attempts = CASE WHEN last_error IS ? THEN attempts + 1 ELSE 1 END,"
                    " rejected_digest = CASE WHEN ? AND last_error IS ? AND attempts + 1 >= ? THEN ? ELSE rejected_digest END,"
                    " last_error = ?"
                    " WHERE workspace = ? AND stix_id = ?",
                    (outcome.message, outcome.validation, outcome.message, REJECT_AFTER, outcome.digest,
                     outcome.message, key, blob),
                ).rowcount
                if not updated:
                    db.execute(
                        "INSERT INTO indicators (workspace, kind, stix_id, source_key, event_uuid, attribute_uuid,"
                        " digest, status, generation, created, modified, valid_from, pattern, pattern_type,"
                        " last_upload, attempts, last_error)"
                        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, 0, ?, ?, ?, NULL, 1, ?)",
                        (
                            key, kind, blob, outcome.source_key, key16(outcome.event_uuid),
                            key16(outcome.attribute_uuid), FAILED, outcome.generation, outcome.created,
                            outcome.valid_from, outcome.pattern, outcome.pattern_type, outcome.message,
                        ),
                    )

    def set_cursor(self, workspace: str, source: str, selection: bytes, value: int) -> None:
        key = self.workspace_id(workspace)
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO cursors (workspace, source, selection, value) VALUES (?, ?, ?, ?)",
                (key, source, selection, value),
            )

    def set_pending(self, workspace: str, event_uuid: str, pending: bool, now_ms: int) -> None:
        key = self.workspace_id(workspace)
        with self.transaction():
            if pending:
                self._db.execute(
                    "INSERT OR IGNORE INTO pending_events (workspace, event_uuid, since) VALUES (?, ?, ?)",
                    (key, event_uuid, now_ms),
                )
            else:
                self._db.execute(
                    "DELETE FROM pending_events WHERE workspace = ? AND event_uuid = ?", (key, event_uuid)
                )

    def record_events(self, workspace: str, events: Iterable[tuple[str, int | None, bytes | None, bool]]) -> None:
        """Remember the events evaluated for a workspace: (uuid, timestamp, tags digest, selected)."""
        key = self.workspace_id(workspace)
        with self.transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO events (workspace, event_uuid, timestamp, tags_digest, selected)"
                " VALUES (?, ?, ?, ?, ?)",
                [(key, uuid_text, timestamp, digest, int(selected)) for uuid_text, timestamp, digest, selected in events],
            )

    def forget_events(self, workspace: str, event_uuids: Iterable[str]) -> None:
        key = self.workspace_id(workspace)
        with self.transaction():
            self._db.executemany(
                "DELETE FROM events WHERE workspace = ? AND event_uuid = ?", [(key, u) for u in event_uuids]
            )

    def start_run(self, command: str, started_ms: int) -> int:
        with self.transaction():
            cursor = self._db.execute("INSERT INTO runs (command, started) VALUES (?, ?)", (command, started_ms))
        return cursor.lastrowid

    def finish_run(self, run_id: int, finished_ms: int, outcome: str, summary: str) -> None:
        with self.transaction():
            self._db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, summary = ? WHERE id = ?",
                (finished_ms, outcome, summary, run_id),
            )
