"""Galaxies measured as astronomers measure them: statmorph's non-parametric and Sersic statistics of the
central galaxy of each cutout (Rodriguez-Gomez et al. 2019), and how far two sets' distributions lie apart
(the Wasserstein-1 distance per statistic, as a multiple of the distance between two real samples of the
same size: Holzschuh et al. 2022 measure generated galaxies so).

The chain, as fid.py's: images -> measure_all (a table, cached for real galaxies by their content) ->
compare (W1 per statistic, its floor and their ratio) -> a report. statmorph and photutils measure; this
module only chooses the settings below, what counts as a failure, and the comparison.

Settings, for 64x64 cutouts stored as displayed (asinh-stretched, 0-1) pixel values, identically for real,
reconstructed and generated galaxies, so the statistics compare sets rather than physical galaxies:
- every cutout, real or drawn, first gets white noise of one 8-bit grey level (1/255), seeded by its own
  pixels: a decoder's smooth mean has no sky noise at all, against which statmorph reads the faintest
  smooth wing as a sky left in ("Image is not background-subtracted", a failure for 10 of 60 of the
  default model's reconstructions on gz1_sdss_sample), as simulated galaxies are measured only after
  noise is added; real SDSS and DECaLS skies (about 2 grey levels) grow by about a tenth;
- the r band (the middle channel: DECaLS z, r, g and SDSS i, r, g are stored as R, G, B), SDSS's band for
  morphology; colour is g - r from the sky-subtracted fluxes of both bands inside the galaxy's segment;
- sky: the sigma-clipped (3 sigma) median and standard deviation of the pixels outside every source
  (sources found once on the raw cutout, masked with a 5-pixel margin to keep their faint wings out of the
  sky, then found again);
- segmentation: photutils.detect_sources on the cutout smoothed by a Gaussian of sigma 1 px (about the
  seeing at this scale), above 1.5 sky sigma of the unsmoothed cutout (about 5 sigma of the smoothed noise),
  at least 5 connected pixels, no deblending (at 64x64 a companion is rarely resolved from its host);
- the galaxy is the segment under the central pixel, else the one covering most of the central 9x9
  pixels (every cutout is centred on its galaxy); every other segment is masked, with a 1-pixel margin;
- statmorph with a constant weight map of the sky sigma (displayed pixels have no gain, and the sky
  dominates the noise of all but the brightest cores) and no PSF; skybox_size 16, as statmorph's default 32
  finds no empty 32x32 box beside most galaxies of a 64x64 cutout; no outlier rejection (n_sigma_outlier
  -1): against a weight map of the sky's noise a bright core's peak reads as a 10-sigma bad pixel and was
  masked (then "centroid is masked", a failure), and a generator's speckle is to be measured, not hidden.
A galaxy is a failure, counted and never dropped silently, when no segment covers the centre, statmorph
flags the measurement bad (flag >= 2) or the Sersic fit bad (flag_sersic >= 2), or any statistic is not
finite (a non-positive flux in one band gives no colour). No other outlier cut: every statistic is bounded
by its definition, by the cutout or by the fit's bounds (Sersic n <= 10), so a few extreme values move W1 by
at most their share of that range.
"""
import hashlib
import json
import multiprocessing
import os
import warnings
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance
from tqdm import tqdm

from files import atomic_output, default_cache_dir, set_aside

# (name, what it is) in the order tables and figures show them
STATISTICS = (
    ("gini", "Gini coefficient of the light"),
    ("m20", "M20: moment of the brightest 20%"),
    ("concentration", "C = 5 log10(r80/r20)"),
    ("asymmetry", "A: rotational asymmetry"),
    ("smoothness", "S: clumpiness"),
    ("sersic_n", "Sersic index n"),
    ("rhalf_ellip", "half-light semi-major axis (px)"),
    ("ellipticity_asymmetry", "ellipticity 1 - b/a"),
    ("colour_gr", "g - r in the segment (displayed)"),
)
NAMES = tuple(name for name, _ in STATISTICS)
SETTINGS = {"band": 1, "clip_sigma": 3.0, "mask_margin": 5, "smooth_sigma": 1.0, "threshold": 1.5,
            "min_pixels": 5, "centre_box": 9, "neighbour_margin": 1, "skybox_size": 16,
            "n_sigma_outlier": -1, "noise_floor": 1 / 255}
FLOOR_DRAWS = 8      # draws of the real training subsample averaged into the floor
PARALLEL_FROM = 16   # fewer galaxies are measured in this process (a worker pool costs ~1 s to start)


