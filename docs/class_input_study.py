"""A decoder told the class (a conditional VAE) instead of a class filter, on the validation split:
`python docs/class_input_study.py --seed S [--class-adversary W] [--leakage-only]` (from the project's folder;
gz1_sdss_sample beside it).

The joint model draws a class from a mixture fitted to that class's latents and keeps the draws its class model is
sure of; that filter costs round galaxies the tails of their colour and profile, and every draw kept costs the
judge (docs/results.md). One model per class kept the morphology but not the edge-ons or the FID. Here one
`--preset vaegan-cpu` model is trained on every class of the joint split, as the preset trains, with each galaxy's
class one-hot beside z at the decoder's input (model.ConvVAE.decoder_input; the encoder sees the image alone), in
runs/classinput_sS, skipped where its best.pt exists. Then, at the checkpoint's own sky, per class: the mixture
fitted to the class's posteriors (as generate.py fits it), 126 draws decoded as that class, every draw ("every
draw") and those the class model is sure of ("p>=0.9"), each with 0 and with 1 decode-encode step (the round
trip decodes as the class too); the FID of 42 a class against the real validation galaxies (N = 126), the
real-galaxy judge's ratio on the 126, statmorph's W1 / floor on the 42 (--evaluate's measure) and the copying
statistic Z_U of each class's draws against its training latents, all as docs/class_filter_study.py and
docs/per_class_models_study.py measure theirs. The first JSON line says how much class the latent holds (the
samplers' class model fitted to the training means, its accuracy on the validation means; --leakage-only stops
there), the next the judge's class shares of each class's draws decoded as each class (whether the class given
steers the decoder), then one per way and number of steps.

The class input alone left the class in the latent, where the decoder reads it (docs/results.md). With
--class-adversary W the model also holds a class model on mu that the encoder learns to fool through a reversed
gradient, W times its cross-entropy added to the step's objective (model.ConvVAE.class_adversary_loss; Lample et
al. 2017's Fader networks), in runs/classinput_sS_advW."""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checkpoint import load_checkpoint  # noqa: E402
from data import load_galaxies  # noqa: E402
from devices import forked_rng  # noqa: E402
from evaluation import copying_z, morphology_report, nearest_distances  # noqa: E402
from judge import classify  # noqa: E402
from model import decode_latents, encode_means, encode_posteriors, refine_latents  # noqa: E402
from per_class_models_study import ValidationMeasure  # noqa: E402 (beside this script)
from samplers import CLASS_CONFIDENCE, fit_latent_class_model, fit_sampler, one_blas_thread  # noqa: E402
from train import config_of, parse_args, train  # noqa: E402

DATA = "../shared/reference/gz1_sdss_sample"
STEPS = (0, 1)


def train_class_input(seed, class_adversary=0.0):
    """(the galaxies, the model's folder), trained where missing."""
    config = config_of(parse_args(["--preset", "vaegan-cpu", "--data", DATA, "--seed", str(seed)]))
    out = f"runs/classinput_s{seed}" + (f"_adv{class_adversary:g}" if class_adversary else "")
    config = replace(config, class_input=config.classes, class_adversary=class_adversary, out=out)
    galaxies = load_galaxies(config.data, config.classes, config.max_per_class, seed=config.seed, progress=False)
    if not (Path(config.out) / "best.pt").exists():
        train(config, galaxies=galaxies, progress=False)
    return galaxies, Path(config.out)


def latent_class_accuracy(train_mu, train_y, val_mu, val_y):
    """How much class the latent holds: the accuracy on the validation means of the class model the samplers
    filter with (samplers.fit_latent_class_model), fitted to the training means. A third where it reads nothing."""
    fitted = fit_latent_class_model(train_mu.double().numpy(), train_y.numpy())
    with one_blas_thread():
        return round(float((fitted.predict(val_mu.double().numpy()) == val_y.numpy()).mean()), 3)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the model's training seed (draws and judge: seed 0)")
    p.add_argument("--class-adversary", type=float, default=0.0, metavar="W",
                   help="weight of the class model on mu that the encoder learns to fool (0: none)")
    p.add_argument("--train-only", action="store_true", help="train the model where missing, measure nothing")
    p.add_argument("--leakage-only", action="store_true", help="measure only how much class the latent holds")
    args = p.parse_args()
    galaxies, folder = train_class_input(args.seed, args.class_adversary)
    if args.train_only:
        return
    model, checkpoint = load_checkpoint(folder / "best.pt", "cpu")
    mu, sigma = encode_posteriors(model, galaxies.train_x)
    leakage = latent_class_accuracy(mu, galaxies.train_y, encode_means(model, galaxies.val_x), galaxies.val_y)
    print(json.dumps({"seed": args.seed, "class_adversary": args.class_adversary, "epoch": checkpoint["epoch"],
                      "val_ssim": round(checkpoint["history"][checkpoint["epoch"] - 1]["val_ssim"], 4),
                      "latent_class_accuracy": leakage}), flush=True)
    if args.leakage_only:
        return
    measure = ValidationMeasure(galaxies)
    classes, counts, held = measure.classes, measure.counts, measure.held
    sampler = fit_sampler("gmm", mu, galaxies.train_y.numpy(), 0, confidence=CLASS_CONFIDENCE, spreads=sigma)
    ways = {"every draw": lambda k: sampler._sample(126, 0, k),  # the same mixture, unfiltered
            f"p>={CLASS_CONFIDENCE:g}": lambda k: sampler.sample(126, 0, label=k)}
    with forked_rng(torch.device("cpu"), 0):
        recon = {k: decode_latents(model, encode_means(model, x), labels=k) for k, x in held.items()}
    images, copying, every = {}, {}, {}
    for k in classes:
        training = mu[galaxies.train_y == k]
        held_out = nearest_distances(encode_means(model, held[k]), training)
        for way, draw in ways.items():
            z = draw(k)
            if way == "every draw":
                every[k] = z
            for steps in STEPS:
                with forked_rng(torch.device("cpu"), 0):
                    images.setdefault((way, steps), {})[k] = decode_latents(
                        model, refine_latents(model, z, steps, labels=k), labels=k)
                drawn = nearest_distances(encode_means(model, images[(way, steps)][k][:counts[k]]), training)
                copying.setdefault((way, steps), {})[k] = round(copying_z(drawn, held_out), 2)
    told = {}  # does the class given steer the decoder, or does the latent's own class win?
    for k in classes:
        for j in classes:
            with forked_rng(torch.device("cpu"), 0):
                judged = classify(measure.judge, decode_latents(model, every[k], labels=j), classes)
            told[f"{k} told {j}"] = {c: round((judged == c).float().mean().item(), 3) for c in classes}
    print(json.dumps({"seed": args.seed, "way": "every draw of class k decoded as class j: the judge's shares",
                      "told": told}), flush=True)
    names = {key: f"{key[0]}, {key[1]} steps" for key in images}
    report = morphology_report(galaxies, held, recon, {names[key]: {k: x[:counts[k]] for k, x in by_class.items()}
                                                       for key, by_class in images.items()}, counts, 0, progress=False)
    for key, by_class in images.items():
        kept = {k: round(sampler.kept[k], 3) for k in classes} if key[0] != "every draw" else None
        print(json.dumps({"seed": args.seed, "way": key[0], "steps": key[1], "sky_noise": model.sky_noise, "kept": kept}
                         | measure.line(by_class, report, names[key], copying[key])), flush=True)


if __name__ == "__main__":
    main()
