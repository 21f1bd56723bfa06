"""Install, upgrade and remove kivi-otrs inside a kivitendo database.

Two kinds of SQL (house style 1):
* versioned migrations in ``migrations/`` (tables, config rows, the role), applied by
  yoyo-migrations with its bookkeeping in our schema; each migration is one transaction;
* repeatable objects in ``sql/`` (functions, views, triggers, grants), re-applied on
  every ``migrate`` in one transaction together with a full refresh of the mirror.

A session advisory lock keeps two kivi-otrs processes from installing at once. It
dies with its connection, so it also tells whether a row in yoyo's lock table is
stale: while we hold the advisory lock no other kivi-otrs process can be inside
yoyo, and a row left by a killed ``migrate`` is removed instead of waited for.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg import conninfo, sql
from yoyo import get_backend, read_migrations
from yoyo.exceptions import LockTimeout

from . import db, kivitendo
from .errors import LockedError, MigrationError
from .resources import resource_dir

SCHEMA = "kivi_otrs"
LOCK_KEY = "kivi_otrs.install"
ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
YOYO_TABLES = ("_yoyo_log", "_yoyo_migration", "_yoyo_version", "yoyo_lock")

LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended(%(key)s, 0))"
LOCK_HOLDER_SQL = """
SELECT a.pid, a.application_name, a.client_addr::text
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
  AND l.objid = (hashtextextended(%(key)s, 0) & 4294967295)::bigint::oid
LIMIT 1
"""

STALE_YOYO_LOCK_SQL = "DELETE FROM kivi_otrs.yoyo_lock RETURNING pid, ctime"
FLAG_STATE_SQL = """
SELECT (SELECT value::integer FROM kivi_otrs.install_state WHERE key = 'flag_config_id'),
       EXISTS (SELECT 1 FROM public.custom_variable_configs c
               WHERE c.id = (SELECT value::integer FROM kivi_otrs.install_state WHERE key = 'flag_config_id')
                 AND c.module = 'Contacts' AND c.type = 'bool')
"""
FLAG_ADOPT_SQL = """
SELECT id FROM public.custom_variable_configs
WHERE module = 'Contacts' AND name = 'otrs_may_report_tickets' AND type = 'bool'
ORDER BY id LIMIT 1
"""
FLAG_CREATE_SQL = """
INSERT INTO public.custom_variable_configs
    (name, description, type, module, default_value, options, searchable, includeable,
     included_by_default, sortkey, flags, first_tab)
VALUES ('otrs_may_report_tickets', 'Darf Tickets melden (OTRS)', 'bool', 'Contacts', %(default)s, NULL,
        true, true, false,
        (SELECT coalesce(max(sortkey), 0) + 1 FROM public.custom_variable_configs WHERE module = 'Contacts'),
        '', false)
