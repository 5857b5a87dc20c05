"""The embedded procedural set: parametric galaxies of Galaxy10 classes 2, 6 and 9 drawn as light
profiles in three bands (z, r, g as R, G, B), with field stars and faint background galaxies, blurred
by a seeing PSF, with sky noise, and stretched the way Legacy Survey JPEGs are. Its own module, so
that the embedded set's cache key is this file: only a change here re-renders it."""
import builtins
import functools
import io
import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext

import numpy as np
from PIL import Image
from tqdm import tqdm


RENDER_SIZE = 256
_Y, _X = np.mgrid[:RENDER_SIZE, :RENDER_SIZE].astype(np.float32) - (RENDER_SIZE - 1) / 2
_F2 = (np.fft.fftfreq(RENDER_SIZE)[:, None] ** 2 + np.fft.rfftfreq(RENDER_SIZE)[None, :] ** 2)
_NOISE_OTF = np.exp(-2 * np.pi ** 2 * 0.7 ** 2 * _F2).astype(np.float32)   # resampled cutouts have
                                                                             # pixel-correlated noise
# colours as (R, G, B) = (z, r, g) flux ratios
_OLD_STARS, _DUSTY_DISK = (1.2, 1.0, 0.75), (1.12, 1.0, 0.85)
_DISK, _ARMS, _HII = (1.05, 1.0, 0.95), (0.8, 0.92, 1.15), (0.6, 0.85, 1.5)
_BLUE, _RED = np.array((0.7, 0.95, 1.5)), np.array((1.9, 0.9, 0.35))
_FIELD = (6, RENDER_SIZE - 6)   # keeps field sources off the edges, where FFT convolution would wrap them
_BAND_NOISE = np.array((1.2, 0.76, 0.76), np.float32)[:, None, None]   # z is the shallowest band
COMPANIONS = 2.0   # mean number of companion galaxies around each target
FIELD_GALAXIES = 1.0   # mean number of resolved background galaxies per cutout


@functools.lru_cache(maxsize=None)
def _moffat_otf(fwhm, beta=3.0):
    """Transfer function of a Moffat PSF (seeing: a Gaussian-like core with power-law wings), centred
    on pixel (0, 0) so the FFT convolution does not shift the image."""
    d = np.fft.fftfreq(RENDER_SIZE) * RENDER_SIZE
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    kernel = (1 + (d[:, None] ** 2 + d[None, :] ** 2) / alpha ** 2) ** -beta
    return np.fft.rfft2(kernel / kernel.sum()).astype(np.complex64)


def _sersic(r, re, n):
    """Sérsic profile with unit total flux: n = 1 an exponential disk, n = 4 de Vaucouleurs."""
    b = 2 * n - 1 / 3 + 4 / (405 * n)
    img = np.exp(-b * (r / re) ** (1 / n))
    return img / img.sum()


def _stellar_colour(t):
    """Colours from blue (t = 0) to red (t = 1) along a straight line in magnitudes, i.e. in log flux:
    halfway is the yellow of old stars, where a linear mix of the flux ratios would be pink."""
    return _BLUE * (_RED / _BLUE) ** np.asarray(t, np.float64)


def _tint(colour, rng, spread=0.09):
    """colour varied mostly along the red-blue axis (age, dust), as real galaxy colours vary."""
    factor = np.exp(rng.normal(0, spread) * np.array((1, 0, -1)) + rng.normal(0, 0.02, 3))
    return (np.asarray(colour) * factor).astype(np.float32)[:, None, None]


def _frame(centre, pa):
    """Pixel coordinates along (u) and across (v) a galaxy's major axis."""
    c, s = float(np.cos(pa)), float(np.sin(pa))   # Python floats keep the float32 arrays float32
    x, y = _X - float(centre[0]), _Y - float(centre[1])
    return x * c + y * s, y * c - x * s


