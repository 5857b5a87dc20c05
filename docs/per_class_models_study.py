"""A CPU preset model per class instead of one model and a class filter, on the validation split:
`python docs/per_class_models_study.py --seed S` (from the project's folder; gz1_sdss_sample beside it).

The joint model draws a class from a mixture fitted to that class's latents and keeps the draws its class model
is sure of, and that filter costs round galaxies the tails of their colour and profile (docs/results.md). A model
that knows one class needs no filter: every draw is of its class. Per class K, a `--preset vaegan-cpu` model is
trained on the joint split's class-K training galaxies (best.pt chosen on its class-K validation galaxies), at a
third of the preset's galaxies shown, so each galaxy is seen as often as by the joint model and the three cost
one joint model; in runs/perclass_sS_kK, skipped where its best.pt exists. Then per class, as
docs/class_filter_study.py measures the joint model: the mixture fitted to the class's posteriors (every draw
kept: there is no other class), 126 draws decoded with 0 and with 1 decode-encode step at the checkpoint's own
sky; the FID of 42 a class against the real validation galaxies (N = 126), the real-galaxy judge's ratio on the
126, statmorph's W1 / floor on the 42 (--evaluate's measure), and the copying statistic Z_U of each class's draws
against its training latents. One JSON line per number of steps."""
import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import load_galaxies  # noqa: E402
from devices import forked_rng  # noqa: E402
from evaluation import class_subset, copying_z, fid_counts, morphology_report, nearest_distances, real_activations  # noqa: E402
from judge import classify, load_or_train_classifier  # noqa: E402
from model import decode_latents, encode_means, encode_posteriors, refine_latents  # noqa: E402
from samplers import fit_sampler  # noqa: E402
from train import config_of, parse_args, train  # noqa: E402

DATA = "../shared/reference/gz1_sdss_sample"


def class_galaxies(galaxies, k):
    """The joint split's galaxies of class k alone, as a Galaxies of one class."""
    def only(name):
        x, y = galaxies.split(name)
        return x[y == k], y[y == k]
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = only("train"), only("val"), only("test")
    return replace(galaxies, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, test_x=test_x,
                   test_y=test_y, classes=(k,), key=galaxies.key + f"-class{k}")


def train_per_class(seed):
    """{k: its model's folder}, trained where missing."""
    config = config_of(parse_args(["--preset", "vaegan-cpu", "--data", DATA, "--seed", str(seed)]))
    galaxies = load_galaxies(config.data, config.classes, config.max_per_class, seed=config.seed, progress=False)
    folders = {}
    for k in galaxies.classes:
        folders[k] = Path(f"runs/perclass_s{seed}_k{k}")
        if not (folders[k] / "best.pt").exists():
            one = replace(config, classes=(k,), galaxies_shown=config.galaxies_shown // 3, out=str(folders[k]))
            train(one, galaxies=class_galaxies(galaxies, k), progress=False)
    return galaxies, folders


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="the models' training seed (draws and judge: seed 0)")
    args = p.parse_args()
    galaxies, folders = train_per_class(args.seed)
    classes, counts = list(galaxies.classes), fid_counts(galaxies, "val", 126)
    val_x, val_y = galaxies.split("val")
    held = {k: val_x[class_subset(val_y, k, n, 0)] for k, n in counts.items()}
    inception = fid.load_inception(device="cpu")
    real = np.concatenate([real_activations(galaxies, "val", k, n, 0, inception, "cpu", False) for k, n in counts.items()])
    judge = load_or_train_classifier(galaxies, 30, 0, "cpu", progress=False)
    said = classify(judge, val_x, classes)
    real_accuracy = {k: (said[val_y == k] == k).float().mean().item() for k in classes}
    models = {k: load_checkpoint(folders[k] / "best.pt", "cpu")[0] for k in classes}
    for steps in (0, 1):
        images, recon, copying = {}, {}, {}
        for k, model in models.items():
            mu, sigma = encode_posteriors(model, galaxies.train_x[galaxies.train_y == k])
            sampler = fit_sampler("gmm", mu, np.full(len(mu), k), 0, spreads=sigma)
            with forked_rng(torch.device("cpu"), 0):
                images[k] = decode_latents(model, refine_latents(model, sampler.sample(126, 0, label=k), steps))
            with forked_rng(torch.device("cpu"), 0):
                recon[k] = decode_latents(model, encode_means(model, held[k]))
            held_out = nearest_distances(encode_means(model, held[k]), mu)
            drawn = nearest_distances(encode_means(model, images[k][:counts[k]]), mu)
            copying[k] = round(copying_z(drawn, held_out), 2)
        acts = np.concatenate([fid.get_activations(images[k][:n], inception, None, "cpu", False)
                               for k, n in counts.items()])
        report = morphology_report(galaxies, held, recon, {"per-class": {k: images[k][:counts[k]] for k in classes}},
                                   counts, 0, progress=False)
        samples = report["samplers"]["per-class"]
        print(json.dumps({
            "seed": args.seed, "steps": steps, "fid": round(fid.feature_distance(acts, real), 1),
            "judge_ratio": {k: round((classify(judge, images[k], classes) == k).float().mean().item() / real_accuracy[k], 3)
                            for k in classes},
            "copying_z": copying,
            "morphology": {k: round(c["mean_ratio"], 3) for k, c in samples.items()},
            "morphology_reconstructions": {k: round(c["mean_ratio"], 3) for k, c in report["reconstructions"].items()},
            "ratio": {k: {s: c[s]["ratio"] for s in c if s != "mean_ratio"} for k, c in samples.items()},
            "failures": report["failures"]}), flush=True)


if __name__ == "__main__":
    main()
