"""Where class samples lose the real galaxies' morphology, stage by stage, on the validation split:
`python docs/morphology_stages_study.py EVAL_DIR [EVAL_DIR ...] [--confidences 0.9,0.95]`.

EVAL_DIR holds a `generate.py --evaluate --split val` evaluation_val.json: its checkpoint, seed, sky noise and
decode-encode steps are used as chosen there. Per class, 42 galaxies of each set (n_k as --evaluate with
--fid-samples 126) are measured by statmorph against the real validation galaxies, over the floor of real
training galaxies, as --evaluate measures them (evaluation.morphology_report):
- "reconstructions": the decoder alone, on the validation galaxies' posterior means (paired with the real
  galaxies it is compared with, so below the floor where the decoder keeps each galaxy);
- "training means": the decoder on the posterior means of random training galaxies of the class (the rows
  "posterior" draws from), unpaired with the real validation galaxies as every later stage is: what the
  decoder makes of real galaxies, measured as its draws are;
- "posterior": the decoder on z = mu + sigma * eps of random training galaxies of the class (what the mixture
  is fitted to: the decoder's own draws of known galaxies, a copy in latent space);
- "gmm every draw": the mixture's draws, none dropped (--class-confidence 0);
- "gmm p>=C": the mixture's draws kept by the class model at --class-confidence C (--confidences; default
  samplers.CLASS_CONFIDENCE).
Each later stage adds one step of generate.py --class, so each statistic's growth from one row to the next is
that step's share of its miss, read over several models: every stage is one draw of 42 galaxies, and one draw
of 42 real galaxies itself scores a class mean of 1.0-1.1 +- 0.14-0.26 (docs/morphology_noise_study.py).
Samples take the recorded decode-encode steps. One JSON line per EVAL_DIR, then the mean of the per-statistic
ratios over them."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import morphometry  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from devices import forked_rng  # noqa: E402
from evaluation import class_subset, fid_counts, morphology_report  # noqa: E402
from model import decode_latents, encode_means, encode_posteriors, refine_latents, standard_normal_latents  # noqa: E402
from samplers import CLASS_CONFIDENCE, fit_sampler  # noqa: E402


def stage_images(model, galaxies, counts, seed, steps, confidences):
    """{stage: {k: n_k images}} for the drawn stages."""
    mu, sigma = encode_posteriors(model, galaxies.train_x)
    labels = galaxies.train_y.numpy()
    every = fit_sampler("gmm", mu, labels, seed, confidence=0, spreads=sigma)
    kept = {f"gmm p>={c:g}": fit_sampler("gmm", mu, labels, seed, confidence=c, spreads=sigma)
            for c in confidences}
    drawn = {"training means": {}, "posterior": {}, "gmm every draw": {}} | {name: {} for name in kept}
    for k, n in counts.items():
        rows = class_subset(galaxies.train_y, k, n, seed + 1)
        noise = standard_normal_latents(n, mu.shape[1], seed + 2)
        latents = {"training means": mu[rows], "posterior": mu[rows] + sigma[rows] * noise,
                   "gmm every draw": every.sample(n, seed, label=k)}
        latents |= {name: sampler.sample(n, seed, label=k) for name, sampler in kept.items()}
        for stage, z in latents.items():
            with forked_rng(torch.device("cpu"), seed):
                drawn[stage][k] = decode_latents(model, refine_latents(model, z, steps))
    return drawn


def validation_sets(folder):
    """One `generate.py --evaluate --split val` folder as these studies take it: (its record, the model drawing at
    the chosen sky, the galaxies, n_k a class, the n_k real validation galaxies a class and their reconstructions)."""
    chosen = json.loads((folder / "evaluation_val.json").read_text())
    model, checkpoint = load_checkpoint(chosen["checkpoint"], "cpu")
    model.set_sky_noise(chosen["sky_noise"])
    galaxies = checkpoint_galaxies(checkpoint, progress=False)
    counts = fid_counts(galaxies, "val", 126)
    val_x, val_y = galaxies.split("val")
    held = {k: val_x[class_subset(val_y, k, n, chosen["seed"])] for k, n in counts.items()}
    with forked_rng(torch.device("cpu"), chosen["seed"]):
        recon = {k: decode_latents(model, encode_means(model, x)) for k, x in held.items()}
    return chosen, model, galaxies, counts, held, recon


def ratios(rows):
    """The JSON line's class means and per-statistic ratios of rows {name: {k: morphometry.compare's result}}."""
    return {"mean_ratio": {name: {k: round(c["mean_ratio"], 3) for k, c in r.items()} for name, r in rows.items()},
            "ratio": {name: {k: {s: c[s]["ratio"] for s in morphometry.NAMES} for k, c in r.items()}
                      for name, r in rows.items()}}


def print_mean_table(lines):
    """A markdown table of each statistic's ratio and of the class means, per class and row name, averaged over
    the lines (a statistic no line could measure shows -)."""
    names = list(lines[0]["ratio"])
    classes = list(lines[0]["ratio"][names[0]])
    print("| statistic | " + " | ".join(f"{name}, {k}" for k in classes for name in names) + " |")
    print("| --- " * (1 + len(classes) * len(names)) + "|")
    for stat in [*morphometry.NAMES, "mean"]:
        cells = []
        for k in classes:
            for name in names:
                values = [line["mean_ratio"][name][k] if stat == "mean" else line["ratio"][name][k][stat]
                          for line in lines]
                values = [v for v in values if v is not None]
                cells.append(f"{np.mean(values):.2f}" if values else "-")
        print(f"| {stat} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evaluations", nargs="+",
                   help="folders with generate.py --evaluate --split val's evaluation_val.json")
    p.add_argument("--confidences", type=lambda t: [float(v) for v in t.split(",")], default=[CLASS_CONFIDENCE])
    args = p.parse_args()
    lines = []
    for folder in map(Path, args.evaluations):
        chosen, model, galaxies, counts, held, recon = validation_sets(folder)
        seed, steps = chosen["seed"], chosen["samplers"]["refine_steps"]
        drawn = stage_images(model, galaxies, counts, seed, steps, args.confidences)
        report = morphology_report(galaxies, held, recon, drawn, counts, seed, progress=False)
        rows = {"reconstructions": report["reconstructions"]} | report["samplers"]
        line = {"evaluation": str(folder), "sky_noise": chosen["sky_noise"], "refine_steps": steps,
                "failures": report["failures"]} | ratios(rows)
        print(json.dumps(line), flush=True)
        lines.append(line)
    print_mean_table(lines)


if __name__ == "__main__":
    main()
