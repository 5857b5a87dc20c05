"""The figures: training curves, originals above reconstructions, image grids and interpolation
strips; and folders of single-galaxy PNGs. Every file is written atomically, so a killed run never leaves
half a PNG."""
import math
import textwrap
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from classes import CLASS_NAMES
from files import atomic_output
from images import to_uint8
from model import decode_latents, encode_means
from morphometry import STATISTICS


def save_figure(fig, path, dpi=110):
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def plot_history(history, run_dir):
    """ssim_kld.png (SSIM and KLD per epoch) and loss.png (train and validation loss per epoch)."""
    epochs = [h["epoch"] for h in history]

    def plot(ax, key, ylabel, title):
        for split, name in (("train", "train"), ("val", "validation")):
            ax.plot(epochs, [h[f"{split}_{key}"] for h in history], "o-", label=name)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()

    fig, (ax_ssim, ax_kld) = plt.subplots(1, 2, figsize=(10, 4))
    plot(ax_ssim, "ssim", "SSIM", "SSIM per epoch")
    plot(ax_kld, "kld", "KLD (nats per image)", "KLD per epoch")
    ax_kld.set_yscale("log")  # with beta near 1e-4 the first epochs' KLD is orders of magnitude larger
    save_figure(fig, run_dir / "ssim_kld.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    plot(ax, "loss", "loss per image", "w(1 - SSIM) + beta KLD per epoch")
    save_figure(fig, run_dir / "loss.png")


@torch.no_grad()
def plot_reconstructions(model, images, labels, path, split="validation", per_class=8):
    """Originals above their reconstructions (the posterior mean), one row pair per class."""
    classes = labels.unique().tolist()
    per_class = min(per_class, max((labels == k).sum().item() for k in classes))
    rows = []
    for k in classes:
        originals = images[labels == k][:per_class]
        for batch in (originals, decode_latents(model, encode_means(model, originals))):
            rows.append(torch.cat([batch, torch.zeros(per_class - len(batch), *batch.shape[1:])]))
    grid = make_grid(torch.cat(rows), nrow=per_class, padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(per_class * 0.9 + 2, len(rows) * 0.9 + 0.4))
    ax.imshow(grid.permute(1, 2, 0).clamp(0, 1).numpy())
    step = images.shape[-1] + 2
    ax.set_yticks([step * (i + 0.5) for i in range(len(rows))],
                  [f"{k} {CLASS_NAMES[k]}" if i % 2 == 0 else "reconstruction"
                   for k in classes for i in range(2)], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"{split} galaxies (odd rows) and their reconstructions (from the posterior mean)", fontsize=9)
    save_figure(fig, path)


def show(ax, image, title=None):
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.axis("off")
    ax.set_title(title or "", fontsize=8)


def plot_grid(images, path, title):
    nrow = math.ceil(math.sqrt(len(images)))
    width = max(4.5, 1 + 0.9 * nrow)  # room for a two-line title even for a few images
    fig, ax = plt.subplots(figsize=(width, 1.5 + 0.9 * math.ceil(len(images) / nrow)))
    show(ax, make_grid(images, nrow=nrow, padding=2, pad_value=1.0), textwrap.fill(title, int(width * 13)))
    save_figure(fig, path)


def plot_interpolation(original_a, decoded, original_b, labels, path):
    fig, axes = plt.subplots(1, len(decoded) + 2, figsize=(1.2 * (len(decoded) + 2), 1.8))
    show(axes[0], original_a, f"original\n{labels[0]}")
    for i, (ax, image) in enumerate(zip(axes[1:-1], decoded)):
        show(ax, image, f"decoded\nt = {i / (len(decoded) - 1):.2f}")
    show(axes[-1], original_b, f"original\n{labels[1]}")
    save_figure(fig, path)


def save_pngs(images, folder, prefix):
    """Each image as its own 64x64 PNG, folder/prefix_0000.png on, so that a folder of them can be read by
    fid.py and other tools; returns how many."""
    pixels = to_uint8(images)
    for i, image in enumerate(pixels):
        with atomic_output(Path(folder) / f"{prefix}_{i:04d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    return len(pixels)


def plot_morphology(shapes, path, sampler=None, statistics=None):
    """morphology.png: per class (rows) and statistic (columns), the cumulative distribution of the real
    held-out galaxies against the reconstructions and one sampler's class samples (`sampler`, default the
    first measured), with each one's W1 / floor ratio in the title. `shapes` is evaluation.json's
    "morphology" (evaluation.morphology_report)."""
    statistics = statistics or STATISTICS
    values = shapes["values"]
    sampler = sampler or next(iter(shapes["samplers"]), None)
    sets = [("real", values["real"], "black", None), ("reconstructions", values["reconstructions"], "tab:blue",
                                                      shapes["reconstructions"])]
    if sampler is not None:
        sets.append((f"{sampler} samples", values[f"samplers.{sampler}"], "tab:orange", shapes["samplers"][sampler]))
    classes = list(values["real"])
    fig, axes = plt.subplots(len(classes), len(statistics), figsize=(2.3 * len(statistics), 2.4 * len(classes)),
                             squeeze=False)
    for row, k in zip(axes, classes):
        for ax, (name, what) in zip(row, statistics):
            ratios = []
            for label, by_class, colour, report in sets:
                v = np.sort([x for x in by_class[k][name] if x is not None])
                if len(v):
                    ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", color=colour, lw=1.2, label=label)
                if report is not None and report[k][name]["ratio"] is not None:
                    ratios.append(f"{report[k][name]['ratio']:.2f}")
            ax.set_title(f"{name}\nW/floor {' / '.join(ratios)}", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel(f"class {k} {CLASS_NAMES[int(k)]}\ncumulative share", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle("statmorph statistics: real held-out galaxies against the reconstructions"
                 + (f" and the {sampler} class samples" if sampler else "") + " (W/floor: reconstructions / samples)",
                 fontsize=10)
    save_figure(fig, path)
