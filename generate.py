"""Look at a trained galaxy VAE: reconstructions, samples, the 2 -> 9 interpolation, class-targeted
galaxies, the latent map and the test metrics; several actions may be given at once:

  python generate.py --reconstruct --samples 64 --interpolate 2 9 --class 6
  python generate.py --evaluate --checkpoint runs/20250101-120000

The checkpoint defaults to the newest best.pt under runs/; figures and evaluation.json go into its run
folder (or --out). An unconditional VAE has no class input, so --class K fits a sampler (--sampler: a
Gaussian mixture per class by default, a second-stage VAE or a flow) to the encoder's training latents and
decodes galaxies of class K drawn from it; --save-images DIR also writes them as PNGs.

Drawing is quick: it measures nothing. Two settings of a draw are chosen per checkpoint on the validation
split by `--evaluate --split val` and recorded beside it (draw_choice.py): --refine-steps, the decode-encode
round trips of every sampler's latents (0 or 1), and --sky-noise, the fraction of the sky's noise a model
trained with sky noise draws (none, half or all of it). auto, the default of both, takes the recorded
choice, else 0 steps and the checkpoint's own fraction.

--evaluate measures on the test split (evaluation.py): SSIM, FIDs per class at equal N (the floor of real
training galaxies, reconstructions, each sampler), the judge's accuracy and a data-copying test, as a table
and evaluation.json. Inception-v3 runs at ~4-7 images/s on a 2-core CPU: with --fid-samples 549 and the
four samplers, ~3,300 generated images, ~10-15 minutes on a CPU, about a minute on a GPU.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch

from checkpoint import checkpoint_file, find_latest_checkpoint, load_checkpoint
from classes import CLASS_NAMES
from cli import InputError, Parser, check_at_least, check_writable_folder, exit_on_input_error
from data import checkpoint_galaxies
from devices import pick_device
from draw_choice import (REFINE_RECORD, draw_with_sky_noise, needs_training_sky, parse_refine_steps, parse_sky_noise,
                         record_refine_choice, record_sky_choice, refine_choice, sky_choice)
from evaluation import evaluate, format_table
from files import atomic_output
from latent_map import PROJECTIONS, draw_latent_map
from model import decode_latents, encode_means, interpolate_latents, refine_latents
from plots import plot_grid, plot_interpolation, plot_morphology, plot_reconstructions, save_pngs
from samplers import (CLASS_CONFIDENCE, DEFAULT_COMPONENTS, DEFAULT_SAMPLER, SAMPLERS, NormalSampler, check_confidence,
                      check_kind, fit_training_sampler)

CLASS_DRAWS = 16  # galaxies of --class K when no N is given


def check_class(k, classes):
    if k not in CLASS_NAMES:
        raise InputError(f"class {k}: not a Galaxy10 class id (0-9)")
    if k not in classes:
        raise InputError(f"class {k} ({CLASS_NAMES[k]}): not in this checkpoint's data "
                         f"(classes {', '.join(map(str, classes))})")


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


def draw_class(model, galaxies, k, n, sampler=DEFAULT_SAMPLER, components=DEFAULT_COMPONENTS, seed=0,
               sampler_epochs=None, refine_steps=0, confidence=CLASS_CONFIDENCE):
    """n decoded galaxies of class k from a sampler fitted to the training latents (its draws kept at
    `confidence` and refined by refine_steps decode-encode round trips), and that sampler."""
    fitted = fit_training_sampler(sampler, model, galaxies, seed, components, sampler_epochs, confidence=confidence)
    return decode_latents(model, refine_latents(model, fitted.sample(n, seed, label=k), refine_steps)), fitted


def kept_line(fitted, k):
    """How many of a class draw's latents the sampler kept, as one line."""
    if k not in fitted.kept:
        return f"class {k}: every draw of the {fitted.kind} sampler kept (--class-confidence 0)"
    return (f"class {k}: the {fitted.kind} sampler kept {fitted.kept[k]:.1%} of its {fitted.drawn[k]:,} draws at "
            f"p >= {fitted.confidence:g}")


# ---------------------------------------------------------------- command line

