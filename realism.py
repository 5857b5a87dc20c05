"""How the galaxies look: a preview of any data source, and how far the embedded procedural set is from
real galaxies, per class: the FID at equal N, statmorph's statistics of the galaxies (morphometry.py, W1 as a
multiple of the real folder's half against half) and the survey statistics of morphology.py (sky, seeing,
field sources, colour and the looks statmorph does not measure).

    python realism.py --compare ../shared/reference/galaxy10_decals_sample   # writes comparison.png + .json
    python realism.py embedded --preview preview.png                         # a few galaxies per class
"""
import argparse
import functools
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import fid
import morphology
import morphometry
from classes import CLASS_NAMES, DEFAULT_CLASSES
from cli import InputError, Parser, exit_on_input_error
from data import load_galaxies, read_image_folder
from files import atomic_output
from plots import save_figure

COMPARE_DRAWS = 10   # embedded draws averaged by --compare
COMPARE_MIN_PER_CLASS = 10   # fewer, and an FID (and its half-against-half floor) says nothing


def compare(folder, classes=DEFAULT_CLASSES, max_per_class=None, seed=0, device=None, progress=True):
    """How far the embedded set is from the real galaxies in `folder` (one subfolder per class), per
    class: FID of embedded test galaxies against the folder's at the same N (the folder's count, capped
    by the embedded test split), the floor (FID of one half of the folder against the other half), and
    the medians of morphology's statistics on both sides, and statmorph's (morphometry) with their W1 / floor:
    the first embedded draw's first half against the folder's second half, over the folder's first half
    against its second (N / 2 a side, as the FID's floor). Returns a JSON-ready dict and the images."""
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
                          "statistics": {k: {"real": real_s[k], "embedded": emb_s[k]} for k in real_s},
                          "morphometry": compare_morphometry(real, emb[:n], progress, f"statmorph, class {c}")}
        shown[c] = (real, emb[:n])
    all_real, all_emb = np.concatenate(all_real), np.concatenate(all_emb, axis=1)
    report["overall"] = {"n": len(all_real), **summary([fid.feature_distance(all_real, f) for f in all_emb])}
    return {"folder": str(folder), "seed": seed, "classes": report}, shown


def compare_morphometry(real, embedded, progress=True, desc="statmorph"):
    """statmorph's statistics of n real and n embedded galaxies: per statistic the medians, the embedded
    set's first half's W1 to the real second half, as a multiple of the real first half's (morphometry.compare),
    and each side's failures."""
    half, take = len(real) // 2, morphometry.take
    both = morphometry.measure_all(np.concatenate([real, embedded]), progress, desc)
    real_t, emb_t = take(both, slice(0, len(real))), take(both, slice(len(real), None))
    first, second = slice(0, half), slice(half, 2 * half)
    distance = morphometry.compare(take(emb_t, first), take(real_t, second), take(real_t, first), n=half, draws=1)
    median = lambda t, name: float(np.median(morphometry.good(t, name))) if len(morphometry.good(t, name)) else None
    return {"n": half, "failures": {"real": morphometry.failures(real_t), "embedded": morphometry.failures(emb_t)},
            "mean_ratio": distance["mean_ratio"],
            "statistics": {name: {"real": median(real_t, name), "embedded": median(emb_t, name),
                                  "ratio": distance[name]["ratio"]} for name in morphometry.NAMES}}


def print_comparison(result):
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
    shapes = {k: result["classes"][k]["morphometry"] for k in classes}
    print(f"\nstatmorph, real / embedded medians (W1 / floor) {'':<0}" + "".join(f"{'class ' + k:>27}" for k in classes))
    number = lambda v, f: "-" if v is None else format(v, f)
    for name, what in morphometry.STATISTICS:
        cells = "".join(f"{number(shapes[k]['statistics'][name]['real'], '>8.3g')} /"
                        f"{number(shapes[k]['statistics'][name]['embedded'], '>8.3g')}"
                        f"{'(' + number(shapes[k]['statistics'][name]['ratio'], '.2f') + ')':>9}" for k in classes)
        print(f"{name:<22}{what[:22]:<22}{cells}")
    print(f"{'mean W1 / floor':<44}" + "".join(f"{number(shapes[k]['mean_ratio'], '>26.2f')} " for k in classes))
    print(f"{'failures real / embedded':<44}" + "".join(
        f"{str(shapes[k]['failures']['real']) + ' / ' + str(shapes[k]['failures']['embedded']):>26} " for k in classes)
        + f"  (of {shapes[classes[0]]['n'] * 2} a side; W1 at N = {shapes[classes[0]]['n']} halves)")


def draw_comparison(shown, out, per_class=8):
    """Per class, a row of real galaxies above a row of embedded ones."""
    fig, axes = plt.subplots(2 * len(shown), per_class, squeeze=False, figsize=(1.2 * per_class, 2.6 * len(shown)))
    for i, (c, pair) in enumerate(shown.items()):
        for row, images, label in zip(axes[2 * i:2 * i + 2], pair, ("real", "embedded")):
            for j, ax in enumerate(row):
                ax.set_axis_off()
                if j < len(images):
                    ax.imshow(images[j].transpose(1, 2, 0))
            row[0].set_title(f"{c} {CLASS_NAMES[c]}: {label}", loc="left", fontsize=9)
    save_figure(fig, out, dpi=100)


def draw_preview(galaxies, out, per_class=8):
    """A labelled grid: one row per class, the first per_class training galaxies of each."""
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
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", default=None, help="--preview's data: Galaxy10 .h5, image folder "
                        "or 'embedded' (default: data/Galaxy10_DECals.h5 if present, else the embedded set)")
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
    if not (args.compare or args.preview):
        raise InputError("nothing to do: give --compare DIR and/or --preview OUT.png")
    if args.compare:
        result, shown = compare(args.compare, tuple(sorted(args.classes)), args.max_per_class, args.seed, args.device)
        print_comparison(result)
        out = Path(args.out)
        with atomic_output(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        draw_comparison(shown, out)
        print(f"wrote {out} and {out.with_suffix('.json')}")
    if args.preview:
        draw_preview(load_galaxies(args.source, args.classes, args.max_per_class, args.seed), args.preview)
        print(f"wrote {args.preview}")


if __name__ == "__main__":
    main()