def _deposit(layer, x, y, flux, colour):
    """Add point sources of the given flux and (n, 3) colours at pixel positions x, y."""
    inside = (x > -0.5) & (x < RENDER_SIZE - 0.5) & (y > -0.5) & (y < RENDER_SIZE - 0.5)
    ix, iy = np.rint(x[inside]).astype(int), np.rint(y[inside]).astype(int)
    for band in range(3):
        np.add.at(layer[band], (iy, ix), (flux * colour[:, band])[inside])


def _round_smooth(rng, centre, pa, sources):
    """A compact yellow-white Sérsic (n 2-4.5) elliptical, round to mildly flattened, in a softer,
    more extended halo of the same old stars."""
    u, v = _frame(centre, pa)
    q = rng.uniform(0.5, 1.0)
    re = rng.lognormal(np.log(8), 0.6)
    profile = 0.8 * _sersic(np.hypot(u, v / q), re, rng.uniform(1.5, 4.0)) \
        + 0.2 * _sersic(np.hypot(u, v / min(q + 0.1, 1)), re * rng.uniform(2.5, 4), 1.0)
    return rng.lognormal(np.log(540), 0.5) * _tint(_OLD_STARS, rng) * profile


def _tight_spiral(rng, centre, pa, sources):
    """Yellow bulge + bluer exponential disk whose light gathers in tightly wound logarithmic arms
    (pitch 8-16 degrees) dotted with blue star-forming knots, seen at a random inclination."""
    u, v = _frame(centre, pa)
    cos_i = rng.uniform(0.4, 1.0)
    r = np.hypot(u, v / cos_i) + 0.5                         # radius in the disk plane
    theta = np.arctan2(v / cos_i, u)
    h = rng.lognormal(np.log(11.5), 0.3)
    re_bulge = h * rng.uniform(0.2, 0.4)
    m = 2 if rng.random() < 0.8 else 3
    tan_pitch = float(np.tan(np.radians(rng.uniform(8, 16))) * rng.choice((-1, 1)))
    phase = rng.uniform(0, 2 * np.pi)
    arms = ((1 + np.cos(m * (theta - np.log(r) / tan_pitch - phase))) / 2) ** rng.uniform(1, 2)
    disk = np.exp(-r / h)
    arms *= disk * (1 - np.exp(-(r / (2 * re_bulge)) ** 2))   # arms begin outside the bulge
    flux = rng.lognormal(np.log(1300), 0.45)
    bulge_frac, arm_frac = rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3)
    image = flux * (bulge_frac * _tint(_OLD_STARS, rng) * _sersic(np.hypot(u, v / rng.uniform(0.8, 1)),
                                                                  re_bulge, rng.uniform(1.5, 3.5))
                    + (1 - bulge_frac) * (1 - arm_frac) * _tint(_DISK, rng) * disk / disk.sum()
                    + (1 - bulge_frac) * arm_frac * 0.8 * _tint(_ARMS, rng) * arms / arms.sum())
    # HII regions: knots on the arm ridge lines, carrying the remaining 20% of the arm light
    n = rng.integers(1, 10)
    rk = h * rng.gamma(3.0, 0.7, n)
    tk = np.log(rk) / tan_pitch + phase + 2 * np.pi * rng.integers(0, m, n) / m + rng.normal(0, 0.12, n)
    uk, vk = rk * np.cos(tk), rk * np.sin(tk) * cos_i
    c, s = np.cos(pa), np.sin(pa)
    fk = rng.exponential(1, n)
    _deposit(sources, centre[0] + uk * c - vk * s + (RENDER_SIZE - 1) / 2,
             centre[1] + uk * s + vk * c + (RENDER_SIZE - 1) / 2,
             flux * (1 - bulge_frac) * arm_frac * 0.2 * fk / fk.sum(), np.tile(_HII, (n, 1)))
    return image


