"""What a survey astronomer measures on a 64x64 colour cutout beyond statmorph's statistics of the galaxy
(morphometry.py: size, shape, concentration, Gini-M20, CAS, Sersic index): the sky (level, noise, its
pixel correlation), the galaxy's colour, surface brightness, arm contrast, bulge-to-disk look and dust
lane, the seeing and the field sources around it.

Plain numpy + scipy.ndimage (moments, curves of growth, threshold segmentation), as statmorph measures
none of these. Everything is measured on the displayed (asinh-stretched, 0-1) pixel values, identically
for real and embedded cutouts, so the numbers compare the two rather than the physical galaxies."""
import numpy as np
from scipy import ndimage

# (name, what it is) in the order tables print them
STATISTICS = (
    ("colour_rg", "R/G = z/r flux ratio in the galaxy"),
    ("colour_bg", "B/G = g/r flux ratio in the galaxy"),
    ("surface_brightness", "mean intensity inside r50"),
    ("arm_contrast", "|I - elliptical median| / I, r50/2-2r50"),
    ("bulge_to_disk", "flux inside r50/2 / flux outside r50"),
    ("dust_lane", "minor-axis dip on the major axis"),
    ("sky_level", "median sky intensity"),
    ("sky_noise", "sky standard deviation (robust)"),
    ("noise_correlation", "sky correlation of neighbour pixels"),
    ("psf_fwhm", "FWHM of compact field sources (px)"),
    ("field_sources", "sources beside the galaxy per cutout"),
    ("source_peak", "median peak above sky of field sources"),
)
_DETECT_SIGMA = 3.0   # segmentation threshold above the sky, in noise units of the smoothed image
_MIN_AREA = 3         # pixels: smaller segments are noise peaks, not sources
_MIN_SKY = 0.05       # fraction of the cutout: with less sky beside the sources, nothing can be measured


def _sky(gray, mask=None):
    """Sigma-clipped sky level and robust noise of the pixels outside any source."""
    keep = np.ones_like(gray, bool) if mask is None else ~mask
    level = noise = np.nan
    for _ in range(4):
        if keep.sum() < _MIN_SKY * keep.size:   # a clipped, noiseless black sky clips itself away
            break
        level = np.median(gray[keep])
        noise = 1.4826 * np.median(np.abs(gray[keep] - level)) + 1e-6
        keep = keep & (gray < level + 3 * noise)
        keep = ~ndimage.binary_dilation(~keep, iterations=1)
    return level, noise, keep


def _spread(values):
    """Robust standard deviation of a sample: its interquartile range / 1.349. Pixels of 8-bit images sit
    on a grid of grey levels, where the median absolute deviation jumps by whole levels (a sky of 1.9
    levels reads 1.5 or 3.0); there each level's pixels are taken as spread evenly across it, so the
    quartiles fall between levels as they would on the continuous sky."""
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) > 1 and len(values) >= 2 * len(levels):  # few distinct values: a grid of grey levels
        step = np.median(np.diff(levels))
        edges = np.concatenate([[levels[0] - step / 2], levels + step / 2])
        q25, q75 = np.interp([0.25, 0.75], np.concatenate([[0], np.cumsum(counts)]) / len(values), edges)
    else:
        q25, q75 = np.percentile(values, [25, 75])
    return (q75 - q25) / 1.349


def band_sky_noise(images, max_images=500):
    """The sky's noise in each band (N x 3 x 64 x 64 in [0, 1] -> array of 3): the spread of one band's
    sky pixels (outside _sky's clipped sources) in one cutout, median over max_images cutouts spaced
    evenly through the set (500 give it to about 1%). Spaced, not the first ones: a split is stored class
    by class, and the classes' skies differ (on gz1_sdss_sample the round galaxies' sky is 1.5 times the
    others')."""
    pick = np.unique(np.linspace(0, len(images) - 1, min(len(images), max_images)).round().astype(int))
    cutouts = np.asarray(images[pick], np.float64)
    noise = [[_spread(band[_sky(band)[2]]) for band in cutout] for cutout in cutouts]
    return np.median(noise, axis=0).astype(np.float32)


def _radii_of_growth(r, flux, fractions):
    """Radii enclosing the given fractions of flux on a curve of growth over pixel radii r."""
    order = np.argsort(r)
    cum = np.cumsum(flux[order])
    total = cum[-1]
    return [float(np.interp(f * total, cum, r[order])) for f in fractions]


