"""Where galaxies come from: the Galaxy10 DECals file, its downloader, an embedded procedural set,
or a folder of your own images — all reduced to balanced, split, 64x64 float tensors."""
import argparse
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import files
import procedural
from classes import CLASS_NAMES, DEFAULT_CLASSES, class_from_name
from cli import InputError, Parser, exit_on_input_error
from files import atomic_output, default_cache_dir, set_aside, sha256_of
from images import IMAGE_SUFFIXES

GALAXY10_URL = "https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5"
GALAXY10_SHA256 = "19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571"
GALAXY10_FILE = "Galaxy10_DECals.h5"
IMAGE_SIZE = 64
EMBEDDED_PER_CLASS = 1829   # the balanced per-class count of the real file for classes 2, 6, 9
READ_CHUNK = 256            # rows per HDF5 read: ~50 MB of 256x256x3 uint8, keeps RAM far below 2 GB
CACHE_FORMAT = 1            # bump when the prepared-array layout changes


@dataclass
class GalaxySplits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple
    source: str
    embedded: bool
    key: str

    @cached_property
    def fingerprint(self):
        """A digest of the splits' images and labels: what a checkpoint is compared by. `key` names the
        prepared-array cache and changes with a file's mtime (a folder copied again); this changes only
        when a split holds other galaxies."""
        digest = hashlib.sha256()
        for name in ("train", "val", "test"):
            for array in self.split(name):
                digest.update(array.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def split(self, name):
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, not {name!r}")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")


# ---------------------------------------------------------------- pure helpers

@contextmanager
def _about(source):
    """Prefix the InputErrors of the pure helpers below with the source they concern."""
    try:
        yield
    except InputError as e:
        raise InputError(f"{source}: {e}") from None


def block_mean(images, factor):
    """uint8 N x H x W x 3 -> float32 N x 3 x H/f x W/f in [0, 1]: the exact mean of each f x f block
    (integer sums, one division), so the 64 px pixels are the 256 px pixels merged, not interpolated."""
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c)
    sums = blocks.sum(axis=(2, 4), dtype=np.uint32)
    return np.ascontiguousarray((sums / (255.0 * factor * factor)).astype(np.float32).transpose(0, 3, 1, 2))


def balanced_indices(labels, classes, max_per_class, seed):
    """Sorted indices taking the same number of items of each class: a seeded random subset of the
    larger classes, capped at max_per_class."""
    labels = np.asarray(labels)
    counts = {c: int((labels == c).sum()) for c in classes}
    for c, n in counts.items():
        if n == 0:
            raise InputError(f"class {c} ({CLASS_NAMES.get(c, '?')}) has no images")
    n = min(counts.values()) if max_per_class is None else min(min(counts.values()), max_per_class)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c in sorted(classes)]
    return np.sort(np.concatenate(picked))