def _edge_on(rng, centre, pa, sources):
    """A thin disk seen edge-on (blunter than exponential along it, a Gaussian thin + thick disk across)
    around a rounder bulge, often cut by a dust lane that dims and reddens the light behind it."""
    u, v = _frame(centre, pa)
    h = rng.lognormal(np.log(14.5), 0.45)
    hz = h * rng.uniform(0.2, 0.35)
    radial = np.exp(-(np.abs(u) / (2.0 * h)) ** 1.5)   # blunter than exponential: a lens, not a needle
    disk = radial * (np.exp(-0.5 * (v / hz) ** 2) + 0.25 * np.exp(-0.5 * (v / (3 * hz)) ** 2))  # thin + thick
    bulge_frac = rng.uniform(0.4, 0.7)
    bulge = _sersic(np.hypot(u, v / rng.uniform(0.5, 0.8)), h * rng.uniform(0.3, 0.6), rng.uniform(1.5, 3))
    image = rng.lognormal(np.log(380), 0.45) * (h / 14.5) ** 1.5 * (bulge_frac * _tint(_OLD_STARS, rng) * bulge
                                                 + (1 - bulge_frac) * _tint(_DUSTY_DISK, rng) * disk / disk.sum())
    if rng.random() < 0.5:
        width = hz * rng.uniform(0.3, 0.7)
        lane = rng.uniform(0.4, 1.5) * np.exp(-0.5 * ((v - rng.normal(0, 0.3 * hz)) / width) ** 2
                                              - np.abs(u) / (2 * h))
        image *= np.exp(-lane[None] * np.array((0.75, 1.0, 1.3), np.float32)[:, None, None])  # redder where dustier
    return image


GALAXY_MAKERS = {2: _round_smooth, 6: _tight_spiral, 9: _edge_on}


def _field(rng, sources):
    """Foreground stars (point sources, blue-white to red, few bright) and faint background galaxies
    (small fuzzy blobs of varied colour: each spread over five nearby points, longer along an axis)."""
    density = rng.lognormal(0, 0.25)   # star counts vary with galactic latitude, faint galaxies with depth
    n = rng.poisson(18 * density)
    colour = _stellar_colour(rng.random((n, 1)))
    _deposit(sources, rng.uniform(*_FIELD, n), rng.uniform(*_FIELD, n),
             np.minimum(0.55 * (rng.pareto(0.7, n) + 1), 300), colour)
    n = rng.poisson(40 * density)
    colour = _stellar_colour(rng.random((n, 1)) * 0.8)   # faint galaxies are mostly blue, star-forming
    x, y, flux = rng.uniform(*_FIELD, n), rng.uniform(*_FIELD, n), 0.3 * (rng.pareto(1.3, n) + 1)
    angle, length = rng.uniform(0, np.pi, n), rng.uniform(0.5, 2.5, n)
    c, s = np.cos(angle), np.sin(angle)
    for along, across in ((-1, 0), (0, 0), (1, 0), (0, -0.6), (0, 0.6)):
        dx, dy = along * length, across * length
        _deposit(sources, x + dx * c - dy * s, y + dx * s + dy * c, flux / 5, colour)


def _small_galaxy(rng, position, flux):
    """A small Sérsic galaxy (half-light radius about 3 px at 256 x 256) of a random shape and colour."""
    u, v = _frame(position, rng.uniform(0, np.pi))
    profile = _sersic(np.hypot(u, v / rng.uniform(0.4, 1.0)), rng.lognormal(np.log(3), 0.4), rng.uniform(1, 4))
    return flux * _stellar_colour(rng.uniform(0.2, 0.9)).astype(np.float32)[:, None, None] * profile


def _neighbours(rng, centre, host_flux):
    """Galaxies cluster: small, fainter companions a few half-light radii from the target, which at
    64x64 often merge with it into one segment (real cutouts' lumpier, less concentrated light);
    and resolved background galaxies anywhere in the field, independent of the target."""
    image = np.zeros((3, RENDER_SIZE, RENDER_SIZE), np.float32)
    for _ in range(rng.poisson(COMPANIONS)):
        radius, angle = rng.uniform(14, 56), rng.uniform(0, 2 * np.pi)
        position = np.asarray(centre) + radius * np.array((np.cos(angle), np.sin(angle)))
        image += _small_galaxy(rng, position, host_flux / 3 * min(rng.lognormal(np.log(0.05), 0.8), 0.5))
    for _ in range(rng.poisson(FIELD_GALAXIES)):
        position = rng.uniform(*_FIELD, 2) - (RENDER_SIZE - 1) / 2   # _frame takes offsets from the centre
        image += _small_galaxy(rng, position, min(rng.lognormal(np.log(8), 0.8), 60))
    return image


