"""Look at a trained galaxy VAE: reconstructions, samples, the 2 -> 9 interpolation, class-targeted
galaxies and the test metrics; several actions may be given at once:

  python generate.py --reconstruct --samples 64 --interpolate 2 9 --class 6
  python generate.py --evaluate --checkpoint runs/20250101-120000

The checkpoint defaults to the newest best.pt under runs/; figures and evaluation.json go into its run
folder (or --out). An unconditional VAE has no class input, so --class fits a prior (a Gaussian mixture
by default) to the encoder's training latents of that class and decodes samples drawn from it.

Cost of --evaluate: Inception-v3 runs at only ~4-7 images/s on a 2-core CPU, and each of the five FIDs
adds ~1-2 s of 2048-d linear algebra. With n = min(N, test images) and n_k = min(N, test images of class
k), it embeds 2n + sum(n_k) generated and n + sum(n_k) real images (the real ones once: cached). On the
default data (549 test images, 183 per class) the default N = 256 takes ~1900 images, ~5-8 minutes on a
CPU. A reportable run uses the whole test split (--num-samples 549, larger is capped): ~2700 images,
~8-12 minutes on a CPU the first time, about a minute on a GPU. Compare FIDs only at equal N.
"""
import argparse
import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch

import fid
from data import CLASS_NAMES, InputError, Parser, atomic_output, checkpoint_galaxies, exit_on_input_error
from judge import classify, load_or_train_classifier
from latent_map import PROJECTIONS, draw_latent_map
from losses import ssim
from model import decode_latents, encode_means, find_latest_checkpoint, load_checkpoint, pick_device
from plots import plot_grid, plot_interpolation, plot_reconstructions
from priors import PRIORS, fit_class_prior, sample_prior


# ---------------------------------------------------------------- classes, picks and paths

def check_class(k, classes):
    if k not in CLASS_NAMES:
        raise InputError(f"class {k}: not a Galaxy10 class id (0-9)")
    if k not in classes:
        raise InputError(f"class {k} ({CLASS_NAMES[k]}): not in this checkpoint's data "
                         f"(classes {', '.join(map(str, classes))})")


# ---------------------------------------------------------------- latents and priors

def interpolate_latents(z_a, z_b, steps=8):
    """`steps` evenly spaced points on the line from z_a to z_b, both ends included exactly."""
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype).unsqueeze(1)
    return (1 - t) * z_a + t * z_b


def pick_of_class(labels, k, index=None, seed=0):
    """Position in `labels` of the index-th galaxy of class k (a seeded random one when index is None)."""
    positions = torch.nonzero(labels == k).flatten()
    if index is None:
        index = int(np.random.default_rng(seed + k).integers(len(positions)))
    if not 0 <= index < len(positions):
        raise InputError(f"--index {index}: class {k} has {len(positions)} test galaxies (0 to {len(positions) - 1})")
    return int(positions[index])


def draw_interpolation(model, galaxies, a, b, index=None, steps=8, seed=0):
    """(original A, decoded latent path, original B) from a test galaxy of class a to one of class b."""
    i, j = index or (None, None)
    x, y = galaxies.test_x, galaxies.test_y
    originals = x[[pick_of_class(y, a, i, seed), pick_of_class(y, b, j, seed)]]
    mu = encode_means(model, originals)
    return originals[0], decode_latents(model, interpolate_latents(mu[0], mu[1], steps)), originals[1]


def draw_class(model, galaxies, k, n, prior="gmm", components=4, seed=0):
    """n decoded galaxies from a prior fitted to the training latents of class k, and that prior."""
    fitted = fit_class_prior(encode_means(model, galaxies.train_x[galaxies.train_y == k]), prior, components, seed)
    return decode_latents(model, sample_prior(fitted, n, model.latent_dim, seed)), fitted


# ---------------------------------------------------------------- test metrics

@torch.no_grad()
def reconstruction_ssim(model, images, labels, classes, batch_size=256):
    """Test SSIM of reconstructions from the posterior mean: overall and per class."""
    per_image = torch.cat([ssim(decode_latents(model, encode_means(model, b)), b, per_image=True)
                           for b in images.split(batch_size)])
    return {"mean": per_image.mean().item(), "n": len(images),
            "per_class": {str(k): per_image[labels == k].mean().item() for k in classes}}


def statistics_of(images, inception, device, progress):
    return fid.calculate_statistics(fid.get_activations(images, inception, 50, device, progress))


def real_class_statistics(galaxies, k, n, seed, inception, device, progress):
    """(mu, sigma) of n test galaxies of class k (a seeded subset), cached beside fid.py's statistics."""
    path = fid.statistics_cache_path(galaxies, f"test-class{k}", n, seed)
    try:
        return fid.load_statistics(path)[:2]
    except InputError:  # not there yet, or unreadable: compute it
        pass
    x = galaxies.test_x[galaxies.test_y == k]
    x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]]
    mu, sigma = statistics_of(x, inception, device, progress)
    fid.save_statistics(path, mu, sigma, n=n, key=galaxies.key, split=f"test-class{k}", seed=seed)
    return mu, sigma