def stratified_split(labels, fractions, seed):
    """(train, val, test) index arrays with each class split in the same proportions; at least one
    item of every class lands in every split, so every split can be measured per class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = (max(1, int(round(len(idx) * f))) for f in fractions[1:])
        if len(idx) - n_val - n_test < 1:
            raise InputError(f"too few images to split: class {c} ({CLASS_NAMES.get(int(c), '?')}) has "
                             f"{len(idx)}, need at least {n_val + n_test + 1} (one per split)")
        for part, chosen in zip(parts, np.split(idx, [len(idx) - n_val - n_test, len(idx) - n_test])):
            part.append(chosen)
    return tuple(np.sort(np.concatenate(p)) for p in parts)


# ---------------------------------------------------------------- Galaxy10 DECals file

def _open_galaxy10(path):
    """Open and validate a Galaxy10-format HDF5 file; returns (h5 file, images dataset, labels)."""
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise InputError(f"{path}: not an HDF5 file (or unreadable)") from None
    try:
        for name in ("images", "ans"):
            if not isinstance(f.get(name), h5py.Dataset):
                raise InputError(f"{path}: HDF5 file has no '{name}' dataset (not Galaxy10 format)")
        images, ans = f["images"], f["ans"]
        n, h, w, c = images.shape if images.ndim == 4 else (0, 0, 0, 0)
        if images.ndim != 4 or c != 3 or h != w or h % IMAGE_SIZE or h == 0:
            raise InputError(f"{path}: 'images' has shape {images.shape}, expected N x S x S x 3 "
                             f"with S a multiple of {IMAGE_SIZE}")
        if images.dtype != np.uint8:
            raise InputError(f"{path}: 'images' has dtype {images.dtype}, expected uint8")
        if ans.shape != (n,) or ans.dtype.kind not in "iu":
            raise InputError(f"{path}: 'ans' has shape {ans.shape} and dtype {ans.dtype}, "
                             f"expected ({n},) integer class ids")
        return f, images, ans[()].astype(np.int64)
    except BaseException:
        f.close()
        raise


def read_galaxy10(path, classes=DEFAULT_CLASSES, max_per_class=None, seed=0, progress=True):
    """Balanced 64x64 float32 images (N x 3 x 64 x 64) and their class ids from a Galaxy10 file,
    read a few hundred selected rows at a time so the 2.5 GB file never sits in memory."""
    f, images, ans = _open_galaxy10(path)
    with f:
        with _about(path):
            chosen = balanced_indices(ans, classes, max_per_class, seed)
        factor = images.shape[1] // IMAGE_SIZE
        x = np.empty((len(chosen), 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        with tqdm(total=len(chosen), desc="reading Galaxy10", unit="img", disable=not progress) as bar:
            for start in range(0, len(chosen), READ_CHUNK):
                rows = chosen[start:start + READ_CHUNK]   # sorted, as h5py fancy indexing requires
                x[start:start + len(rows)] = block_mean(images[rows], factor)
                bar.update(len(rows))
    return x, ans[chosen]


# ---------------------------------------------------------------- your own images

def read_image_folder(path, classes=DEFAULT_CLASSES):
    """All PNG/JPEG images under path/<class>/ as 64x64 float32 (area-averaged), with class ids."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    subdirs = [d for d in sorted(path.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if not subdirs:
        raise InputError(f"{path}: no class subfolders (expected e.g. {path}/2 or {path}/round_smooth)")
    files = {c: [] for c in classes}
    for d in subdirs:
        c = class_from_name(d.name)
        if c is None:
            raise InputError(f"{d}: folder name is neither a Galaxy10 class id (0-9) nor a class name")
        if c in files:
            files[c] += sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for c, paths in files.items():
        if not paths:
            raise InputError(f"{path}: no PNG/JPEG images for class {c} ({CLASS_NAMES[c]})")
    xs, ys = [], []
    for c, paths in files.items():
        for p in paths:
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
            except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
                raise InputError(f"{p}: unreadable or corrupt image") from None
            xs.append(np.asarray(im, np.uint8))
            ys.append(c)
    x = np.ascontiguousarray((np.stack(xs) / np.float32(255)).astype(np.float32).transpose(0, 3, 1, 2))
    return x, np.array(ys, np.int64)


# ---------------------------------------------------------------- one entry point, cached

def _check_embedded_classes(classes):
    unknown = sorted(set(classes) - set(procedural.GALAXY_MAKERS))
    if unknown:
        raise InputError(f"embedded set: no class {unknown[0]} ({CLASS_NAMES.get(unknown[0], '?')}); "
                         f"it has only classes {', '.join(map(str, procedural.GALAXY_MAKERS))}")


