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
from evaluation import (class_subset, copying_z, fid_counts, judge_accuracy, morphology_report, nearest_distances,  # noqa: E402
                        real_activations)
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
    measure = ValidationMeasure(galaxies)
    classes, counts, held = measure.classes, measure.counts, measure.held
    images, recon, copying = {0: {}, 1: {}}, {}, {0: {}, 1: {}}
    for k in classes:
        model = load_checkpoint(folders[k] / "best.pt", "cpu")[0]
        mu, sigma = encode_posteriors(model, galaxies.train_x[galaxies.train_y == k])
        sampler = fit_sampler("gmm", mu, np.full(len(mu), k), 0, spreads=sigma)
        with forked_rng(torch.device("cpu"), 0):
            recon[k] = decode_latents(model, encode_means(model, held[k]))
        held_out = nearest_distances(encode_means(model, held[k]), mu)
        for steps in images:
            with forked_rng(torch.device("cpu"), 0):
                images[steps][k] = decode_latents(model, refine_latents(model, sampler.sample(126, 0, label=k), steps))
            drawn = nearest_distances(encode_means(model, images[steps][k][:counts[k]]), mu)
            copying[steps][k] = round(copying_z(drawn, held_out), 2)
    report = morphology_report(galaxies, held, recon, {steps: {k: x[:counts[k]] for k, x in by_class.items()}
                                                       for steps, by_class in images.items()}, counts, 0, progress=False)
    for steps, by_class in images.items():
        print(json.dumps({"seed": args.seed, "steps": steps} | measure.line(by_class, report, steps, copying[steps])),
              flush=True)


class ValidationMeasure:
    """What these studies measure class samples against, on the validation split (seed 0 throughout): n_k
    (counts) and the n_k real galaxies a class (held) the FID and statmorph see, their Inception features, and
    the real-galaxy judge with its accuracy on every real validation galaxy."""
    def __init__(self, galaxies):
        self.classes, self.counts = list(galaxies.classes), fid_counts(galaxies, "val", 126)
        val_x, val_y = galaxies.split("val")
        self.held = {k: val_x[class_subset(val_y, k, n, 0)] for k, n in self.counts.items()}
        self.inception = fid.load_inception(device="cpu")
        self.real = np.concatenate([real_activations(galaxies, "val", k, n, 0, self.inception, "cpu", False)
                                    for k, n in self.counts.items()])
        self.judge = load_or_train_classifier(galaxies, 30, 0, "cpu", progress=False)
        self.real_accuracy = judge_accuracy(self.judge, val_x, val_y, self.classes)

    def line(self, by_class, report, name, copying):
        """The JSON line of one set of class samples ({k: its images}; the first n_k of each are those
        morphology_report measured as samplers.`name`): FID, judge ratio, copying, morphology, failures."""
        acts = np.concatenate([fid.get_activations(by_class[k][:n], self.inception, None, "cpu", False)
                               for k, n in self.counts.items()])
        samples = report["samplers"][name]
        return {
            "fid": round(fid.feature_distance(acts, self.real), 1),
            "judge_ratio": {k: round((classify(self.judge, by_class[k], self.classes) == k).float().mean().item()
                                     / self.real_accuracy[str(k)], 3) for k in self.classes},
            "copying_z": copying,
            "morphology": {k: round(c["mean_ratio"], 3) for k, c in samples.items()},
            "morphology_reconstructions": {k: round(c["mean_ratio"], 3) for k, c in report["reconstructions"].items()},
            "ratio": {k: {s: c[s]["ratio"] for s in c if s != "mean_ratio"} for k, c in samples.items()},
            "failures": {set_name: failures for set_name, failures in report["failures"].items()
                         if set_name in ("real", "floor", "reconstructions", f"samplers.{name}")}}


if __name__ == "__main__":
    main()
