"""Look at a trained galaxy VAE: reconstructions, samples, the 2 -> 9 interpolation, class-targeted
galaxies and the test metrics; several actions may be given at once:

  python generate.py --reconstruct --samples 64 --interpolate 2 9 --class 6
  python generate.py --evaluate --checkpoint runs/20250101-120000

The checkpoint defaults to the newest best.pt under runs/; figures and evaluation.json go into its run
folder (or --out). An unconditional VAE has no class input, so --class fits a sampler (--prior: a
Gaussian mixture per class by default, or a second-stage VAE or a flow) to the encoder's training
latents and decodes samples of class K drawn from it; --save-images DIR also writes them as PNGs. Every
sampler's latents (--samples, --class, --evaluate) take --refine-steps K decode-encode round trips
(model.refine_latents), which move draws that fell between the galaxies to where the encoder puts
galaxies. It helps some models and harms others, so by default (auto) the first draw from a checkpoint
chooses 0 or 1 by the class sampler's FID on the validation split and keeps the choice beside it.

--evaluate decomposes FID against the test split, at equal N on both sides, per class (N / classes each)
and pooled: the floor (real training galaxies), reconstructions of test galaxies (what the decoder can
express) and each sampler; and it reports the accuracy of a judge chosen by validation accuracy alone on
real test galaxies, on their reconstructions and on each sampler's class-targeted samples, and whether each
sampler copies the training galaxies (copying_z: nearer them than new galaxies lie). Cost:
Inception-v3 runs at only ~4-7 images/s on a 2-core CPU; it embeds N real test and N real training
galaxies once (cached), then N reconstructions and N samples per sampler; the judge trains once per data
set (cached), each fitted sampler takes seconds to a minute. On the default data (183 test galaxies per
class) --num-samples 549 with the four samplers embeds ~3,300 generated images: ~10-15 minutes on a CPU,
about a minute on a GPU. Compare FIDs only at equal N.
"""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import mannwhitneyu

import fid
from data import CLASS_NAMES, InputError, Parser, atomic_output, checkpoint_galaxies, exit_on_input_error
from judge import classify, load_or_train_classifier
from latent_map import PROJECTIONS, draw_latent_map
from losses import ssim
from model import (DEFAULT_REFINE_STEPS, checkpoint_file, decode_latents, encode_means, find_latest_checkpoint,
                   load_checkpoint, pick_device, refine_latents)
from plots import plot_grid, plot_interpolation, plot_reconstructions
from priors import DEFAULT_PRIOR, PRIORS, NormalPrior, check_kind, fit_prior
from refine import REFINE_RECORD, parse_refine_steps, resolve_refine_steps


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


def draw_class(model, galaxies, k, n, prior=DEFAULT_PRIOR, components=4, seed=0, prior_epochs=None,
               refine_steps=DEFAULT_REFINE_STEPS):
    """n decoded galaxies of class k from a prior fitted to the training latents (its draws refined by
    refine_steps decode-encode round trips), and that prior."""
    fitted = fit_prior(prior, encode_means(model, galaxies.train_x), galaxies.train_y, seed, components, prior_epochs)
    return decode_latents(model, refine_latents(model, fitted.sample(n, seed, label=k), refine_steps)), fitted


def save_images(images, folder, prefix):
    """Each image as its own 64x64 PNG, folder/prefix_0000.png on, each written to a temporary name and
    renamed, so a folder of them can be read by fid.py and other tools."""
    folder = Path(folder)
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, image in enumerate(pixels):
        with atomic_output(folder / f"{prefix}_{i:04d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    return len(pixels)


def check_writable_folder(folder, flag="--save-images"):
    """Make `folder` (and its parents) and prove a file can be written there; else InputError, before any
    work is done."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise InputError(f"{flag} {folder}: cannot write there ({e.strerror or type(e).__name__})") from None


# ---------------------------------------------------------------- test metrics

@torch.no_grad()
def reconstruction_ssim(model, images, labels, classes, batch_size=256):
    """Test SSIM of reconstructions from the posterior mean: overall and per class."""
    per_image = torch.cat([ssim(decode_latents(model, encode_means(model, b)), b, per_image=True)
                           for b in images.split(batch_size)])
    return {"mean": per_image.mean().item(), "n": len(images),
            "per_class": {str(k): per_image[labels == k].mean().item() for k in classes}}


def nearest_distances(points, reference, batch_size=1024):
    """Each point's Euclidean distance to its nearest point in `reference` (both N x d). Computed directly,
    not through the matrix product cdist uses for large sets, which rounds a copy's 0 to ~1e-3."""
    return torch.cat([torch.cdist(b, reference, compute_mode="donot_use_mm_for_euclid_dist").min(1).values
                      for b in points.split(batch_size)]).numpy()


def copying_z(generated, held_out):
    """Meehan, Chaudhuri & Dasgupta 2020 ("A non-parametric test to detect data-copying in generative
    models"), their Z_U in one cell: the Mann-Whitney U of the generated points' distances to the training
    set against held-out points' distances, standardised. Near 0: the generated galaxies lie as far from
    the training galaxies as new galaxies do; far below 0 (the paper's data-copying): nearer, copies;
    above 0: farther. Far below 0 can also mean samples crowded into the data's dense middle, where every
    point has near neighbours: read it beside the ratio of the median distances."""
    m, n = len(generated), len(held_out)
    u = mannwhitneyu(np.asarray(generated), np.asarray(held_out)).statistic
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))


