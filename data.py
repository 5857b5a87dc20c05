"""Where galaxies come from: the Galaxy10 DECals file, its downloader, an embedded procedural set,
or a folder of your own images — all reduced to balanced, split, 64x64 float tensors."""
import argparse
import functools
import hashlib
import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import procedural

DATA_DIR = Path(os.environ.get("GALAXY_VAE_DATA", Path(__file__).resolve().parent / "data"))


class InputError(Exception):
    """Bad input from the user: reported as one line naming the file or value, exit code 2."""


class Parser(argparse.ArgumentParser):
    """Every script's argument parser: a bad argument (`--latent x`) is bad input like any other, so it
    raises InputError and ends, through exit_on_input_error, in one line and exit code 2."""

    def error(self, message):
        raise InputError(message)


def exit_on_input_error(main):
    """Wrap a script's main() so that bad input ends in one clear line and exit code 2, no traceback."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as e:
            print(f"{Path(sys.argv[0]).name}: error: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapper


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


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds, so a
    crash or kill never leaves a half-written file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


CLASS_NAMES = {0: "Disturbed", 1: "Merging", 2: "Round Smooth", 3: "In-between Round Smooth",
               4: "Cigar Round Smooth", 5: "Barred Spiral", 6: "Unbarred Tight Spiral",
               7: "Unbarred Loose Spiral", 8: "Edge-on without Bulge", 9: "Edge-on with Bulge"}
DEFAULT_CLASSES = (2, 6, 9)
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

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}   # what image folders may hold (here and in fid.py)


def _norm(name):
    return name.lower().replace("_", " ").replace("-", " ").strip()


def class_from_name(name):
    """Galaxy10 id from a folder name: '6', 'Unbarred Tight Spiral' or 'unbarred_tight_spiral'."""
    if name.strip().isdigit() and int(name) in CLASS_NAMES:
        return int(name)
    return {_norm(v): k for k, v in CLASS_NAMES.items()}.get(_norm(name))


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
        default = DATA_DIR / GALAXY10_FILE
        source = verified(default, GALAXY10_SHA256) if default.is_file() else "embedded"
    if str(source) == "embedded":
        kind, path, name = "embedded", None, "embedded procedural set"
        _check_embedded_classes(classes)
        if progress:
            print(f"data: using the embedded procedural set, not the real Galaxy10 DECals; to use the real "
                  f"file, run `python data.py --download` (saves {DATA_DIR / GALAXY10_FILE})", file=sys.stderr)
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
        except (OSError, ValueError, EOFError):   # a damaged cache is rebuilt, not an error
            pass
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
    # images: then the "test split" is not the one the model was selected on. Say so, but go on.
    if saved.get("key") and saved["key"] != galaxies.key:
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
    stat = path.stat()
    try:
        if json.loads(_hash_stamp(path).read_text()) == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                                                          "sha256": sha256}:
            return path
    except (OSError, ValueError):
        pass
    actual = sha256_of(path)
    if actual != sha256:
        raise InputError(f"{path}: SHA-256 mismatch (got {actual[:12]}..., expected {sha256[:12]}...): damaged or "
                         f"another file; remove it and run `python data.py --download`")
    _remember_hash(path, sha256)
    return path


def download(url=GALAXY10_URL, dest_dir=DATA_DIR, sha256=GALAXY10_SHA256, progress=True):
    """Fetch url into dest_dir, resuming a partial <name>.part with an HTTP Range request; the file
    gets its real name only once its SHA-256 matches. An existing file is hash-checked once before it is
    trusted (see verified). Returns the final path."""
    dest = Path(dest_dir) / Path(urllib.parse.urlparse(url).path).name
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
            with open(part, "ab" if offset else "wb") as f, \
                    tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name,
                         disable=not progress) as bar:
                try:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        f.write(block)
                        bar.update(len(block))
                except (OSError, http.client.HTTPException):
                    pass   # reported below with the byte count
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


# ---------------------------------------------------------------- the embedded set against real galaxies

COMPARE_DRAWS = 10   # embedded draws averaged by --compare
COMPARE_MIN_PER_CLASS = 10   # fewer, and an FID (and its half-against-half floor) says nothing


def compare(folder, classes=DEFAULT_CLASSES, max_per_class=None, seed=0, device=None, progress=True):
    """How far the embedded set is from the real galaxies in `folder` (one subfolder per class), per
    class: FID of embedded test galaxies against the folder's at the same N (the folder's count, capped
    by the embedded test split), the floor (FID of one half of the folder against the other half), and
    the medians of morphology's statistics on both sides. Returns a JSON-ready dict and the images."""
    import fid
    import morphology
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    x, y = read_image_folder(folder, classes)
    for c in classes:
        if (y == c).sum() < COMPARE_MIN_PER_CLASS:
            raise InputError(f"{folder}: class {c} ({CLASS_NAMES[c]}) has {(y == c).sum()} images, "
                             f"need at least {COMPARE_MIN_PER_CLASS}")
    test_x, test_y = load_galaxies("embedded", classes, max_per_class, seed, progress=progress).split("test")
    rng = np.random.default_rng(seed)
    model = fid.load_inception(device=device)
    features = functools.partial(fid.get_activations, model=model, device=device, progress=progress)

    def summary(fids):
        return {"fid": float(np.mean(fids)), "fid_sd": float(np.std(fids, ddof=1)) if len(fids) > 1 else 0.0,
                "draws": len(fids)}

    # At DIR's small N one draw of embedded galaxies moves the FID by several points, so the embedded
    # side is averaged over disjoint draws of the same N (up to COMPARE_DRAWS); the real side is all of DIR.
    ns = {c: int(min((y == c).sum(), (test_y == c).sum())) for c in classes}
    draws = int(min(COMPARE_DRAWS, *((test_y == c).sum() // ns[c] for c in classes)))
    report, shown, all_real, all_emb = {}, {}, [], []
    for c, n in ns.items():
        real = x[rng.permutation(np.flatnonzero(y == c))[:n]]
        emb = test_x[test_y == c][:n * draws].numpy()
        real_f, emb_f = features(torch.from_numpy(real)), features(torch.from_numpy(emb)).reshape(draws, n, -1)
        all_real.append(real_f)
        all_emb.append(emb_f)
        real_s, emb_s = morphology.medians(morphology.measure_all(real)), morphology.medians(morphology.measure_all(emb))
        report[str(c)] = {"name": CLASS_NAMES[c], "n": n,
                          **summary([fid.feature_distance(real_f, f) for f in emb_f]),
                          "floor": fid.feature_distance(real_f[:n // 2], real_f[n // 2:]), "floor_n": n // 2,
                          "statistics": {k: {"real": real_s[k], "embedded": emb_s[k]} for k in real_s}}
        shown[c] = (real, emb[:n])
    all_real, all_emb = np.concatenate(all_real), np.concatenate(all_emb, axis=1)
    report["overall"] = {"n": len(all_real), **summary([fid.feature_distance(all_real, f) for f in all_emb])}
    return {"folder": str(folder), "seed": seed, "classes": report}, shown


def _print_comparison(result):
    import morphology
    classes = [k for k in result["classes"] if k != "overall"]
    print(f"embedded test split against {result['folder']} (FID, standard Inception weights, same N both sides)")
    draws = result["classes"]["overall"]["draws"]
    print(f"FID: mean ± sd over {draws} disjoint draw{'s' * (draws > 1)} of N embedded test galaxies; "
          "floor: one half of DIR against the other")
    print(f"{'class':<28}{'N':>5}{'FID':>15}{'floor':>9}")
    for k in classes + ["overall"]:
        r = result["classes"][k]
        name = k + " " + r["name"] if k != "overall" else k
        floor = f"{r['floor']:>9.1f}   (N = {r['floor_n']} halves)" if "floor" in r else ""
        spread = f" ± {r['fid_sd']:<4.1f}" if r["draws"] > 1 else " " * 7
        print(f"{name:<28}{r['n']:>5}{r['fid']:>9.1f}{spread}{floor}")
    print(f"\nmedians, real / embedded {'':<18}" + "".join(f"{'class ' + k:>20}" for k in classes))
    for name, what in morphology.STATISTICS:
        cells = "".join(f"{result['classes'][k]['statistics'][name]['real']:>9.3g} /"
                        f"{result['classes'][k]['statistics'][name]['embedded']:>9.3g}" for k in classes)
        print(f"{name:<20}{what[:23]:<24}{cells}")


def _draw_comparison(shown, out, per_class=8):
    """Per class, a row of real galaxies above a row of embedded ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2 * len(shown), per_class, squeeze=False, figsize=(1.2 * per_class, 2.6 * len(shown)))
    for i, (c, pair) in enumerate(shown.items()):
        for row, images, label in zip(axes[2 * i:2 * i + 2], pair, ("real", "embedded")):
            for j, ax in enumerate(row):
                ax.set_axis_off()
                if j < len(images):
                    ax.imshow(images[j].transpose(1, 2, 0))
            row[0].set_title(f"{c} {CLASS_NAMES[c]}: {label}", loc="left", fontsize=9)
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- command line

def _preview(galaxies, out, per_class=8):
    """A labelled grid: one row per class, the first per_class training galaxies of each."""
    from plots import save_figure  # here, not at the top: plots imports data (and selects the Agg backend)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(galaxies.classes), per_class, squeeze=False,
                             figsize=(1.2 * per_class, 1.35 * len(galaxies.classes)))
    for row, c in zip(axes, galaxies.classes):
        images = galaxies.train_x[galaxies.train_y == c][:per_class]
        for j, ax in enumerate(row):
            ax.set_axis_off()
            if j < len(images):
                ax.imshow(images[j].permute(1, 2, 0).numpy())
        row[0].set_title(f"{c} {CLASS_NAMES[c]}", loc="left", fontsize=9)
    fig.suptitle(galaxies.source, fontsize=9)
    save_figure(fig, out, dpi=100)


@exit_on_input_error
def main(argv=None):
    parser = Parser(description=__doc__)
    parser.add_argument("source", nargs="?", default=None,
                        help="Galaxy10 .h5, image folder or 'embedded' (default: DATA_DIR file if present)")
    parser.add_argument("--download", nargs="?", const=str(DATA_DIR), metavar="DIR",
                        help=f"fetch Galaxy10_DECals.h5 (2.5 GB) into DIR (default {DATA_DIR})")
    parser.add_argument("--info", action="store_true", help="print the source and per-class/per-split counts")
    parser.add_argument("--preview", metavar="OUT.png", help="write a labelled grid of a few galaxies per class")
    parser.add_argument("--compare", metavar="DIR", help="FID and statistics of the embedded set against the "
                        "real galaxies in DIR (one subfolder per class); writes --out and its .json")
    parser.add_argument("--out", metavar="FILE.png", default="comparison.png",
                        help="--compare's figure (real above embedded); the JSON goes beside it")
    parser.add_argument("--device", default=None, help="--compare's Inception device (default: cuda if available)")
    parser.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.download:
        print(f"Galaxy10 DECals is ready: {download(dest_dir=args.download)}")
        return
    if args.compare:
        result, shown = compare(args.compare, tuple(sorted(args.classes)), args.max_per_class, args.seed, args.device)
        _print_comparison(result)
        out = Path(args.out)
        with atomic_output(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        _draw_comparison(shown, out)
        print(f"wrote {out} and {out.with_suffix('.json')}")
        return
    galaxies = load_galaxies(args.source, args.classes, args.max_per_class, args.seed)
    if args.preview:
        _preview(galaxies, args.preview)
        print(f"wrote {args.preview}")
    if args.info or not args.preview:
        print(f"source: {galaxies.source}  key: {galaxies.key}  embedded: {galaxies.embedded}")
        print(f"{'class':<28}{'train':>7}{'val':>7}{'test':>7}")
        for c in galaxies.classes:
            counts = [int((galaxies.split(s)[1] == c).sum()) for s in ("train", "val", "test")]
            print(f"{f'{c} {CLASS_NAMES[c]}':<28}" + "".join(f"{n:>7}" for n in counts))
        print(f"{'total':<28}" + "".join(f"{len(galaxies.split(s)[1]):>7}" for s in ("train", "val", "test")))


if __name__ == "__main__":
    main()