RETURNING id
"""
FLAG_RECORD_SQL = """
INSERT INTO kivi_otrs.install_state (key, value) VALUES ('flag_config_id', %(id)s), ('flag_config_created', %(created)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""

log = logging.getLogger("kivi_otrs.migrate")


@dataclass(frozen=True)
class InstallOptions:
    reader_role: str = "kivi_otrs_reader"
    flag_default: bool = False

    def validate(self) -> None:
        if not ROLE_NAME.match(self.reader_role):
            raise MigrationError(
                f"invalid role name {self.reader_role!r}: use lower-case letters, digits and _ (e.g. kivi_otrs_reader)"
            )


def _yoyo_uri(dsn: str, options: InstallOptions) -> str:
    params = {k: str(v) for k, v in conninfo.conninfo_to_dict(dsn).items()}
    dbname = params.pop("dbname", "")
    params["schema"] = SCHEMA
    gucs = f"-c kivi_otrs.reader_role={options.reader_role} -c kivi_otrs.flag_default={int(options.flag_default)}"
    params["options"] = (params.get("options", "") + " " + gucs).strip()
    return f"postgresql+psycopg:///{dbname}?{urlencode(params)}"


def _migrations() -> Any:
    return read_migrations(str(resource_dir("migrations")))


def repeatable_files() -> list[Path]:
    """The files of ``sql/`` in the order they are applied."""
    return sorted(resource_dir("sql").glob("*.sql"))


def _drop_statements() -> list[str]:
    statements = []
    for path in reversed(repeatable_files()):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("-- drop:"):
                statement = line[len("-- drop:") :].strip()
                if statement and not statement.startswith("("):
                    statements.append(statement)
    return statements


@contextmanager
def install_lock(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold the installation lock for the duration of the block."""
    conn = db.connect(dsn, autocommit=True)
    try:
        got = conn.execute(LOCK_SQL, {"key": LOCK_KEY}).fetchone()
        if not got or not got[0]:
            holder = conn.execute(LOCK_HOLDER_SQL, {"key": LOCK_KEY}).fetchone()
            who = f" (backend pid {holder[0]}, {holder[1] or 'unknown program'})" if holder else ""
            raise LockedError(
                f"another kivi-otrs migrate/rollback is running on this database{who}; wait for it to finish and retry"
            )
        yield conn
    finally:
        conn.close()


def clear_stale_yoyo_lock(lock_conn: psycopg.Connection[Any], announce: bool = True) -> list[int]:
    """With the advisory lock held, remove yoyo's lock row of a killed process; returns the pids removed."""
    if not lock_conn.execute("SELECT to_regclass('kivi_otrs.yoyo_lock')").fetchone()[0]:  # type: ignore[index]
        return []
    removed = [int(row[0]) for row in lock_conn.execute(STALE_YOYO_LOCK_SQL).fetchall()]
    for pid in removed if announce else []:
        log.warning("kivi-otrs: removed the migration lock of process %s, which is no longer running", pid)
    return removed


def _lock_timeout(exc: LockTimeout) -> LockedError:
    holder = re.search(r"Process (\d+)", str(exc))
    who = f" by process {holder.group(1)}" if holder else ""
    return LockedError(f"the migration table is locked{who}; if no kivi-otrs process is running, "
                       "run kivi-otrs break-lock")


def ensure_flag(conn: psycopg.Connection[Any], options: InstallOptions) -> str | None:
    """Re-create (or adopt) the flag's custom variable definition if an admin deleted it; says what it did."""
    row = conn.execute(FLAG_STATE_SQL).fetchone()
    if row is None or row[0] is None or row[1]:
        return None
    adopted = conn.execute(FLAG_ADOPT_SQL).fetchone()
    if adopted:
        new_id, created, what = adopted[0], "false", "adopted the existing one"
    else:
        default = "1" if options.flag_default else "0"
        new_id = conn.execute(FLAG_CREATE_SQL, {"default": default}).fetchone()[0]  # type: ignore[index]
        created, what = "true", f"re-created it (default {'ticked' if default == '1' else 'unticked'})"
    conn.execute(FLAG_RECORD_SQL, {"id": str(new_id), "created": created})
    message = (f"the custom variable otrs_may_report_tickets (id {row[0]}) was deleted in kivitendo; {what} as id "
               f"{new_id}; contacts need the flag ticked again to report tickets")
    log.warning("kivi-otrs: %s", message)
    return message


def _schema_exists(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %(s)s", {"s": SCHEMA}).fetchone() is not None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return db.redact(text)


def _map_db_error(action: str, exc: Exception) -> MigrationError:
    return MigrationError(f"{action} failed and was rolled back: {_first_line(exc)}")


def applied_ids(dsn: str) -> list[str]:
    """Ids of the versioned migrations applied to this database."""
    with db.connect(dsn) as conn:
        if not conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %(s)s AND tablename = '_yoyo_migration'", {"s": SCHEMA}
        ).fetchone():
            return []
        rows = conn.execute(
            sql.SQL("SELECT migration_id FROM {}._yoyo_migration ORDER BY applied_at_utc").format(
                sql.Identifier(SCHEMA)
            )
        ).fetchall()
        return [r[0] for r in rows]


def available_ids() -> list[str]:
    return [m.id for m in _migrations()]


def apply_repeatable(conn: psycopg.Connection[Any]) -> None:
    """(Re)create functions, views, triggers and grants, then rebuild the mirror."""
    for path in repeatable_files():
        conn.execute(path.read_text(encoding="utf-8").encode())
    conn.execute("SELECT kivi_otrs.refresh_all()")
    conn.execute("ANALYZE kivi_otrs.customer_user, kivi_otrs.customer_company, kivi_otrs.contact_login, "
                 "kivi_otrs.customer_number, kivi_otrs.contact_link")


def drop_repeatable(conn: psycopg.Connection[Any]) -> None:
    """Remove functions, views and triggers (keeps tables, settings and the ledger)."""
    for statement in _drop_statements():
        conn.execute(statement.encode())


def migrate(dsn: str, options: InstallOptions | None = None) -> list[str]:
    """Apply pending migrations and re-apply ``sql/``; returns the ids applied now."""
    options = options or InstallOptions()
    options.validate()
    with install_lock(dsn) as lock_conn:
        kivitendo.require_supported(lock_conn)  # before anything changes: refuse kivitendo < 4.1 in one line
        try:
            lock_conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            lock_conn.execute(
                sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
                    sql.Identifier(SCHEMA), sql.Literal("kivi-otrs: OTRS customer backend and ticket billing")
                )
            )
            clear_stale_yoyo_lock(lock_conn)
            backend = get_backend(_yoyo_uri(dsn, options))
            try:
                with backend.lock(timeout=30):
                    pending = backend.to_apply(_migrations())
                    backend.apply_migrations(pending)
            finally:
                backend.connection.close()
        except LockTimeout as exc:
            raise _lock_timeout(exc) from None
        except psycopg.Error as exc:
            raise _map_db_error("migrate", exc) from None
        with db.connect(dsn) as conn:
            try:
                with conn.transaction():
                    ensure_flag(conn, options)
                    apply_repeatable(conn)
            except psycopg.Error as exc:
                raise _map_db_error("installing views and triggers", exc) from None
        _rebuild_search_indexes(dsn)
        return [m.id for m in pending]


def install_views(dsn: str) -> None:
    """``kivi-otrs views install``: recreate functions, views, triggers; full refresh."""
    with install_lock(dsn):
        with db.connect(dsn) as conn:
            _require_installed(conn)
            try:
                with conn.transaction():
                    apply_repeatable(conn)
            except psycopg.Error as exc:
                raise _map_db_error("views install", exc) from None
        _rebuild_search_indexes(dsn)


def drop_views(dsn: str) -> None:
    """``kivi-otrs views drop``: remove functions, views and triggers, keep data."""
    with install_lock(dsn):
        with db.connect(dsn) as conn:
            _require_installed(conn)
            try:
                with conn.transaction():
                    drop_repeatable(conn)
            except psycopg.Error as exc:
                raise _map_db_error("views drop", exc) from None


def refresh(dsn: str) -> None:
    """Rebuild the customer backend mirror from kivitendo."""
    with db.connect(dsn) as conn:
        _require_installed(conn)
        try:
            with conn.transaction():
                conn.execute("SELECT kivi_otrs.refresh_all()")
        except psycopg.Error as exc:
            raise _map_db_error("refresh", exc) from None
    _rebuild_search_indexes(dsn, take_lock=True)  # not beside a running reindex or migrate


# What an interrupted REINDEX CONCURRENTLY leaves behind.
LEFTOVER_INDEXES_SQL = """
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relnamespace = 'kivi_otrs'::regnamespace AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
"""
# The mirror's trigram (GIN) indexes, each with its table and partial-index predicate (to size it per indexed row).
SEARCH_INDEXES_SQL = """
SELECT c.relname, i.indrelid::regclass::text, pg_get_expr(i.indpred, i.indrelid), pg_relation_size(c.oid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
WHERE c.relnamespace = 'kivi_otrs'::regnamespace AND am.amname = 'gin' AND i.indisvalid ORDER BY c.relname
"""
SEARCH_INDEX_KEY = "search_index_bytes_per_row:"
INDEX_SIZE_MIN_ROWS = 1000  # below this an index is a few pages and its size says nothing
# Small indexes keep pages of GIN's pending list after cleanup and double in size without being slow.
INDEX_SIZE_MIN_BYTES = 16 * 1024 * 1024
INDEX_PREDICATE = re.compile(r"\(\w+ = \d+\)")
REINDEX_WAIT = "60s"
AFTER_BUILD_WAIT = "10s"  # migrate/refresh do not hang on a long transaction: they say to run reindex later


def reindex(dsn: str, wait: str = REINDEX_WAIT) -> list[str]:
    """Rebuild the mirror's trigram indexes with REINDEX CONCURRENTLY; returns the indexes rebuilt.

    GIN indexes filled row by row (a full rebuild of the mirror, a mass change of the flag, a
    large import) answer searches far slower than freshly built ones (measured at 1M contacts:
    a rare e-mail search 100 ms against 8-11 ms); VACUUM does not repair that, a rebuild does.
    CONCURRENTLY blocks neither kivitendo's writes nor OTRS's searches. It waits for
    transactions older than itself; after ``wait`` it gives up with a one-line error and
    leaves the old index in place.
    """
    with install_lock(dsn):
        return _reindex(dsn, wait)


def _reindex(dsn: str, wait: str) -> list[str]:
    with db.connect(dsn, autocommit=True) as conn:
        _require_installed(conn)
        done: list[str] = []
        name = ""
        try:
            # lock_timeout bounds each wait (REINDEX CONCURRENTLY waits in several phases); a role's
            # statement_timeout would cancel a rebuild that takes a minute at 1M contacts.
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(wait)))
            conn.execute("SET statement_timeout = 0")
            _drop_leftovers(conn)
            for name, *_ in conn.execute(SEARCH_INDEXES_SQL).fetchall():
                conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(SCHEMA, name)))
                done.append(name)
            _record_index_sizes(conn)
        except psycopg.errors.LockNotAvailable:
            _drop_leftovers_quietly(conn)
            raise MigrationError(
                f"reindex of kivi_otrs.{name} gave up after waiting {wait} for older transactions (a long "
                f"transaction or an idle session in a transaction holds it); rebuilt so far: "
                f"{', '.join(done) or 'none'}; run kivi-otrs reindex again later"
            ) from None
        except psycopg.Error as exc:
            _drop_leftovers_quietly(conn)
            what = f"reindex of kivi_otrs.{name}" if name else "reindex"
            raise MigrationError(f"{what} failed: {_first_line(exc)}; the old indexes stay in use; rebuilt so far: "
                                 f"{', '.join(done) or 'none'}") from None
        return done