def judge_accuracy(judge, images, labels, classes):
    """Accuracy of the judge on images of known class: one key per class id and `overall`, the mean of the
    classes (they are balanced)."""
    predicted = classify(judge, images, classes)
    result = {str(k): (predicted[labels == k] == k).float().mean().item() for k in classes}
    return {"overall": float(np.mean(list(result.values())))} | result


def evaluate(model, galaxies, num_samples=256, seed=0, prior=DEFAULT_PRIOR, samplers=PRIORS, components=4,
             judge_epochs=30, prior_epochs=None, device="cpu", progress=True, refine_steps=DEFAULT_REFINE_STEPS,
             split="test"):
    """All metrics on a held-out split (the test split; "val" to choose settings without touching it) as
    one JSON-ready dict. FIDs against that split, each at equal N on both sides: n_k = min(N / classes,
    held-out and training galaxies of class k) per class, and the classes pooled (n = sum of n_k) overall.
    The floor is real training galaxies, then reconstructions of the held-out galaxies, then each sampler's
    class-targeted samples (N(0, I) has no classes: overall only), every sampler's draws refined by
    refine_steps decode-encode round trips.
    Copying, per sampler: the latents of the FID's samples against the held-out galaxies' latents (the same
    n_k of each class), each point's distance to the nearest training galaxy's latent (copying_z)."""
    classes, (held_x, held_y) = list(galaxies.classes), galaxies.split(split)
    inception = fid.load_inception(device=device)

    def acts_of(images):
        return fid.get_activations(images, inception, 50, device, progress)

    counts = fid.fid_counts(galaxies, split, num_samples)
    real = {k: fid.real_activations(galaxies, split, k, n, seed, inception, device, progress) for k, n in counts.items()}
    floor = {k: fid.real_activations(galaxies, "train", k, n, seed, inception, device, progress) for k, n in counts.items()}
    held_mu = encode_means(model, held_x)
    held_recon = decode_latents(model, held_mu)
    subsets = {k: fid.class_subset(held_y, k, n, seed) for k, n in counts.items()}  # the galaxies the FID sees
    recon = {k: acts_of(held_recon[subset]) for k, subset in subsets.items()}
    fids = {"floor": fid.fid_table(floor, real), "reconstructions": fid.fid_table(recon, real), "samplers": {}}

    train_mu, fit_seconds, class_samples = encode_means(model, galaxies.train_x), {}, {}
    held_out = nearest_distances(torch.cat([held_mu[subset] for subset in subsets.values()]), train_mu)
    copying = {"held_out_median": float(np.median(held_out)), "samplers": {}}

    def copying_of(latents):
        distances = nearest_distances(latents, train_mu)
        return {"z": copying_z(distances, held_out), "median_ratio": float(np.median(distances) / np.median(held_out))}

    for kind in samplers:
        fitted = fit_prior(kind, train_mu, galaxies.train_y, seed, components, prior_epochs)
        fit_seconds[kind] = round(fitted.fit_seconds, 2)
        if kind == "normal":  # no classes: as many N(0, I) galaxies as all classes' real ones together
            latents = refine_latents(model, fitted.sample(sum(counts.values()), seed), refine_steps)
            acts = acts_of(decode_latents(model, latents))
            fids["samplers"][kind] = {"overall": fid.feature_distance(acts, np.concatenate(list(real.values())))}
            copying["samplers"][kind] = copying_of(latents)
            continue
        # num_samples galaxies per class for the judge; the first n_k of them for the FID.
        latents = {k: refine_latents(model, fitted.sample(num_samples, seed, label=k), refine_steps) for k in classes}
        samples = class_samples[kind] = {k: decode_latents(model, z) for k, z in latents.items()}
        fids["samplers"][kind] = fid.fid_table({k: acts_of(samples[k][:n]) for k, n in counts.items()}, real)
        copying["samplers"][kind] = copying_of(torch.cat([latents[k][:n] for k, n in counts.items()]))

    judge = load_or_train_classifier(galaxies, judge_epochs, seed, device, progress=progress)
    accuracy = {"judge_val": judge.selection["chosen"]["val_accuracy"],
                f"real_{split}": judge_accuracy(judge, held_x, held_y, classes),
                "reconstructions": judge_accuracy(judge, held_recon, held_y, classes),
                "samplers": {kind: None for kind in samplers}}
    for kind, samples in class_samples.items():
        accuracy["samplers"][kind] = judge_accuracy(judge, torch.cat(list(samples.values())),
                                                    torch.tensor(classes).repeat_interleave(num_samples), classes)
    accuracy["samples"] = accuracy["samplers"].get(prior)
    return {"split": split, "num_samples": num_samples, "seed": seed, "prior": prior,
            "ssim": reconstruction_ssim(model, held_x, held_y, classes),
            "fid": arrange_fids(fids, counts), "accuracy": accuracy, "copying": copying,
            "samplers": {"fit_seconds": fit_seconds, "prior_epochs": prior_epochs, "components": components,
                         "refine_steps": refine_steps},
            "judge": judge.selection}