def _source_identity(kind, path):
    """What the prepared arrays depend on besides the options: the file's (or folder's files')
    resolved path, size and mtime; for the embedded set, the renderer's source with its parameters."""
    if kind == "embedded":
        return sha256_of(procedural.__file__)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if kind == "folder" else [path]
    return [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def _render_prepared(classes, max_per_class, seed, progress):
    n = EMBEDDED_PER_CLASS if max_per_class is None else min(max_per_class, EMBEDDED_PER_CLASS)
    xs, ys = zip(*((block_mean(images, procedural.RENDER_SIZE // IMAGE_SIZE), labels)
                   for images, labels in procedural.render_embedded(classes, n, seed, progress)))
    return np.concatenate(xs), np.concatenate(ys)


def _check_options(classes, max_per_class, fractions):
    if not classes or len(set(classes)) != len(classes) or any(c not in CLASS_NAMES for c in classes):
        raise InputError(f"classes {tuple(classes)}: need distinct Galaxy10 class ids from 0 to 9")
    if max_per_class is not None and (int(max_per_class) != max_per_class or max_per_class < 1):
        raise InputError(f"max_per_class {max_per_class}: need a positive integer or None")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise InputError(f"fractions {tuple(fractions)}: need three positive train/val/test fractions summing to 1")


def _check_splittable(kind, path, name, classes, max_per_class, seed, fractions):
    """Fail on too few images before the slow reading or rendering starts (and before its progress
    bar), using only the labels."""
    if kind == "galaxy10":
        f, _, labels = _open_galaxy10(path)
        f.close()
    elif kind == "embedded":
        n = EMBEDDED_PER_CLASS if max_per_class is None else min(max_per_class, EMBEDDED_PER_CLASS)
        labels = np.repeat(classes, n)
    else:
        return   # an image folder is read without a progress bar; its split is checked after reading
    with _about(name):
        stratified_split(labels[balanced_indices(labels, classes, max_per_class, seed)], fractions, seed)


def load_galaxies(source=None, classes=DEFAULT_CLASSES, max_per_class=None, seed=0,
                  fractions=(0.8, 0.1, 0.1), cache_dir=None, progress=True):
    """Balanced, stratified train/val/test splits of 64x64 galaxies from source: None (the Galaxy10
    file in DATA_DIR if present, else the embedded set), "embedded", a Galaxy10 .h5 path or an
    image folder. The prepared arrays are cached, so only the first call per source and options is slow."""
    classes = tuple(sorted(int(c) for c in classes))
    fractions = tuple(float(f) for f in fractions)
    _check_options(classes, max_per_class, fractions)
    if source is None:
        default = files.DATA_DIR / GALAXY10_FILE
        source = verified(default, GALAXY10_SHA256) if default.is_file() else "embedded"
    if str(source) == "embedded":
        kind, path, name = "embedded", None, "embedded procedural set"
        _check_embedded_classes(classes)
        if progress:
            print(f"data: using the embedded procedural set, not the real Galaxy10 DECals; to use the real "
                  f"file, run `python data.py --download` (saves {files.DATA_DIR / GALAXY10_FILE})", file=sys.stderr)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        kind, name = ("folder" if path.is_dir() else "galaxy10"), str(path)
    options = dict(kind=kind, source=_source_identity(kind, path), classes=classes,
                   max_per_class=max_per_class, seed=seed, fractions=fractions, format=CACHE_FORMAT)
    key = hashlib.sha256(json.dumps(options).encode()).hexdigest()[:16]
    cache = Path(cache_dir or default_cache_dir()) / f"galaxies-{key}.npz"

    arrays = None
    if cache.is_file():
        try:
            with np.load(cache) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:   # a damaged cache is kept aside and rebuilt, not an error
            set_aside(cache, f"unreadable prepared galaxies ({type(e).__name__})", "; preparing them again")
    if arrays is None:
        _check_splittable(kind, path, name, classes, max_per_class, seed, fractions)
        if kind == "embedded":
            x, y = _render_prepared(classes, max_per_class, seed, progress)
        elif kind == "galaxy10":
            x, y = read_galaxy10(path, classes, max_per_class, seed, progress)
        else:
            x, y = read_image_folder(path, classes)
            with _about(path):
                keep = balanced_indices(y, classes, max_per_class, seed)
            x, y = x[keep], y[keep]
        with _about(name):
            parts = stratified_split(y, fractions, seed)
        arrays = {f"{split}_{xy}": array[idx] for split, idx in zip(("train", "val", "test"), parts)
                  for xy, array in (("x", x), ("y", y))}
        with atomic_output(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    tensors = {k: torch.from_numpy(v.astype(np.int64) if k.endswith("_y") else v) for k, v in arrays.items()}
    return GalaxySplits(**tensors, classes=classes, source=name, embedded=kind == "embedded", key=key)


# ---------------------------------------------------------------- download

def checkpoint_galaxies(checkpoint, progress=True):
    """The very splits a model was trained on, reloaded from the config saved in its checkpoint."""
    config = checkpoint["config"]
    galaxies = load_galaxies(config.get("data"), config.get("classes", DEFAULT_CLASSES), config.get("max_per_class"),
                             seed=config.get("seed", 0), progress=progress)
    saved = checkpoint.get("data", {})
    # With data=None the source depends on what data/ holds now, and a changed renderer draws other
    # images: then the "test split" is not the one the model was selected on. Say so, but go on. A
    # checkpoint saved before fingerprints is compared by its cache key, which a re-copied folder changes.
    if (saved["fingerprint"] != galaxies.fingerprint if saved.get("fingerprint")
            else saved.get("key") and saved["key"] != galaxies.key):
        print(f"warning: the checkpoint was trained on {saved.get('source')} (data key {saved['key']}); its "
              f"data now loads as {galaxies.source} (key {galaxies.key}): another test split", file=sys.stderr)
    return galaxies


def _hash_stamp(path):
    return path.with_name(f".{path.name}.sha256.json")


def _remember_hash(path, sha256):
    stat = path.stat()
    with atomic_output(_hash_stamp(path)) as tmp:
        tmp.write_text(json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}))


def verified(path, sha256):
    """path, once its SHA-256 is known to be sha256: hashed the first time it is trusted (about a minute
    for the 2.5 GB file), then remembered by size and mtime in a sidecar .<name>.sha256.json, so only a
    changed file is hashed again. A mismatch is InputError."""
    path = Path(path)
    stat, stamp = path.stat(), _hash_stamp(path)
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}:
                return path
        except (OSError, ValueError) as e:  # damaged (a stamp of another size or date is simply redone below)
            set_aside(stamp, f"unreadable hash stamp ({type(e).__name__})", "; hashing the file again")
    actual = sha256_of(path)
    if actual != sha256:
        raise InputError(f"{path}: SHA-256 mismatch (got {actual[:12]}..., expected {sha256[:12]}...): damaged or "
                         f"another file; remove it and run `python data.py --download`")
    _remember_hash(path, sha256)
    return path


def _received_blocks(response):
    """The body of an HTTP response in 1 MiB blocks; a broken connection (a reset, a timeout, a short
    body) just ends them, and the caller reports the byte count as an interruption to resume."""
    try:
        yield from iter(lambda: response.read(1 << 20), b"")
    except (OSError, http.client.HTTPException):
        return


def download(url=GALAXY10_URL, dest_dir=None, sha256=GALAXY10_SHA256, progress=True):
    """Fetch url into dest_dir, resuming a partial <name>.part with an HTTP Range request; the file
    gets its real name only once its SHA-256 matches. An existing file is hash-checked once before it is
    trusted (see verified). Returns the final path."""
    dest = Path(dest_dir or files.DATA_DIR) / Path(urllib.parse.urlparse(url).path).name
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        return verified(dest, sha256)
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code != 416:   # 416: nothing left to fetch, the partial file is complete
            raise InputError(f"{url}: server answered HTTP {e.code} {e.reason}") from None
        response = None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise InputError(f"cannot reach {url} ({reason}): offline? download it elsewhere and put it at "
                         f"{dest}") from None
    if response is not None:
        with response:
            if response.status != 206:   # the server ignored Range: start over
                offset = 0
            total = response.length + offset if response.length is not None else None
            try:
                with open(part, "ab" if offset else "wb") as f, \
                        tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                             disable=not progress) as bar:
                    for block in _received_blocks(response):
                        f.write(block)
                        bar.update(len(block))
            except OSError as e:   # the network's errors end _received_blocks: this one is the local file's
                kept = part.stat().st_size if part.is_file() else 0
                raise InputError(f"{part}: cannot write the download ({e.strerror or e}); {kept} bytes kept: "
                                 "make room or fix the folder, then run again to resume") from None
        got = part.stat().st_size
        if total is not None and got < total:
            raise InputError(f"{url}: transfer interrupted at {got} of {total} bytes; run again to resume "
                             f"from {part}")
    actual = sha256_of(part)
    if actual != sha256 and response is not None and total is None:
        # Without a Content-Length a cut-off transfer looks like a finished one: keep the bytes and let
        # the next run ask for the rest (a complete file gets HTTP 416 there, and then its verdict).
        raise InputError(f"{url}: transfer ended at {part.stat().st_size} bytes and the server sent no length; "
                         f"run again to resume from {part}")
    if actual != sha256:
        part.unlink()
        raise InputError(f"{url}: SHA-256 mismatch (got {actual[:12]}..., expected {sha256[:12]}...); "
                         f"removed {part}")
    os.replace(part, dest)
    _remember_hash(dest, sha256)
    return dest