def search_index_sizes(conn: psycopg.Connection[Any]) -> list[tuple[str, float]]:
    """(index, bytes per indexed row) of the mirror's trigram indexes that cover enough rows to judge."""
    sizes = []
    for name, table, predicate, size in conn.execute(SEARCH_INDEXES_SQL).fetchall():
        if predicate and not INDEX_PREDICATE.fullmatch(predicate):
            continue  # not one of ours (`(cp_valid_id = 1)`): never run catalog text as SQL
        if size < INDEX_SIZE_MIN_BYTES:
            continue
        where = sql.SQL(" WHERE {}").format(sql.SQL(predicate)) if predicate else sql.SQL("")
        rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table)) + where).fetchone()[0]  # type: ignore[index]
        if rows >= INDEX_SIZE_MIN_ROWS:
            sizes.append((name, size / rows))
    return sizes


def _record_index_sizes(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM kivi_otrs.install_state WHERE key LIKE %(k)s", {"k": SEARCH_INDEX_KEY + "%"})
        for name, per_row in search_index_sizes(conn):
            conn.execute("INSERT INTO kivi_otrs.install_state (key, value) VALUES (%(k)s, %(v)s)",
                         {"k": SEARCH_INDEX_KEY + name, "v": f"{per_row:.2f}"})


def _rebuild_search_indexes(dsn: str, take_lock: bool = False) -> None:
    """After a full build of the mirror: fresh trigram indexes, or a note saying how to get them.
    migrate and views install hold the install lock already; refresh takes it here."""
    try:
        if take_lock:
            with install_lock(dsn):
                _reindex(dsn, AFTER_BUILD_WAIT)
        else:
            _reindex(dsn, AFTER_BUILD_WAIT)
    except MigrationError as exc:  # LockedError included
        log.warning("kivi-otrs: the customer backend is complete, but its search indexes were not rebuilt: %s", exc)


def _drop_leftovers_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        _drop_leftovers(conn)
    except psycopg.Error:
        pass  # reporting the first error matters more; the next run drops them first


def _drop_leftovers(conn: psycopg.Connection[Any]) -> None:
    """Drop what an interrupted REINDEX CONCURRENTLY built, each under the session's lock_timeout; one that an
    old transaction still holds stays (doctor names it) for the next reindex, migrate or refresh."""
    for (leftover,) in conn.execute(LEFTOVER_INDEXES_SQL).fetchall():
        try:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(SCHEMA, leftover)))
        except psycopg.errors.LockNotAvailable:
            log.warning("kivi-otrs: the half-built index kivi_otrs.%s is still held by an old transaction; "
                        "the next kivi-otrs reindex drops it", leftover)