def arrange_fids(fids, counts):
    """{"n", "floor", "reconstructions", "samplers": {...}} overall, and the same under per_class."""
    def at(key):
        return {"floor": fids["floor"].get(key), "reconstructions": fids["reconstructions"].get(key),
                "samplers": {kind: table.get(key) for kind, table in fids["samplers"].items()}}
    return {"n": sum(counts.values())} | at("overall") | {
        "per_class": {str(k): {"n": n} | at(k) for k, n in counts.items()}}


def format_table(result, classes):
    """The evaluation as a plain-text table: one column overall, one per class."""
    def cell(value):
        return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
    fids, acc, chosen, split = result["fid"], result["accuracy"], result["judge"]["chosen"], result.get("split", "test")
    per_class = lambda get: {str(k): get(fids["per_class"][str(k)]) for k in classes}
    rows = [(f"{split} SSIM (posterior mean)", result["ssim"]["mean"], result["ssim"]["per_class"]),
            ("images per FID side (N)", fids["n"], per_class(lambda e: e["n"])),
            ("FID floor: real training galaxies", fids["floor"], per_class(lambda e: e["floor"])),
            (f"FID reconstructions of {split} galaxies", fids["reconstructions"], per_class(lambda e: e["reconstructions"]))]
    for kind in fids["samplers"]:
        rows.append((f"FID {kind} samples ({result['samplers']['fit_seconds'][kind]:.3g} s fit)",
                     fids["samplers"][kind], per_class(lambda e: e["samplers"][kind])))
    rows += [(f"judge accuracy, real {split} galaxies", acc[f"real_{split}"]["overall"], acc[f"real_{split}"]),
             ("judge accuracy, reconstructions", acc["reconstructions"]["overall"], acc["reconstructions"])]
    for kind, table in acc["samplers"].items():
        if table is not None:
            rows.append((f"judge accuracy, {kind} class samples", table["overall"], table))
    lines = [f"{'':40}{'overall':>10}" + "".join(f"{f'{k} {CLASS_NAMES[k]}'[:20]:>22}" for k in classes)]
    for name, overall, by_class in rows:
        lines.append(f"{name[:40]:40}{cell(overall):>10}" + "".join(f"{cell(by_class.get(str(k))):>22}" for k in classes))
    lines.append(f"judge: width {chosen['width']}, epoch {chosen['epoch']}, chosen by validation accuracy "
                 f"{chosen['val_accuracy']:.4g} (class samples drawn {result['num_samples']} per class, each "
                 f"sampler's latents refined by {result['samplers']['refine_steps']} decode-encode step(s))")
    for kind, copy in result["copying"]["samplers"].items():
        lines.append(f"copying, {kind}: Z_U {copy['z']:+.1f}, median distance to the nearest training latent "
                     f"{copy['median_ratio']:.2f} x the {split} galaxies' (Z_U far below 0: nearer than new galaxies)")
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
    g.add_argument("--samples", type=int, metavar="N", help="N galaxies of any class, decoded from z ~ N(0, I) "
                   "(or from --prior)")
    g.add_argument("--interpolate", type=int, nargs=2, metavar=("A", "B"), help="a test galaxy of class A "
                   "morphing into one of class B, e.g. --interpolate 2 9")
    g.add_argument("--class", dest="target_class", type=int, metavar="K", help="--n galaxies of class K")
    g.add_argument("--latent-map", nargs="?", const="pca", metavar="pca|tsne", help="latent_map_pca.png: the test "
                   "galaxies' latent means in 2-D by class, with thumbnails (--latent-map tsne: t-SNE)")
    g.add_argument("--evaluate", action="store_true", help="test SSIM, the FID decomposition (floor, "
                   "reconstructions, each sampler) and judge accuracy: a table and evaluation.json (cost: see above)")
    o = p.add_argument_group("options of the actions")
    o.add_argument("--index", type=int, nargs=2, metavar=("I", "J"), help="--interpolate: the I-th test galaxy "
                   "of class A and the J-th of class B (default: seeded random ones)")
    o.add_argument("--steps", type=int, default=8, help="--interpolate: latent points, both ends included")
    o.add_argument("--n", type=int, default=16, help="--class: galaxies to draw")
    o.add_argument("--prior", help=f"--class, --evaluate (default {DEFAULT_PRIOR}) and --samples (default normal): "
                   "the sampler of the latents: normal (N(0, I), no classes), gmm (a Gaussian mixture per class), "
                   "vae2 (a second-stage VAE), flow (a RealNVP flow); all but normal fitted to the training latents")
    o.add_argument("--save-images", metavar="DIR", help="--class, --samples: also write each galaxy as a 64x64 "
                   "PNG into DIR (class_K_PRIOR_0000.png..., samples_PRIOR_0000.png...), e.g. for fid.py DIR test")
    o.add_argument("--split", choices=("test", "val"), default="test", help="--evaluate: the held-out split to "
                   "measure against (default test; val, to choose settings such as --refine-steps without "
                   "touching the test split: writes evaluation_val.json)")
    o.add_argument("--refine-steps", default="auto", metavar="K|auto", help="--samples, --class, --evaluate: "
                   "decode-encode round trips of every sampler's latents before they are decoded (0: as the sampler "
                   "drew them); default auto: 0 or 1, whichever gives the class sampler's samples the lower FID on "
                   f"the validation split (once per checkpoint, 2-3 minutes on a CPU; kept in {REFINE_RECORD} "
                   "beside it; see the README)")
    o.add_argument("--components", type=int, default=4, help="gmm: most components (fewer for few latents)")
    o.add_argument("--prior-epochs", type=int, help="vae2, flow: training epochs on the latents (default 200)")
    o.add_argument("--num-samples", type=int, default=256, help="--evaluate: N, images per FID side, N / classes "
                   "per class (capped by the real images; compare FIDs only at equal N)")
    o.add_argument("--samplers", nargs="+", default=list(PRIORS), metavar="PRIOR", help="--evaluate: the samplers "
                   f"to measure (default: all, {' '.join(PRIORS)})")
    o.add_argument("--judge-epochs", type=int, default=30, help="--evaluate: most epochs of each judge candidate "
                   "(the epoch kept is chosen by validation accuracy)")
    return p.parse_args(argv)


