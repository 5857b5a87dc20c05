"""Where a grid search's Optuna study is kept: by default a journal file in the grid's folder, shared by every
worker that names the same folder; or the journal file or database (PostgreSQL, MySQL, SQLite) --storage
names. Both kinds beat while a trial trains, so that a dead worker's trial is found and retried. Any number
of workers may open one storage at the same moment, a fresh one too; a journal whose last write was cut
off is repaired, and one damaged elsewhere is refused in one line."""
import json
import os
import random
import re
import sys
import time
import warnings
from pathlib import Path

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # the interface Optuna's own heartbeat runs on
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from cli import InputError, check_writable_folder
from files import aside_path, atomic_output

JOURNAL = "optuna-journal.log"  # the default storage, in the grid's folder
RECORD_START = b'{"op_code":'    # how every line of Optuna's journal begins (JournalStorage._write_log)
ATTEMPTS = 10                   # tries at a fresh database's schema before the error counts
# A database's driver module -> the package that installs it (SQLAlchemy 2.1 picks psycopg for postgresql://).
DRIVERS = {"psycopg": '"psycopg[binary]"', "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
           "pymysql": "PyMySQL", "mysql": "mysql-connector-python"}


# ------------------------------------------------------------------------------------------------
# The journal file: torn tails repaired under Optuna's own lock
# ------------------------------------------------------------------------------------------------

def last_line_start(f, size, block=1 << 16):
    """The offset at which the last line of the open binary file `f` (of `size` bytes) begins."""
    end = size - 1  # a newline ending the file ends the last line; it does not start one
    while end > 0:
        start = max(0, end - block)
        f.seek(start)
        newline = f.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def is_record(line):
    """A complete journal record: one JSON object with an op_code."""
    try:
        return "op_code" in json.loads(line)
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return False