def _sky_noise_spectrum(rng, sigma):
    """Fourier transform of white sky noise of standard deviation sigma, drawn directly in Fourier
    space (saving an FFT) and smoothed a little, like the noise of resampled survey cutouts."""
    z = rng.standard_normal((2, 3) + _F2.shape, dtype=np.float32)
    return (z[0] + 1j * z[1]) * (float(sigma * RENDER_SIZE / np.sqrt(2)) * _NOISE_OTF * _BAND_NOISE)


# The survey JPEGs' empty sky is a dark, neutral grey (about RGB 33, 32, 32 in the reference cutouts),
# not black: this pedestal per band (z, r, g) reproduces it through the stretch below.
_SKY_PEDESTAL = np.array((0.0292, 0.0289, 0.0285), np.float32)[:, None, None]


def _legacy_rgb(flux, q=20.0):
    """Legacy Survey JPEG look (their sdss_rgb): one asinh stretch of the mean intensity applied to
    all bands alike, so cores keep their colour while the faint outskirts are lifted out of the sky."""
    planes = flux + _SKY_PEDESTAL
    intensity = np.maximum(np.maximum(planes, 0).mean(0), 1e-6)
    rgb = planes * (np.arcsinh(q * intensity) / np.sqrt(q) / intensity)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _jpeg(rgb, quality=75):
    """The cutouts are JPEGs (quality 75, colour at half resolution, by their quantisation tables):
    the round trip smooths the colour noise of the sky, which Inception sees even at 64x64."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _render_one(class_id, rng):
    """One 256 x 256 x 3 uint8 cutout of a galaxy of class_id, centred as Galaxy10 cutouts are."""
    centre, pa = rng.normal(0, 1.5, 2), rng.uniform(0, np.pi)
    sources = np.zeros((3, RENDER_SIZE, RENDER_SIZE), np.float32)   # point-like light, before the PSF
    galaxy = GALAXY_MAKERS[class_id](rng, centre, pa, sources)
    galaxy += _neighbours(rng, centre, float(galaxy.sum()))
    _field(rng, sources)
    psf = _moffat_otf(round(rng.uniform(3.0, 5.0) * 2) / 2)
    spectrum = np.fft.rfft2(galaxy + sources) * psf + _sky_noise_spectrum(rng, rng.uniform(0.014, 0.027))
    return _jpeg(_legacy_rgb(np.fft.irfft2(spectrum, s=sources.shape[1:])))


def _render_chunk(seed, jobs):
    return np.stack([_render_one(c, np.random.default_rng([seed, c, i])) for c, i in jobs])


def render_embedded(classes, n_per_class, seed=0, progress=True, chunk=64, workers=None):
    """Yield (uint8 images B x 256 x 256 x 3, int64 class ids) of the embedded set, class by class.
    Image i of class c depends only on (seed, c, i), so a smaller n_per_class renders a prefix, and the
    chunks can be rendered on all cores (`workers`, default: every core) with the same result."""
    if set(classes) - set(GALAXY_MAKERS):
        raise ValueError(f"no renderer for classes {sorted(set(classes) - set(GALAXY_MAKERS))}")
    jobs = [(c, i) for c in sorted(classes) for i in range(n_per_class)]
    chunks = [jobs[start:start + chunk] for start in range(0, len(jobs), chunk)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    with tqdm(total=len(jobs), desc="rendering embedded galaxies", unit="img", disable=not progress) as bar, \
            (ProcessPoolExecutor(workers) if workers > 1 else nullcontext()) as pool:
        rendered = (pool or builtins).map(_render_chunk, itertools.repeat(seed), chunks)
        for batch, images in zip(chunks, rendered):
            yield images, np.array([c for c, _ in batch], np.int64)
            bar.update(len(batch))