def _import_measuring_libraries():
    """astropy, photutils and statmorph take seconds to import: imported where measured, not by every script
    that imports this module for its names (plots.py), and before a pool forks, so its workers share them."""
    import astropy.convolution  # noqa: F401
    import astropy.stats  # noqa: F401
    import photutils.segmentation  # noqa: F401
    import statmorph  # noqa: F401


def _versions():
    import photutils
    import statmorph
    return f"statmorph {statmorph.__version__}, photutils {photutils.__version__}"


# ---------------------------------------------------------------- one galaxy

def _segment(band):
    """(sky-subtracted band, central segment mask, neighbour mask, sky sigma), or a failure reason."""
    from astropy.convolution import Gaussian2DKernel, convolve
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    s = SETTINGS
    kernel = Gaussian2DKernel(s["smooth_sigma"])
    mask = None
    for _ in range(2):  # the sky from all pixels, then from those outside the sources found with it
        _, level, sigma = sigma_clipped_stats(band, mask=mask, sigma=s["clip_sigma"], maxiters=10)
        image = band - level
        with warnings.catch_warnings():  # photutils warns where it finds nothing: a failure, returned below
            warnings.simplefilter("ignore")
            segments = detect_sources(convolve(image, kernel), s["threshold"] * sigma, n_pixels=s["min_pixels"])
        if segments is None:
            return "no source"
        mask = ndimage.binary_dilation(segments.data > 0, iterations=s["mask_margin"])
        if mask.all():
            return "no sky beside the sources"
    labels, c, h = segments.data, band.shape[0] // 2, s["centre_box"] // 2
    central = labels[c, c]
    if central == 0:
        ids, counts = np.unique(labels[c - h:c + h + 1, c - h:c + h + 1], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        if len(ids) == 0:
            return "no source at the centre"
        central = ids[np.argmax(counts)]
    galaxy = labels == central
    neighbours = ndimage.binary_dilation((labels > 0) & ~galaxy, iterations=s["neighbour_margin"]) & ~galaxy
    return image, galaxy, neighbours, sigma


def measure(image):
    """statmorph's statistics of the central galaxy of one cutout (3 x S x S in [0, 1]): {name: value} for
    NAMES, plus "failure": "" for a good measurement, else why it is not one (the values are then NaN)."""
    import statmorph
    from astropy.stats import sigma_clipped_stats

    image = np.asarray(image, np.float64)
    noise = np.random.default_rng(zlib.crc32(np.ascontiguousarray(image, np.float32).tobytes()))  # per image
    image = image + noise.normal(0.0, SETTINGS["noise_floor"], image.shape)
    nan = dict.fromkeys(NAMES, np.nan)
    found = _segment(image[SETTINGS["band"]])
    if isinstance(found, str):
        return nan | {"failure": found}
    band, galaxy, neighbours, sigma = found
    with warnings.catch_warnings(record=True) as said:  # statmorph warns of every doubtful step; its flags
        warnings.simplefilter("always")                  # carry the verdict, its words the reason
        try:
            m = statmorph.SourceMorphology(band, galaxy.astype(np.int32), 1, mask=neighbours,
                                           weightmap=np.full_like(band, sigma), skybox_size=SETTINGS["skybox_size"],
                                           n_sigma_outlier=SETTINGS["n_sigma_outlier"])
        except Exception as error:  # statmorph raises on some degenerate segments (e.g. a single row)
            return nan | {"failure": f"statmorph: {type(error).__name__}"}
        sky = ~galaxy & ~neighbours
        flux = [(image[b] - sigma_clipped_stats(image[b], mask=~sky, sigma=SETTINGS["clip_sigma"])[1])[galaxy].sum()
                for b in (1, 2)]
        colour = -2.5 * np.log10(flux[1] / flux[0]) if min(flux) > 0 else np.nan
    values = {name: float(getattr(m, name)) for name in NAMES if name != "colour_gr"} | {"colour_gr": float(colour)}
    if m.flag >= 2:
        why = [str(w.message) for w in said if "skybox" not in str(w.message).lower()]
        return nan | {"failure": f"statmorph flag {m.flag}" + (f" ({why[-1].strip('. ')})" if why else "")}
    if m.flag_sersic >= 2:
        return nan | {"failure": f"Sersic fit flag {m.flag_sersic}"}
    bad = [name for name, value in values.items() if not np.isfinite(value)]
    if bad:
        return nan | {"failure": f"not finite: {', '.join(bad)}"}
    return values | {"failure": ""}


# ---------------------------------------------------------------- many galaxies, cached for real ones

def cpu_workers():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def measure_all(images, progress=True, desc="statmorph", workers=None):
    """The statistics of many cutouts (N x 3 x S x S, a tensor or array): {name: array of N values,
    "failure": list of N reasons ("" for a good one)}, spread over the CPU cores."""
    images = np.asarray(images, np.float32)
    workers = workers or cpu_workers()

    def shown(rows):
        return list(tqdm(rows, total=len(images), desc=desc, disable=not progress, leave=False))
    if workers < 2 or len(images) < PARALLEL_FROM:
        rows = shown(map(measure, images))
    else:  # fork: the workers need only numpy and statmorph, not a second start of torch
        _import_measuring_libraries()
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            rows = shown(pool.map(measure, images, chunksize=4))
    return {name: np.array([row[name] for row in rows], np.float64) for name in NAMES} | {
        "failure": [row["failure"] for row in rows]}


def cache_path(images, cache_dir=None):
    """Where measure_cached keeps the table of these images: named by a digest of their pixels and of the
    settings and library versions, so another set, another setting or another statmorph is measured anew."""
    digest = hashlib.sha256(np.ascontiguousarray(np.asarray(images, np.float32)).tobytes())
    digest.update(json.dumps([SETTINGS, _versions()], sort_keys=True).encode())
    return Path(cache_dir or default_cache_dir()) / f"morphometry-{digest.hexdigest()[:20]}.npz"


def measure_cached(images, progress=True, desc="statmorph", cache_dir=None):
    """measure_all for a set measured again and again (real held-out and training galaxies): read from the
    cache when these very pixels were measured before with these settings; a damaged cache file is moved
    aside with a warning and measured again."""
    path = cache_path(images, cache_dir)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as saved:
                return {name: saved[name] for name in NAMES} | {"failure": [str(f) for f in saved["failure"]]}
        except (OSError, ValueError, KeyError) as error:
            set_aside(path, f"unreadable statmorph table ({type(error).__name__})", "; measuring them again")
    table = measure_all(images, progress, desc)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, failure=np.array(table["failure"], dtype=str), **{name: table[name] for name in NAMES})
    return table


