"""Where a grid search's Optuna study is kept: by default a journal file in the grid's folder, shared by every
worker that names the same folder; or the journal file or database (PostgreSQL, MySQL, SQLite) --storage
names. Both kinds beat while a trial trains, so that a dead worker's trial is found and retried."""
import json
import re
import time
import warnings
from pathlib import Path

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat  # the interface Optuna's own heartbeat runs on
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from cli import InputError, check_writable_folder

JOURNAL = "optuna-journal.log"  # the default storage, in the grid's folder



class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal file with heartbeats. Optuna 5.1's JournalStorage has none (only RDBStorage does), and
    the default storage is a journal file because it is the one Optuna makes for shared filesystems
    (SQLite's locks are unreliable over NFS, and SQLite has no row lock, so two workers could pop one
    queued trial). This implements Optuna's own heartbeat interface, so Study.optimize beats while a
    trial runs and optuna.storages.fail_stale_trials fails the silent ones, as with a database. A beat
    is the trial's system attribute "heartbeat" (the wall clock: machines sharing a file need their
    clocks set, as NTP does)."""

    def __init__(self, path, heartbeat):
        super().__init__(JournalFileBackend(str(path)))
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


def open_storage(spec, out, heartbeat=None, must_exist=False):
    """The Optuna storage `spec` names (InputError, one line, if it cannot be opened): None -> the journal
    file OUT/optuna-journal.log; a URL -> a database (RDBStorage: postgresql://, mysql://, sqlite:///);
    anything else -> a journal file at that path. heartbeat: seconds between beats of a training worker
    (None: no beats, to read)."""
    spec = None if spec is None else str(spec)
    name = "--storage" if spec is not None else "--out"
    if spec is not None and is_url(spec):
        try:
            sqlite = spec.startswith("sqlite")
            with warnings.catch_warnings():  # the filter above again, for callers that reset it (pytest)
                warnings.simplefilter("ignore", ExperimentalWarning)
                storage = RDBStorage(spec, heartbeat_interval=heartbeat,
                                     grace_period=3 * heartbeat if heartbeat else None,
                                     engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None)
            if sqlite:
                serialize_sqlite(storage.engine)
            return storage
        except Exception as e:  # an unknown scheme, a missing driver, a refused connection, a bad database
            message = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            raise InputError(f"--storage {shown(spec)}: cannot open the database ({type(e).__name__}: "
                             f"{message})") from None
    path = Path(spec) if spec is not None else Path(out) / JOURNAL
    if must_exist and not path.is_file():
        raise InputError(f"{path}: no grid study there")
    if path.is_dir():
        raise InputError(f"{name} {path}: is a folder, not a journal file")
    if spec is None:
        check_writable_folder(path.parent, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        first = b""
        if path.exists():  # Optuna reads a file of one bad line as an empty journal, then fails at the next write
            with open(path, "rb") as f:
                first = f.readline()
        if first and "op_code" not in json.loads(first):
            raise ValueError("no op_code")
        return HeartbeatJournalStorage(path, heartbeat)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"{name} {path}: its folder cannot be made (a file is in the way)") from None
    except OSError as e:
        raise InputError(f"{name} {path}: cannot open the journal file there "
                         f"({e.strerror or type(e).__name__})") from None
    except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{name} {path}: not an Optuna journal file ({type(e).__name__}: {str(e)[:120]})") from None
