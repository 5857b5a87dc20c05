"""Where things are kept and how they are written: the data, run and cache folders, files written to a
temporary name and renamed into place, files set aside instead of deleted, and SHA-256 of a file read in
blocks."""
import hashlib
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA_DIR = Path(os.environ.get("GALAXY_VAE_DATA", HERE / "data"))
RUNS_DIR = HERE / "runs"


def default_cache_dir():
    """Where prepared arrays, FID statistics and the judge are cached: DATA_DIR/cache (read at call time,
    so GALAXY_VAE_DATA or a patched DATA_DIR moves every cache at once)."""
    return DATA_DIR / "cache"


def sha256_of(path):
    """Hex SHA-256 of a file, read 1 MiB at a time (the 2.5 GB Galaxy10 file never sits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_link(source, target):
    """Make `target` a second name of `source`'s file (a hard link; a copy where the filesystem has none),
    swapped in atomically by atomic_output. Safe beside it: atomic_output replaces a name with a new file,
    never writes into the old one, so the other name keeps what it had."""
    with atomic_output(target) as tmp:
        tmp.unlink()  # os.link makes the name itself
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def new_file_mode():
    """The mode open() gives a new file: 0666 less the process's umask (read by setting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds, so a
    crash or kill never leaves a half-written file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would hide results from the rest of a shared group
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def aside_path(path, kind):
    """A free name beside `path` for what is set aside from it: <name>.<kind>-<UTC time>, a number added
    where that is taken."""
    path = Path(path)
    stem = f"{path.name}.{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    target, n = path.with_name(stem), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{stem}-{n}")
    return target


def set_aside(path, problem, then=""):
    """Rename a damaged file, or a folder of something else, out of the way instead of deleting or
    overwriting it: to aside_path's <name>.<"damaged" or "other">-<UTC time> beside it, with one line on
    stderr saying what and why, and `then`, what happens instead. Returns the new path. Whatever the user
    made stays theirs to inspect or remove."""
    path = Path(path)
    target = aside_path(path, "other" if path.is_dir() else "damaged")
    os.rename(path, target)
    print(f"warning: {path}: {problem}; moved aside to {target.name}{then}", file=sys.stderr)
    return target