def evaluate(model, galaxies, num_samples=256, seed=0, prior="gmm", components=4, classifier_epochs=5,
             device="cpu", progress=True):
    """All test metrics as one JSON-ready dict. Each FID compares as many generated images as real ones,
    n = min(N, real images available), and records n."""
    classes, d, test_x, test_y = list(galaxies.classes), model.latent_dim, galaxies.test_x, galaxies.test_y
    train_mu = encode_means(model, galaxies.train_x)
    inception = fid.load_inception(device=device)

    def fid_of(latents, real):
        generated = statistics_of(decode_latents(model, latents), inception, device, progress)
        return float(fid.frechet_distance(*generated, *real))

    n = min(num_samples, len(test_x))
    real = fid.real_statistics(galaxies, "test", n, seed, device=device, progress=progress, model=inception)
    overall_prior = fit_class_prior(train_mu, prior, components, seed)
    fids = {"overall": {"n": n, "n_real": n, "standard_normal": fid_of(sample_prior(None, n, d, seed), real),
                        "fitted_prior": fid_of(sample_prior(overall_prior, n, d, seed), real),
                        "components": overall_prior.n_components}, "per_class": {}}
    classifier = load_or_train_classifier(galaxies, classifier_epochs, seed, device, progress=progress)
    test_pred = classify(classifier, test_x, classes)
    accuracy = {"epochs": classifier_epochs, "test": (test_pred == test_y).float().mean().item(),
                "test_per_class": {}, "targeted_samples_per_class": {}, "n_targeted_per_class": num_samples}
    for k in classes:
        class_prior = fit_class_prior(train_mu[galaxies.train_y == k], prior, components, seed)
        z = sample_prior(class_prior, num_samples, d, seed)
        n_k = min(num_samples, int((test_y == k).sum()))
        # A covariance needs two images at least; fewer (a tiny test split) gives no per-class FID.
        real_k = real_class_statistics(galaxies, k, n_k, seed, inception, device, progress) if n_k >= 2 else None
        fids["per_class"][str(k)] = {"n": n_k, "n_real": n_k, "components": class_prior.n_components,
                                     "fitted_prior": fid_of(z[:n_k], real_k) if real_k else None}
        accuracy["test_per_class"][str(k)] = (test_pred[test_y == k] == k).float().mean().item()
        predicted = classify(classifier, decode_latents(model, z), classes)
        accuracy["targeted_samples_per_class"][str(k)] = (predicted == k).float().mean().item()
    accuracy["targeted_samples"] = float(np.mean(list(accuracy["targeted_samples_per_class"].values())))
    return {"num_samples": num_samples, "seed": seed, "prior": prior,
            "ssim": reconstruction_ssim(model, test_x, test_y, classes), "fid": fids, "classifier_accuracy": accuracy}


