"""The latent map: where the encoder puts each galaxy, flattened to 2-D, and the main directions of
the latent space. Used by explore.py (the page) and generate.py --latent-map (the PNG), so both show
the same map in the same colours."""
import numpy as np
import matplotlib.pyplot as plt
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from classes import CLASS_NAMES
from cli import InputError
from model import encode_means
from plots import save_figure

PROJECTIONS = ("pca", "tsne")
# matplotlib's tab10, in the order of a checkpoint's classes: the page and the PNG colour alike.
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf")


def principal_directions(latents, k):
    """(mean, directions k x d, spread k): the principal components of `latents`, largest variance
    first, each with its standard deviation, so that a slider at s moves s standard deviations."""
    z = np.asarray(latents, dtype=np.float64)
    pca = PCA(n_components=min(k, *z.shape)).fit(z)
    return pca.mean_, pca.components_, np.sqrt(pca.explained_variance_)


def project(latents, method="pca", fit_latents=None, seed=0):
    """N x 2 coordinates of `latents`. PCA is fitted to `fit_latents` (the training latents, so that
    its axes are the explorer's first two sliders) or to the latents themselves; t-SNE only ever sees
    the points it places."""
    z = np.asarray(latents, dtype=np.float64)
    if method not in PROJECTIONS:
        raise InputError(f"projection {method!r}: choose {' or '.join(PROJECTIONS)}")
    if len(z) < 3:
        raise InputError(f"need at least 3 latents to draw a map, got {len(z)}")
    if method == "pca":
        return PCA(n_components=2).fit(z if fit_latents is None else np.asarray(fit_latents, np.float64)).transform(z)
    # Perplexity must stay below the number of points; 30 is scikit-learn's default for larger sets.
    return TSNE(n_components=2, perplexity=min(30.0, (len(z) - 1) / 3), init="pca", random_state=seed).fit_transform(z)


def spread_out(coords, n):
    """Indices of n points far from each other (greedy farthest-point order from the most central), so
    that thumbnails cover the whole map instead of its densest corner."""
    coords = np.asarray(coords, dtype=np.float64)
    chosen = [int(np.argmin(((coords - coords.mean(0)) ** 2).sum(1)))]
    distance = ((coords - coords[chosen[0]]) ** 2).sum(1)
    while len(chosen) < min(n, len(coords)):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, ((coords - coords[chosen[-1]]) ** 2).sum(1))
    return chosen


def plot_latent_map(coords, labels, images, classes, path, title, thumbnails=12, axes=("", "")):
    """The map as a PNG: one dot per galaxy coloured by class, and a few galaxies drawn at their dots."""
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(8, 7))
    for i, k in enumerate(classes):
        at = labels == k
        ax.scatter(coords[at, 0], coords[at, 1], s=10, alpha=0.7, color=CLASS_COLOURS[i % 10],
                   label=f"{k} {CLASS_NAMES[k]} ({at.sum()})")
    for i in spread_out(coords, thumbnails):
        colour = CLASS_COLOURS[list(classes).index(int(labels[i])) % 10]
        thumbnail = OffsetImage(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), zoom=0.75)
        ax.add_artist(AnnotationBbox(thumbnail, coords[i], frameon=True, pad=0.15,
                                     bboxprops={"edgecolor": colour, "linewidth": 2}))
    ax.set(xlabel=axes[0], ylabel=axes[1], title=title)
    # Below the axes: inside, the legend would hide dots or thumbnails wherever it went.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(classes), fontsize=8, markerscale=2, frameon=False)
    save_figure(fig, path)


def draw_latent_map(model, galaxies, path, method="pca", seed=0, thumbnails=12):
    """The test galaxies' latent means on the map (PCA of the training latents, or t-SNE), as a PNG."""
    test_mu = encode_means(model, galaxies.test_x)
    train_mu = encode_means(model, galaxies.train_x)
    coords = project(test_mu, method, fit_latents=train_mu, seed=seed)
    if method == "pca":
        share = PCA(n_components=2).fit(train_mu.numpy()).explained_variance_ratio_
        axes = tuple(f"principal component {i + 1} ({s:.0%} of the training latents' variance)" for i, s in enumerate(share))
    else:
        axes = ("t-SNE 1", "t-SNE 2")
    plot_latent_map(coords, galaxies.test_y.numpy(), galaxies.test_x, galaxies.classes, path,
                    f"latent map of the {len(test_mu)} test galaxies ({'PCA' if method == 'pca' else 't-SNE'} "
                    f"of the {model.latent_dim}-d posterior means)", thumbnails, axes)