def repair_torn_tail(path):
    """Set aside the journal's last line where a write was cut off (a crash, a full disk), before anything is
    appended after it: Optuna skips a torn last line, but a record appended to it makes one damaged line in
    the middle, which no worker can read past. A last record whose newline alone is missing gets its newline.
    Call with the journal's lock held. Returns the one-line warning, or None."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        start = last_line_start(f, size)
        f.seek(start)
        last = f.read()
    if last.endswith(b"\n") and is_record(last):
        return None
    if is_record(last):
        with open(path, "ab") as f:
            f.write(b"\n")
            os.fsync(f.fileno())
        return f"{path}: its last record lacked its newline (a write cut off at its end); added"
    aside = aside_path(path, "torn")
    with atomic_output(aside) as tmp:
        tmp.write_bytes(last)
    os.truncate(path, start)
    return (f"{path}: its last line was cut off ({len(last)} bytes, a write that never finished); set aside into "
            f"{aside.name}, the records before it kept")


class RepairingJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, whose torn last line is set aside under the journal's lock before each append:
    a worker still running when another's write was cut off then repairs it too."""

    def __init__(self, path):
        self.path, self.lock = Path(path), JournalFileSymlinkLock(str(path))  # Optuna's default lock, kept at hand
        super().__init__(str(path), self.lock)

    def locked(self, action):
        self.lock.acquire()
        try:
            return action()
        finally:
            self.lock.release()

    def repair(self):
        warning = repair_torn_tail(self.path)
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

    def append_logs(self, logs):
        def append():  # as JournalFileBackend.append_logs, after the repair
            self.repair()
            with open(self.path, "ab") as f:
                f.write(("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode())
                f.flush()
                os.fsync(f.fileno())
        self.locked(append)


def check_first_line(path):
    """Refuse a file that is not a journal before repairing or appending to it; its only line, cut off while
    a journal's first record was written, is a journal's."""
    with open(path, "rb") as f:
        first = f.readline()
    if first and not is_record(first) and not (first.startswith(RECORD_START) and not first.endswith(b"\n")):
        json.loads(first)  # the reason, as the error's message
        raise ValueError("no op_code")


def first_damaged_line(path):
    """The number of the first line of a journal that is no complete record, or None."""
    with open(path, "rb") as f:
        return next((n for n, line in enumerate(f, 1) if not (line.endswith(b"\n") and is_record(line))), None)



class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal file with heartbeats. Optuna 5.1's JournalStorage has none (only RDBStorage does), and
    the default storage is a journal file because it is the one Optuna makes for shared filesystems
    (SQLite's locks are unreliable over NFS, and SQLite has no row lock, so two workers could pop one
    queued trial). This implements Optuna's own heartbeat interface, so Study.optimize beats while a
    trial runs and optuna.storages.fail_stale_trials fails the silent ones, as with a database. A beat
    is the trial's system attribute "heartbeat" (the wall clock: machines sharing a file need their
    clocks set, as NTP does)."""

    def __init__(self, backend, heartbeat):
        super().__init__(backend)
        self.heartbeat_interval, self.grace_period = heartbeat, (3 * heartbeat if heartbeat else None)

    def record_heartbeat(self, trial_id):
        try:
            self.set_trial_system_attr(trial_id, "heartbeat", time.time())
        except UpdateFinishedTrialError:
            pass  # taken for dead and taken over: the training notices at its next epoch (run_trial)

    def _get_stale_trial_ids(self, study_id):
        now = time.time()
        # A popped retry carries its predecessor's old beat: it is alive from its own start on.
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [t._trial_id for t in running if now - max(t.system_attrs.get("heartbeat", 0),
                                                          t.datetime_start.timestamp() if t.datetime_start else 0)
                > self.grace_period]

    def get_heartbeat_interval(self):
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return None  # retries are queued by requeue(), see there


def is_url(spec):
    return re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", spec) is not None


def shown(spec):
    """A storage as it may be printed and recorded: a URL without its password."""
    if spec is None or not is_url(spec):
        return spec
    try:
        from sqlalchemy.engine import make_url  # installed with optuna
        return make_url(spec).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", spec)


def serialize_sqlite(engine):
    """pysqlite begins a transaction only at the first write, after the reads, and SQLite has no row lock
    (Optuna's SELECT ... FOR UPDATE): two workers could both pop one queued trial. Every transaction takes
    the write lock first instead (SQLAlchemy's recipe for pysqlite transactions)."""
    import sqlalchemy  # installed with optuna
    sqlalchemy.event.listen(engine, "connect", lambda connection, _: setattr(connection, "isolation_level", None))
    sqlalchemy.event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections opened before the recipe


def creation_race(error):
    """The error of a worker that lost a race to create a fresh database's tables, its schema stamp or its
    study (PostgreSQL: UniqueViolation on "pg_type_typname_nsp_index", DuplicateTable; MySQL and SQLite:
    "already exists"): tried again, it finds them made."""
    import sqlalchemy.exc  # installed with optuna
    for e in (error, error.__cause__):  # Optuna wraps some database errors in StorageInternalError
        text = str(e).lower()
        if isinstance(e, sqlalchemy.exc.IntegrityError) or (isinstance(e, sqlalchemy.exc.DBAPIError) and any(
                words in text for words in ("already exists", "deadlock detected", "database is locked"))):
            return True
    return False


def jittered_delays(attempts, first=0.05, cap=2.0, rng=random):
    """Seconds to wait between tries: exponential back-off with full jitter, so that workers which
    collided once do not collide again in step."""
    return [rng.uniform(0, min(cap, first * 2 ** k)) for k in range(attempts - 1)]


def retried(make, is_race, delays, sleep=time.sleep):
    """make(), tried again after each delay while it fails with an error is_race says is a race."""
    for delay in delays:
        try:
            return make()
        except Exception as e:
            if not is_race(e):
                raise
        sleep(delay)
    return make()


def missing_driver(error):
    """The module a database URL needs and cannot import, or None."""
    for e in (error, error.__cause__):
        if isinstance(e, ImportError) and getattr(e, "name", None):
            return e.name.split(".")[0]
    return None


def open_database(spec, heartbeat):
    """Optuna's RDBStorage of a URL, its tables made if the database is fresh (workers that race to make
    them try again); InputError, one line, if it cannot be opened."""
    sqlite = spec.startswith("sqlite")

    def make():
        with warnings.catch_warnings():  # the filter above again, for callers that reset it (pytest)
            warnings.simplefilter("ignore", ExperimentalWarning)
            storage = RDBStorage(spec, heartbeat_interval=heartbeat, grace_period=3 * heartbeat if heartbeat else None,
                                 engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None)
        if sqlite:
            serialize_sqlite(storage.engine)
        return storage
    try:
        return retried(make, creation_race, jittered_delays(ATTEMPTS))
    except Exception as e:  # an unknown scheme, a missing driver, a refused connection, a bad database
        driver = missing_driver(e)
        if driver:
            raise InputError(f"--storage {shown(spec)}: its database driver {driver} is not installed "
                             f"(pip install {DRIVERS.get(driver, driver)})") from None
        message = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise InputError(f"--storage {shown(spec)}: cannot open the database ({type(e).__name__}: "
                         f"{message})") from None


def open_journal(path, heartbeat, name):
    """The journal file at `path` (made if missing): refused unless it is a journal, its torn tail set aside,
    then read; InputError, one line, if it is damaged elsewhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = RepairingJournalFileBackend(path)
    backend.locked(lambda: (check_first_line(path), backend.repair()))  # a writer's record is never half-read
    try:
        return HeartbeatJournalStorage(backend, heartbeat)
    except (ValueError, KeyError, TypeError) as e:  # Optuna's replay met a line it cannot read
        line = first_damaged_line(path)
        raise InputError(f"{name} {path}: damaged" + (f" at line {line}" if line else "") + f" ({type(e).__name__}: "
                         f"{str(e)[:80]}), no worker can read the study past it; the run folders keep each finished "
                         "configuration's results: grid_search.py --summarize ranks them") from None


def open_storage(spec, out, heartbeat=None, must_exist=False):
    """The Optuna storage `spec` names (InputError, one line, if it cannot be opened): None -> the journal
    file OUT/optuna-journal.log; a URL -> a database (RDBStorage: postgresql://, mysql://, sqlite:///);
    anything else -> a journal file at that path. heartbeat: seconds between beats of a training worker
    (None: no beats, to read)."""
    spec = None if spec is None else str(spec)
    name = "--storage" if spec is not None else "--out"
    if spec is not None and is_url(spec):
        return open_database(spec, heartbeat)
    path = Path(spec) if spec is not None else Path(out) / JOURNAL
    if must_exist and not path.is_file():
        raise InputError(f"{path}: no grid study there")
    if path.is_dir():
        raise InputError(f"{name} {path}: is a folder, not a journal file")
    if spec is None:
        check_writable_folder(path.parent, name)
    try:
        return open_journal(path, heartbeat, name)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{name} {path}: its folder cannot be made (a file is in the way)") from None
    except OSError as e:
        raise InputError(f"{name} {path}: cannot open the journal file there "
                         f"({e.strerror or type(e).__name__})") from None
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{name} {path}: not an Optuna journal file ({type(e).__name__}: {str(e)[:120]})") from None
