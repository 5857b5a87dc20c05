"""The figures: training curves, originals above reconstructions, image grids and interpolation
strips, a grid's trade-off between reconstruction and generation; and folders of single-galaxy PNGs. Every file is written atomically, so a killed run never leaves
half a PNG."""
import math
import textwrap
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.colors import LogNorm, Normalize
from matplotlib.lines import Line2D
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
        for batch in (originals, decode_latents(model, encode_means(model, originals), labels=k)):
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


LATENT_MARKERS = "osD^vP*Xhp"  # one per latent size, smallest first
TRADE_OFF_PANELS = (("fid", "N(0, I) samples"), ("class_fid", "class-sampler samples"))


def plot_trade_off(records, path, pick=None):
    """What a grid trades: each configuration a point, its validation SSIM (reconstruction, higher is better)
    against the FID of what it generates (lower is better), one panel for N(0, I) samples ("fid") and one for
    the class sampler's ("class_fid") where any record has it; coloured by beta (log scale), marked by latent
    size, hollow where the loss was MSE, the configuration `pick` (an id: the grid's choice) ringed in red.
    `records`: plain dicts with id, beta, latent, val_ssim, fid and optionally class_fid and recon_loss; one
    without val_ssim or fid (pruned, failed) is left out. Returns how many points were drawn; with none, no
    file is written."""
    def usable(record, key):
        return all(isinstance(record.get(k), (int, float)) and math.isfinite(record[k]) for k in ("val_ssim", key))
    panels = [(key, what) for key, what in TRADE_OFF_PANELS if any(usable(r, key) for r in records)]
    if not panels or not any(usable(r, "fid") for r in records):
        return 0
    betas = sorted({r["beta"] for r in records if usable(r, "fid")})
    norm = (LogNorm(betas[0] / 2, betas[-1] * 2) if betas[0] == betas[-1] else LogNorm(betas[0], betas[-1])) \
        if betas[0] > 0 else Normalize(betas[0], max(betas[-1], betas[0] + 1e-9))
    latents = sorted({r["latent"] for r in records if usable(r, "fid")})
    marker = {z: LATENT_MARKERS[i % len(LATENT_MARKERS)] for i, z in enumerate(latents)}
    # constrained, not save_figure's tight layout: one colour bar beside all panels
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 1.2, 4.6), squeeze=False,
                             layout="constrained")
    drawn = set()
    for ax, (key, what) in zip(axes[0], panels):
        for r in (r for r in records if usable(r, key)):
            colour = plt.cm.viridis(norm(r["beta"]))
            hollow = r.get("recon_loss") == "mse"
            ax.scatter(r[key], r["val_ssim"], s=70, marker=marker[r["latent"]], linewidths=1.5 if hollow else 0.5,
                       facecolors="none" if hollow else [colour], edgecolors=[colour] if hollow else "black")
            if r["id"] == pick:
                ax.scatter(r[key], r["val_ssim"], s=320, facecolors="none", edgecolors="red", linewidths=2)
            drawn.add(r["id"])
        ax.set(xlabel=f"FID of {what} (lower: better generation)", ylabel="validation SSIM (higher: better "
               "reconstruction)", title=f"reconstruction against generation: {what}")
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=marker[z], color="grey", label=f"latent {z}") for z in latents]
    if pick is not None:
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=12, markerfacecolor="none",
                              markeredgecolor="red", markeredgewidth=2, label="the grid's pick"))
    if any(r.get("recon_loss") == "mse" for r in records):
        handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none", color="grey",
                              label="hollow: MSE loss"))
    axes[0, 0].legend(handles=handles, fontsize=8, loc="best")
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=list(axes[0]), label="beta")
    bar.set_ticks(betas, labels=[f"{b:g}" for b in betas])
    bar.minorticks_off()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return len(drawn)