def measure(image):
    """Statistics of one cutout (3 x 64 x 64 float in [0, 1], channels R, G, B = z, r, g)."""
    image = np.asarray(image, np.float64)
    gray = image.mean(0)
    size = gray.shape[0]
    _, _, sky_px = _sky(gray)
    smooth = ndimage.gaussian_filter(gray, 0.7)   # one-pixel seeing: detect on the matched blur
    level_s, noise_s, _ = _sky(smooth, ~sky_px)
    labels, n = ndimage.label(smooth > level_s + _DETECT_SIGMA * noise_s)
    areas = np.bincount(labels.ravel())
    labels, n = ndimage.label(areas[labels] * (labels > 0) >= _MIN_AREA)
    level, noise, sky_px = _sky(gray, labels > 0)
    if sky_px.sum() < _MIN_SKY * sky_px.size or not np.isfinite(level_s):
        return {k: np.nan for k, _ in STATISTICS}
    sky_rgb = np.array([np.median(c[sky_px]) for c in image])
    a, b = gray[:, :-1] - level, gray[:, 1:] - level
    pair = sky_px[:, :-1] & sky_px[:, 1:]
    out = dict(sky_level=level, sky_noise=noise,
               noise_correlation=float((a[pair] * b[pair]).mean() / noise ** 2))

    # the galaxy: the segment covering most of the central 9 x 9 pixels (cutouts are centred on it)
    c0 = size // 2
    central = labels[c0 - 4:c0 + 5, c0 - 4:c0 + 5]
    ids, counts = np.unique(central[central > 0], return_counts=True)
    if len(ids) == 0:
        return {**out, **{k: np.nan for k, _ in STATISTICS if k not in out}}
    gal = ids[np.argmax(counts)]
    others = (labels > 0) & (labels != gal)
    galaxy = ndimage.binary_dilation(labels == gal, iterations=2) & ~others
    g = np.where(galaxy, gray - level, 0.0)
    w = np.clip(g, 0, None)
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    xc, yc = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    cov = np.cov(np.stack([xx.ravel() - xc, yy.ravel() - yc]), aweights=w.ravel() + 1e-12, bias=True)
    evals, evecs = np.linalg.eigh(cov)
    q = float(np.sqrt(max(evals[0], 1e-9) / evals[1]))
    r = np.hypot(xx - xc, yy - yc)
    [r50] = _radii_of_growth(r[galaxy], g[galaxy], (0.5,))
    total = g[galaxy].sum()
    rgb = (image - sky_rgb[:, None, None])[:, galaxy].sum(1)

    # arm contrast: light off a smooth model (the median in elliptical annuli), relative to the light
    major = evecs[:, 1]
    u = (xx - xc) * major[0] + (yy - yc) * major[1]
    v = -(xx - xc) * major[1] + (yy - yc) * major[0]
    r_ell = np.rint(np.hypot(u, v / max(q, 0.2))).astype(int)
    ring = galaxy & (r >= r50 / 2) & (r <= 2 * r50)
    model = ndimage.median(g, r_ell, index=np.arange(r_ell.max() + 1))
    residual = np.abs(g - np.asarray(model)[r_ell])
    arm = float(residual[ring].sum() / max(g[ring].sum(), 1e-9)) if ring.any() else np.nan

    # dust lane: the profile across the disk, averaged along it outside the bulge; a lane is a dip at v=0
    us = np.linspace(-1.5 * r50, 1.5 * r50, 13)
    us = us[np.abs(us) > 0.4 * r50]
    vs = np.arange(-2, 2.01, 0.5)
    uu, vv = np.meshgrid(us, vs)
    px, py = xc + uu * major[0] - vv * major[1], yc + uu * major[1] + vv * major[0]
    profile = ndimage.map_coordinates(g, [py, px], order=1).mean(1)
    lane = float(max(0.0, 1 - profile[len(vs) // 2] / max(profile.max(), 1e-9)))

    # field sources: every other segment; compact bright ones give the seeing
    peaks, fwhms = [], []
    for i, sl in enumerate(ndimage.find_objects(labels), 1):
        if i == gal or sl is None:
            continue
        patch = np.where(labels[sl] == i, gray[sl] - level, 0)
        peaks.append(patch.max())
        if patch.size <= 30 and patch.max() > 10 * noise:
            py0, px0 = np.unravel_index(patch.argmax(), patch.shape)
            y0, x0 = py0 + sl[0].start, px0 + sl[1].start
            box = np.clip(gray[max(y0 - 2, 0):y0 + 3, max(x0 - 2, 0):x0 + 3] - level, 0, None)
            by, bx = np.mgrid[:box.shape[0], :box.shape[1]]
            m = box.sum()
            var = ((by - (box * by).sum() / m) ** 2 + (bx - (box * bx).sum() / m) ** 2) * box
            fwhms.append(2.3548 * np.sqrt(var.sum() / m / 2))
    return {**out, "colour_rg": float(rgb[0] / rgb[1]), "colour_bg": float(rgb[2] / rgb[1]),
            "surface_brightness": float(0.5 * total / (np.pi * max(r50, 0.5) ** 2)),
            "arm_contrast": arm,
            "bulge_to_disk": float(g[galaxy & (r < r50 / 2)].sum() / max(g[galaxy & (r > r50)].sum(), 1e-9)),
            "dust_lane": lane, "psf_fwhm": float(np.median(fwhms)) if fwhms else np.nan,
            "field_sources": float(len(peaks)), "source_peak": float(np.median(peaks)) if peaks else np.nan}


def measure_all(images):
    """Statistics of many cutouts (N x 3 x 64 x 64): {name: array of N values}."""
    rows = [measure(im) for im in np.asarray(images)]
    return {k: np.array([row[k] for row in rows], np.float64) for k, _ in STATISTICS}


def medians(stats):
    """Median of each statistic, ignoring cutouts where it was undefined (no galaxy, no star)."""
    return {k: float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan") for k, v in stats.items()}