def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint file or run folder (default: the newest runs/**/best.pt)")
    p.add_argument("--out", help="folder for figures and evaluation.json (default: the checkpoint's folder)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0, help="seed of every sample, random pick and sampler fit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("actions (any combination)")
    g.add_argument("--reconstruct", action="store_true", help="test galaxies above their reconstructions, per class")
    g.add_argument("--samples", type=int, metavar="N", help="N galaxies of any class, decoded from z ~ N(0, I) "
                   "(or from --sampler)")
    g.add_argument("--interpolate", type=int, nargs=2, metavar=("A", "B"), help="a test galaxy of class A "
                   "morphing into one of class B, e.g. --interpolate 2 9")
    g.add_argument("--class", dest="target_class", type=int, nargs="+", metavar=("K", "N"),
                   help=f"N galaxies of class K (default N: {CLASS_DRAWS})")
    g.add_argument("--latent-map", nargs="?", const="pca", metavar="pca|tsne", help="latent_map_pca.png: the test "
                   "galaxies' latent means in 2-D by class, with thumbnails (--latent-map tsne: t-SNE)")
    g.add_argument("--evaluate", action="store_true", help="SSIM, the FID decomposition (floor, reconstructions, "
                   "each sampler), judge accuracy and copying: a table and evaluation.json (cost: see above)")
    o = p.add_argument_group("drawing")
    o.add_argument("--sampler", help=f"--class, --evaluate (default {DEFAULT_SAMPLER}) and --samples (default "
                   "normal): where latents are drawn: normal (N(0, I), no classes), gmm (a Gaussian mixture per "
                   "class), vae2 (a second-stage VAE), flow (a RealNVP flow); all but normal fitted to the "
                   "training latents")
    o.add_argument("--components", type=int, default=DEFAULT_COMPONENTS, help="gmm: most components (fewer for few "
                   f"latents; default {DEFAULT_COMPONENTS})")
    o.add_argument("--sampler-epochs", type=int, help="vae2, flow: training epochs on the latents (default 200)")
    o.add_argument("--class-confidence", type=float, default=CLASS_CONFIDENCE, metavar="P", help="keep a class's "
                   "drawn latent only if the class model of the training latents (a small MLP) gives it that class "
                   f"with probability >= P (default {CLASS_CONFIDENCE}; 0: keep every draw)")
    o.add_argument("--sky-noise", default="auto", metavar="F|auto", help="draw every image with F times the training "
                   "split's sky noise per band, whatever the checkpoint was trained with (0: the decoder's smooth "
                   f"mean); auto (default): the fraction recorded in {REFINE_RECORD} by --evaluate --split val, else "
                   "the checkpoint's own (0.5 for the presets). SSIM pays for noise, FID and the judge see it")
    o.add_argument("--refine-steps", default="auto", metavar="K|auto", help="decode-encode round trips of every "
                   "sampler's latents before they are decoded (0: as drawn); auto (default): the number recorded "
                   f"in {REFINE_RECORD} beside the checkpoint by --evaluate --split val, else 0")
    o.add_argument("--index", type=int, nargs=2, metavar=("I", "J"), help="--interpolate: the I-th test galaxy "
                   "of class A and the J-th of class B (default: seeded random ones)")
    o.add_argument("--steps", type=int, default=8, help="--interpolate: latent points, both ends included")
    o.add_argument("--save-images", metavar="DIR", help="--class, --samples: also write each galaxy as a 64x64 "
                   "PNG into DIR (class_K_SAMPLER_0000.png..., samples_SAMPLER_0000.png...), e.g. for fid.py DIR test")
    e = p.add_argument_group("evaluating")
    e.add_argument("--no-morphology", action="store_true", help="--evaluate without the statmorph statistics "
                   "(a quicker look: they take ~1 s per galaxy per core, real galaxies' cached)")
    e.add_argument("--morphology-plot", action="store_true", help="morphology.png: each statmorph statistic's "
                   "distribution per class, real against reconstructions and --sampler's samples (from --evaluate, "
                   "else from the evaluation.json beside the checkpoint)")
    e.add_argument("--split", choices=("test", "val"), default="test", help="the held-out split to measure "
                   "against (default test; val chooses settings without touching the test split, records the "
                   "--refine-steps auto choice and writes evaluation_val.json)")
    e.add_argument("--fid-samples", type=int, default=256, metavar="N", help="images per FID side, N / classes "
                   "per class (capped by the real images; compare FIDs only at equal N); also the class samples "
                   "the judge sees per class")
    e.add_argument("--samplers", nargs="+", default=list(SAMPLERS), metavar="NAME", help="the samplers to "
                   f"measure (default: all, {' '.join(SAMPLERS)})")
    e.add_argument("--judge-epochs", type=int, default=30, help="most epochs of each judge candidate (the epoch "
                   "kept is chosen by validation accuracy)")
    # The names these flags had before; they still work.
    p.add_argument("--prior", dest="sampler", help=argparse.SUPPRESS)
    p.add_argument("--prior-epochs", dest="sampler_epochs", type=int, help=argparse.SUPPRESS)
    p.add_argument("--num-samples", dest="fid_samples", type=int, help=argparse.SUPPRESS)
    p.add_argument("--n", dest="class_count", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def check_args(args):
    if not (args.reconstruct or args.samples is not None or args.interpolate or args.target_class is not None
            or args.evaluate or args.latent_map or args.morphology_plot):
        raise InputError("nothing to do: give --reconstruct, --samples N, --interpolate A B, --class K, "
                         "--latent-map, --evaluate and/or --morphology-plot")
    if args.morphology_plot and args.evaluate and args.no_morphology:
        raise InputError("--morphology-plot with --evaluate --no-morphology: nothing to plot")
    if args.target_class is not None:
        if len(args.target_class) > 2:
            raise InputError(f"--class {' '.join(map(str, args.target_class))}: give a class K and at most a count N")
        args.target_class, count = args.target_class[0], args.target_class[1:] or [args.class_count or CLASS_DRAWS]
        args.class_count = count[0]
    for kind in ([args.sampler] if args.sampler else []) + args.samplers:
        check_kind(kind)
    if args.target_class is not None and args.sampler == "normal":
        raise InputError("--sampler normal: N(0, I) knows no classes; for --class choose gmm, vae2 or flow")
    if args.latent_map not in (None, *PROJECTIONS):
        raise InputError(f"--latent-map {args.latent_map}: choose {' or '.join(PROJECTIONS)}")
    check_at_least({"--samples": (args.samples, 1), "--steps": (args.steps, 2), "--class K N": (args.class_count, 1),
                    "--components": (args.components, 1), "--fid-samples": (args.fid_samples, 2),
                    "--judge-epochs": (args.judge_epochs, 1), "--sampler-epochs": (args.sampler_epochs, 1)})
    args.refine_steps = parse_refine_steps(args.refine_steps)
    check_confidence(args.class_confidence)
    args.sky_noise = parse_sky_noise(args.sky_noise)
    if args.index and not args.interpolate:
        raise InputError("--index I J: only with --interpolate A B")
    if args.save_images and not (args.samples or args.target_class is not None):
        raise InputError("--save-images DIR: only with --class K or --samples N")


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    check_args(args)
    device, progress = pick_device(args.device), not args.quiet
    torch.manual_seed(args.seed)  # a noisy decoder's noise too: one seed, one set of figures
    path = checkpoint_file(args.checkpoint) if args.checkpoint else find_latest_checkpoint()
    model, checkpoint = load_checkpoint(path, device, drawn_by="generate.py")
    out = Path(args.out) if args.out else path.parent
    for k in (args.interpolate or []) + ([] if args.target_class is None else [args.target_class]):
        check_class(k, tuple(checkpoint["config"]["classes"]))  # before the data is loaded: fail fast
    if args.save_images:
        check_writable_folder(args.save_images, "--save-images")
    class_sampler, sample_sampler = args.sampler or DEFAULT_SAMPLER, args.sampler or "normal"
    choosing = args.evaluate and args.split == "val"  # the one place the auto choices are measured
    sky, sky_record = sky_choice(args.sky_noise, path, class_sampler, args.components, args.sampler_epochs,
                                 args.class_confidence)
    needs_data = (args.reconstruct or args.interpolate or args.target_class is not None or args.evaluate
                  or args.latent_map or (args.samples and sample_sampler != "normal") or needs_training_sky(model, sky))
    galaxies = checkpoint_galaxies(checkpoint, progress) if needs_data else None
    if choosing and args.sky_noise == "auto":  # before any figure: every action draws at the chosen fraction
        sky, sky_record = record_sky_choice(model, galaxies, path, class_sampler, args.components, args.sampler_epochs,
                                            device, progress, args.class_confidence)
    sky = draw_with_sky_noise(model, sky, galaxies)

    def steps_for(sampler):
        return refine_choice(args.refine_steps, path, sampler, args.components, args.sampler_epochs,
                             args.class_confidence, sky)[0]

    def show(images, name, title, prefix=None):
        """A grid of drawn galaxies as out/NAME.png, and each as a PNG in --save-images."""
        plot_grid(images, out / f"{name}.png", title)
        print(f"wrote {out / f'{name}.png'}")
        if args.save_images:
            count = save_pngs(images, args.save_images, prefix or name)
            print(f"wrote {count} PNGs {prefix or name}_*.png into {args.save_images}")

    if args.reconstruct:
        plot_reconstructions(model, galaxies.test_x, galaxies.test_y, out / "reconstructions_test.png", "test")
        print(f"wrote {out / 'reconstructions_test.png'}")
    if args.samples:
        fitted = (NormalSampler(model.latent_dim) if sample_sampler == "normal" else
                  fit_training_sampler(sample_sampler, model, galaxies, args.seed, args.components, args.sampler_epochs,
                                       confidence=args.class_confidence))
        steps = steps_for(sample_sampler)
        images = decode_latents(model, refine_latents(model, fitted.sample(args.samples, args.seed), steps))
        where = "z ~ N(0, I)" if sample_sampler == "normal" else f"the {sample_sampler} sampler of the training latents"
        show(images, "samples", f"{args.samples} galaxies decoded from {where} (seed {args.seed}, {steps} "
             f"decode-encode step(s))", f"samples_{sample_sampler}")
    if args.interpolate:
        (a, b), name = args.interpolate, f"interpolation_{args.interpolate[0]}_{args.interpolate[1]}.png"
        strip = draw_interpolation(model, galaxies, a, b, args.index, args.steps, args.seed)
        plot_interpolation(*strip, (f"{a} {CLASS_NAMES[a]}", f"{b} {CLASS_NAMES[b]}"), out / name)
        print(f"wrote {out / name}")
    if args.target_class is not None:
        k, steps = args.target_class, steps_for(class_sampler)
        images, fitted = draw_class(model, galaxies, k, args.class_count, class_sampler, args.components, args.seed,
                                    args.sampler_epochs, steps, args.class_confidence)
        kept = f", {fitted.kept[k]:.0%} of draws kept at p >= {fitted.confidence:g}" if k in fitted.kept else ""
        print(kept_line(fitted, k))
        verdict = fitted.collapse(k, encode_means(model, images), args.seed)["collapsed"]
        if verdict:
            print(f"COLLAPSED: class {k} of the {class_sampler} sampler: {verdict}")
        show(images, f"class_{k}_{class_sampler}", f"class {k} {CLASS_NAMES[k]}: {class_sampler} sampler fitted to "
             f"the training latents in {fitted.fit_seconds:.1f} s (seed {args.seed}, {steps} decode-encode step(s)"
             f"{kept})")
    if args.latent_map:
        name = f"latent_map_{args.latent_map}.png"
        draw_latent_map(model, galaxies, out / name, args.latent_map, args.seed)
        print(f"wrote {out / name}")
    if args.evaluate:
        if choosing and args.refine_steps == "auto":
            steps, choice = record_refine_choice(model, galaxies, path, class_sampler, args.components,
                                                 args.sampler_epochs, device, progress, args.class_confidence, sky)
        else:
            steps, choice = refine_choice(args.refine_steps, path, class_sampler, args.components, args.sampler_epochs,
                                          args.class_confidence, sky)
        samplers = list(dict.fromkeys(args.samplers + [class_sampler]))  # the reported sampler is always measured
        result = {"checkpoint": str(path), "data": {"source": galaxies.source, "key": galaxies.key}} | evaluate(
            model, galaxies, args.fid_samples, args.seed, class_sampler, samplers, args.components, args.judge_epochs,
            args.sampler_epochs, device, progress, steps, args.split, args.class_confidence, not args.no_morphology)
        result["samplers"]["refine_choice"], result["sky_choice"] = choice, sky_record
        print(format_table(result, galaxies.classes))
        with atomic_output(out / evaluation_name(args.split)) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        print(f"wrote {out / evaluation_name(args.split)}")
    if args.morphology_plot:
        shapes = result["morphology"] if args.evaluate else recorded_morphology(out / evaluation_name(args.split))
        plot_morphology(shapes, out / "morphology.png", class_sampler if class_sampler in shapes["samplers"] else None)
        print(f"wrote {out / 'morphology.png'}")


def evaluation_name(split):
    return "evaluation.json" if split == "test" else f"evaluation_{split}.json"


def recorded_morphology(path):
    """The morphology an earlier --evaluate wrote into `path`; InputError where there is none."""
    try:
        shapes = json.loads(Path(path).read_text()).get("morphology")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file: run --evaluate (with --morphology-plot) first") from None
    except (OSError, ValueError, AttributeError) as error:
        raise InputError(f"{path}: not a readable evaluation ({type(error).__name__})") from None
    if not shapes:
        raise InputError(f"{path}: measured without morphology (--no-morphology): run --evaluate again")
    return shapes


if __name__ == "__main__":
    main()