def check_args(args):
    if not (args.reconstruct or args.samples is not None or args.interpolate or args.target_class is not None
            or args.evaluate or args.latent_map):
        raise InputError("nothing to do: give --reconstruct, --samples N, --interpolate A B, --class K, "
                         "--latent-map and/or --evaluate")
    for kind in ([args.prior] if args.prior else []) + args.samplers:
        check_kind(kind)
    if args.target_class is not None and args.prior == "normal":
        raise InputError("--prior normal: N(0, I) knows no classes; for --class choose gmm, vae2 or flow")
    if args.latent_map not in (None, *PROJECTIONS):
        raise InputError(f"--latent-map {args.latent_map}: choose {' or '.join(PROJECTIONS)}")
    for flag, value, least in (("--samples", args.samples, 1), ("--steps", args.steps, 2), ("--n", args.n, 1),
                               ("--components", args.components, 1), ("--num-samples", args.num_samples, 2),
                               ("--judge-epochs", args.judge_epochs, 1), ("--prior-epochs", args.prior_epochs, 1)):
        if value is not None and value < least:
            raise InputError(f"{flag} {value}: must be at least {least}")
    args.refine_steps = parse_refine_steps(args.refine_steps)
    if args.index and not args.interpolate:
        raise InputError("--index I J: only with --interpolate A B")
    if args.save_images and not (args.samples or args.target_class is not None):
        raise InputError("--save-images DIR: only with --class K or --samples N")


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    device, progress = pick_device(args.device), not args.quiet
    path = checkpoint_file(args.checkpoint) if args.checkpoint else find_latest_checkpoint()
    model, checkpoint = load_checkpoint(path, device)
    out = Path(args.out) if args.out else path.parent
    for k in (args.interpolate or []) + ([] if args.target_class is None else [args.target_class]):
        check_class(k, tuple(checkpoint["config"]["classes"]))  # before the data is loaded: fail fast
    if args.save_images:
        check_writable_folder(args.save_images)
    sample_prior = args.prior or "normal"
    draws = args.samples or args.target_class is not None or args.evaluate
    needs_data = (args.reconstruct or args.interpolate or args.target_class is not None or args.evaluate
                  or args.latent_map or (args.samples and sample_prior != "normal")
                  or (draws and args.refine_steps == "auto"))
    galaxies = checkpoint_galaxies(checkpoint, progress) if needs_data else None
    refine_steps, refine_choice = (resolve_refine_steps(
        args.refine_steps, model, galaxies, path, args.prior if args.prior not in (None, "normal") else DEFAULT_PRIOR,
        args.components, args.prior_epochs, device, progress) if draws else (0, None))
    if args.reconstruct:
        plot_reconstructions(model, galaxies.test_x, galaxies.test_y, out / "reconstructions_test.png", "test")
        print(f"wrote {out / 'reconstructions_test.png'}")
    if args.samples:
        fitted = (NormalPrior(model.latent_dim) if sample_prior == "normal" else
                  fit_prior(sample_prior, encode_means(model, galaxies.train_x), galaxies.train_y, args.seed,
                            args.components, args.prior_epochs))
        images = decode_latents(model, refine_latents(model, fitted.sample(args.samples, args.seed), refine_steps))
        where = "z ~ N(0, I)" if sample_prior == "normal" else f"the {sample_prior} prior of the training latents"
        plot_grid(images, out / "samples.png", f"{args.samples} galaxies decoded from {where} (seed {args.seed}, "
                  f"{refine_steps} decode-encode step(s))")
        print(f"wrote {out / 'samples.png'}")
        if args.save_images:
            count = save_images(images, args.save_images, f"samples_{sample_prior}")
            print(f"wrote {count} PNGs samples_{sample_prior}_*.png into {args.save_images}")
    if args.interpolate:
        (a, b), name = args.interpolate, f"interpolation_{args.interpolate[0]}_{args.interpolate[1]}.png"
        strip = draw_interpolation(model, galaxies, a, b, args.index, args.steps, args.seed)
        plot_interpolation(*strip, (f"{a} {CLASS_NAMES[a]}", f"{b} {CLASS_NAMES[b]}"), out / name)
        print(f"wrote {out / name}")
    if args.target_class is not None:
        k, prior = args.target_class, args.prior or DEFAULT_PRIOR
        images, fitted = draw_class(model, galaxies, k, args.n, prior, args.components, args.seed, args.prior_epochs,
                                    refine_steps)
        plot_grid(images, out / f"class_{k}_{prior}.png", f"class {k} {CLASS_NAMES[k]}: {prior} prior fitted to "
                  f"the training latents in {fitted.fit_seconds:.1f} s (seed {args.seed}, {refine_steps} "
                  "decode-encode step(s))")
        print(f"wrote {out / f'class_{k}_{prior}.png'}")
        if args.save_images:
            count = save_images(images, args.save_images, f"class_{k}_{prior}")
            print(f"wrote {count} PNGs class_{k}_{prior}_*.png into {args.save_images}")
    if args.latent_map:
        name = f"latent_map_{args.latent_map}.png"
        draw_latent_map(model, galaxies, out / name, args.latent_map, args.seed)
        print(f"wrote {out / name}")
    if args.evaluate:
        prior = args.prior or DEFAULT_PRIOR
        samplers = list(dict.fromkeys(args.samplers + [prior]))  # the reported prior is always measured
        result = {"checkpoint": str(path), "data": {"source": galaxies.source, "key": galaxies.key}} | evaluate(
            model, galaxies, args.num_samples, args.seed, prior, samplers, args.components, args.judge_epochs,
            args.prior_epochs, device, progress, refine_steps, args.split)
        result["samplers"]["refine_choice"] = refine_choice
        print(format_table(result, galaxies.classes))
        name = "evaluation.json" if args.split == "test" else f"evaluation_{args.split}.json"
        with atomic_output(out / name) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