def format_table(result, classes):
    """The evaluation as a plain-text table: one column overall, one per class."""
    def cell(value):
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    fids, acc = result["fid"], result["classifier_accuracy"]
    rows = [("test SSIM (posterior mean)", result["ssim"]["mean"], result["ssim"]["per_class"]),
            ("FID, N(0, I) samples", fids["overall"]["standard_normal"], {}),
            (f"FID, fitted {result['prior']} samples", fids["overall"]["fitted_prior"],
             {k: v["fitted_prior"] for k, v in fids["per_class"].items()}),
            ("  images per FID side", fids["overall"]["n"], {k: v["n"] for k, v in fids["per_class"].items()}),
            ("classifier accuracy, test split", acc["test"], acc["test_per_class"]),
            ("classifier accuracy, class samples", acc["targeted_samples"], acc["targeted_samples_per_class"])]
    lines = [f"{'':36}{'overall':>10}" + "".join(f"{f'{k} {CLASS_NAMES[k]}'[:20]:>22}" for k in classes)]
    for name, overall, per_class in rows:
        lines.append(f"{name:36}{cell(overall):>10}" + "".join(f"{cell(per_class.get(str(k))):>22}" for k in classes))
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest runs/**/best.pt)")
    p.add_argument("--out", help="folder for figures and evaluation.json (default: the checkpoint's folder)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of every sample, random pick and prior fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("actions (any combination)")
    g.add_argument("--reconstruct", action="store_true", help="test galaxies above their reconstructions, per class")
    g.add_argument("--samples", type=int, metavar="N", help="N galaxies decoded from z ~ N(0, I)")
    g.add_argument("--interpolate", type=int, nargs=2, metavar=("A", "B"), help="a test galaxy of class A "
                   "morphing into one of class B, e.g. --interpolate 2 9")
    g.add_argument("--class", dest="target_class", type=int, metavar="K", help="galaxies of class K")
    g.add_argument("--latent-map", nargs="?", const="pca", metavar="pca|tsne", help="latent_map_pca.png: the test "
                   "galaxies' latent means in 2-D by class, with thumbnails (--latent-map tsne: t-SNE)")
    g.add_argument("--evaluate", action="store_true", help="test SSIM, FID and classifier accuracy: a table "
                   "and evaluation.json (cost: see above)")
    o = p.add_argument_group("options of the actions")
    o.add_argument("--index", type=int, nargs=2, metavar=("I", "J"), help="--interpolate: the I-th test galaxy "
                   "of class A and the J-th of class B (default: seeded random ones)")
    o.add_argument("--steps", type=int, default=8, help="--interpolate: latent points, both ends included")
    o.add_argument("--n", type=int, default=16, help="--class: galaxies to draw")
    o.add_argument("--prior", default="gmm", help="--class, --evaluate: the prior fitted to training latents, "
                   "gmm (a Gaussian mixture) or gaussian (one full-covariance Gaussian)")
    o.add_argument("--components", type=int, default=4, help="most mixture components (fewer for few latents)")
    o.add_argument("--num-samples", type=int, default=256, help="--evaluate: N, images per FID (capped by "
                   "the real images; compare FIDs only at equal N)")
    o.add_argument("--classifier-epochs", type=int, default=5, help="--evaluate: epochs of the class-check CNN")
    return p.parse_args(argv)


def check_args(args):
    if not (args.reconstruct or args.samples is not None or args.interpolate or args.target_class is not None
            or args.evaluate or args.latent_map):
        raise InputError("nothing to do: give --reconstruct, --samples N, --interpolate A B, --class K, "
                         "--latent-map and/or --evaluate")
    if args.prior not in PRIORS:
        raise InputError(f"--prior {args.prior}: choose {' or '.join(PRIORS)}")
    if args.latent_map not in (None, *PROJECTIONS):
        raise InputError(f"--latent-map {args.latent_map}: choose {' or '.join(PROJECTIONS)}")
    for flag, value, least in (("--samples", args.samples, 1), ("--steps", args.steps, 2), ("--n", args.n, 1),
                               ("--components", args.components, 1), ("--num-samples", args.num_samples, 2),
                               ("--classifier-epochs", args.classifier_epochs, 1)):
        if value is not None and value < least:
            raise InputError(f"{flag} {value}: must be at least {least}")
    if args.index and not args.interpolate:
        raise InputError("--index I J: only with --interpolate A B")


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    device, progress = pick_device(args.device), not args.quiet
    path = Path(args.checkpoint) if args.checkpoint else find_latest_checkpoint()
    model, checkpoint = load_checkpoint(path, device)
    path = path / "best.pt" if path.is_dir() else path
    out = Path(args.out) if args.out else path.parent
    for k in (args.interpolate or []) + ([] if args.target_class is None else [args.target_class]):
        check_class(k, tuple(checkpoint["config"]["classes"]))  # before the data is loaded: fail fast
    needs_data = (args.reconstruct or args.interpolate or args.target_class is not None or args.evaluate
                  or args.latent_map)
    galaxies = checkpoint_galaxies(checkpoint, progress) if needs_data else None
    if args.reconstruct:
        plot_reconstructions(model, galaxies.test_x, galaxies.test_y, out / "reconstructions_test.png", "test")
        print(f"wrote {out / 'reconstructions_test.png'}")
    if args.samples:
        images = decode_latents(model, sample_prior(None, args.samples, model.latent_dim, args.seed))
        plot_grid(images, out / "samples.png", f"{args.samples} galaxies decoded from z ~ N(0, I) (seed {args.seed})")
        print(f"wrote {out / 'samples.png'}")
    if args.interpolate:
        (a, b), name = args.interpolate, f"interpolation_{args.interpolate[0]}_{args.interpolate[1]}.png"
        strip = draw_interpolation(model, galaxies, a, b, args.index, args.steps, args.seed)
        plot_interpolation(*strip, (f"{a} {CLASS_NAMES[a]}", f"{b} {CLASS_NAMES[b]}"), out / name)
        print(f"wrote {out / name}")
    if args.target_class is not None:
        k, name = args.target_class, f"class_{args.target_class}_{args.prior}.png"
        images, fitted = draw_class(model, galaxies, k, args.n, args.prior, args.components, args.seed)
        plot_grid(images, out / name, f"class {k} {CLASS_NAMES[k]}: {args.prior} prior ({fitted.n_components} "
                  f"component(s)) fitted to its training latents (seed {args.seed})")
        print(f"wrote {out / name}")
    if args.latent_map:
        name = f"latent_map_{args.latent_map}.png"
        draw_latent_map(model, galaxies, out / name, args.latent_map, args.seed)
        print(f"wrote {out / name}")
    if args.evaluate:
        result = {"checkpoint": str(path), "data": {"source": galaxies.source, "key": galaxies.key}} | evaluate(
            model, galaxies, args.num_samples, args.seed, args.prior, args.components, args.classifier_epochs,
            device, progress)
        print(format_table(result, galaxies.classes))
        with atomic_output(out / "evaluation.json") as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(f"wrote {out / 'evaluation.json'}")


if __name__ == "__main__":
    main()