# ---------------------------------------------------------------- command line

@exit_on_input_error
def main(argv=None):
    parser = Parser(description=__doc__)
    parser.add_argument("source", nargs="?", default=None,
                        help="Galaxy10 .h5, image folder or 'embedded' (default: DATA_DIR file if present)")
    parser.add_argument("--download", nargs="?", const=str(files.DATA_DIR), metavar="DIR",
                        help=f"fetch Galaxy10_DECals.h5 (2.5 GB) into DIR (default {files.DATA_DIR})")
    parser.add_argument("--info", action="store_true", help="print the source and per-class/per-split counts "
                        "(the default action)")
    for moved in ("--preview", "--compare"):  # realism.py's now: say where they went
        parser.add_argument(moved, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.compare or args.preview:
        action = f"--compare {args.compare}" if args.compare else f"--preview {args.preview}"
        raise InputError(f"{action}: moved to realism.py, run `python realism.py {action}`")
    if args.download:
        print(f"Galaxy10 DECals is ready: {download(dest_dir=args.download)}")
        return
    galaxies = load_galaxies(args.source, args.classes, args.max_per_class, args.seed)
    print(f"source: {galaxies.source}  key: {galaxies.key}  embedded: {galaxies.embedded}")
    print(f"{'class':<28}{'train':>7}{'val':>7}{'test':>7}")
    for c in galaxies.classes:
        counts = [int((galaxies.split(s)[1] == c).sum()) for s in ("train", "val", "test")]
        print(f"{f'{c} {CLASS_NAMES[c]}':<28}" + "".join(f"{n:>7}" for n in counts))
    print(f"{'total':<28}" + "".join(f"{len(galaxies.split(s)[1]):>7}" for s in ("train", "val", "test")))


if __name__ == "__main__":
    main()