def failures(table):
    """How many galaxies of a table could not be measured."""
    return sum(bool(f) for f in table["failure"])


def take(table, index):
    """The rows `index` (a slice or an array of row numbers) of a table: the same statistics, for those galaxies
    only ("failure" stays a list)."""
    return {key: values[index] if isinstance(values, np.ndarray) else list(np.asarray(values, object)[index])
            for key, values in table.items()}


def good(table, name):
    """The finite values of one statistic (the failures' are NaN)."""
    values = table[name]
    return values[np.isfinite(values)]


# ---------------------------------------------------------------- distances between sets

def spread(values):
    """The scale W1 is measured in: the interquartile range / 1.349 (a normal's sigma), robust to the few
    wild values a measurement gives; where over half the sample ties (a statistic piled at one value, as
    smoothness is at 0 for many small galaxies) that range says nothing, and the standard deviation is used."""
    q25, q75 = np.percentile(values, [25, 75])
    robust, sd = (q75 - q25) / 1.349, float(np.std(values))
    return float(robust if robust >= 0.25 * sd else sd)


def compare(table, real, floor_pool, n=None, draws=FLOOR_DRAWS, seed=0):
    """How far `table`'s distributions lie from `real`'s: per statistic {w, floor, ratio}, and mean_ratio.
    w is W1 between the two sets' good values in units of real's spread; floor is W1 between real and n
    galaxies drawn from floor_pool (real galaxies of the same class from another split; n defaults to
    table's size, so both distances are at equal N), averaged over `draws` seeded draws; ratio = w / floor
    (1: as far as another real sample; the standardisation cancels in it)."""
    rng = np.random.default_rng(seed)
    n = n or len(table["failure"])
    result = {}
    for name in NAMES:
        target, values, pool = good(real, name), good(table, name), good(floor_pool, name)
        scale = spread(target) if len(target) >= 2 else 0.0
        if len(values) < 1 or len(pool) < 2 or not scale > 0:
            result[name] = {"w": None, "floor": None, "ratio": None}
            continue
        w = wasserstein_distance(values / scale, target / scale)
        take = min(n, len(pool))
        floor = float(np.mean([wasserstein_distance(rng.choice(pool, take, replace=False) / scale, target / scale)
                               for _ in range(draws)]))
        result[name] = {"w": float(w), "floor": floor, "ratio": float(w / floor) if floor > 0 else None}
    ratios = [r["ratio"] for r in result.values() if r["ratio"] is not None]
    return result | {"mean_ratio": float(np.mean(ratios)) if ratios else None}