def _require_installed(conn: psycopg.Connection[Any]) -> None:
    if not conn.execute("SELECT to_regclass('kivi_otrs.install_state')").fetchone()[0]:  # type: ignore[index]
        raise MigrationError("kivi-otrs is not installed in this database; run kivi-otrs migrate first")


def rollback(dsn: str) -> list[str]:
    """Remove everything kivi-otrs installed; returns the migration ids rolled back."""
    with install_lock(dsn) as lock_conn:
        if not _schema_exists(lock_conn):
            return []
        with db.connect(dsn) as conn:
            try:
                with conn.transaction():
                    drop_repeatable(conn)
            except psycopg.Error as exc:
                raise _map_db_error("rollback (dropping views and triggers)", exc) from None
        try:
            clear_stale_yoyo_lock(lock_conn)
            backend = get_backend(_yoyo_uri(dsn, InstallOptions()))
            try:
                with backend.lock(timeout=30):
                    todo = backend.to_rollback(_migrations())
                    backend.rollback_migrations(todo)
            finally:
                backend.connection.close()
        except LockTimeout as exc:
            raise _lock_timeout(exc) from None
        except psycopg.Error as exc:
            raise _map_db_error("rollback", exc) from None
        with db.connect(dsn) as conn:
            try:
                with conn.transaction():
                    for table in YOYO_TABLES:
                        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                            sql.Identifier(SCHEMA), sql.Identifier(table)))
                    conn.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(SCHEMA)))
            except psycopg.errors.DependentObjectsStillExist:
                raise MigrationError(
                    "schema kivi_otrs still holds objects kivi-otrs did not create; move them elsewhere and run rollback again"
                ) from None
            except psycopg.Error as exc:
                raise _map_db_error("rollback (dropping schema kivi_otrs)", exc) from None
        return [m.id for m in todo]


def break_lock(dsn: str) -> list[int]:
    """Remove a stale yoyo lock row left by a killed process (refused while a migrate/rollback runs)."""
    with install_lock(dsn) as lock_conn:
        return clear_stale_yoyo_lock(lock_conn, announce=False)
