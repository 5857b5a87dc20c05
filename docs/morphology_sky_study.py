"""Which sky noise a class's draws need for statmorph to see them as it sees real galaxies, on the validation
split: `python docs/morphology_sky_study.py EVAL_DIR [EVAL_DIR ...]`.

EVAL_DIR holds a `generate.py --evaluate --split val` evaluation_val.json: its checkpoint, seed, sky fraction and
decode-encode steps are used as chosen there. The sky decides where statmorph's segment of the galaxy ends (above
1.5 sky sigma, morphometry.SETTINGS): drawn with less noise than the survey's, a decoded galaxy's faint wings
and a blurred neighbour's are detected further out and joined into one segment, whose rotational asymmetry and
size then count the neighbour. The classes' skies differ (on gz1_sdss_sample the round galaxies' is about 1.5
times the others'), and the model draws one sky for all. Each class is drawn three ways:
- "pooled, as chosen": the training split's sky times the chosen fraction, as generate.py draws today;
- "own, matched": the class's own training sky less the decoder's own noise, in quadrature (the decoder's is
  morphology.band_sky_noise of its reconstructions of the class's training galaxies drawn without sky noise),
  so that the drawn galaxies carry the class's sky;
- "own, added": the class's own training sky added in full on top of the decoder's noise.
Two stages of generate.py --class are measured each way, 42 galaxies a class (n_k as --evaluate with
--fid-samples 126) against the real validation galaxies over the floor of real training galaxies
(evaluation.morphology_report): "training means", the decoder on the posterior means of random training
galaxies of the class with no decode-encode step (the decoder alone, unpaired), and "gmm p>=C", the class
samples as drawn (samplers.CLASS_CONFIDENCE, the recorded steps). One JSON line per EVAL_DIR, then the mean over
them of each statistic's ratio and of the class means. One draw of 42 real galaxies itself scores a class mean
of 1.0-1.1 +- 0.14-0.26 (docs/morphology_noise_study.py)."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devices import forked_rng  # noqa: E402
from evaluation import class_subset, morphology_report  # noqa: E402
from model import decode_latents, encode_posteriors, refine_latents  # noqa: E402
from morphology import band_sky_noise  # noqa: E402
from morphology_stages_study import print_mean_table, ratios, validation_sets  # noqa: E402 (beside this script)
from samplers import CLASS_CONFIDENCE, fit_sampler  # noqa: E402

WAYS = ("pooled, as chosen", "own, matched", "own, added")
STAGES = ("training means", f"gmm p>={CLASS_CONFIDENCE:g}")


def class_skies(model, galaxies, mu, seed):
    """{k: (the class's training sky, the decoder's own noise on that class)}, per band, in [0, 1] units; mu:
    the training galaxies' posterior means."""
    own_fraction, skies = model.sky_noise, {}
    model.set_sky_noise(0.0)
    for k in galaxies.train_y.unique().tolist():
        rows = galaxies.train_y == k
        with forked_rng(torch.device("cpu"), seed):
            decoded = decode_latents(model, mu[rows])
        skies[k] = (band_sky_noise(galaxies.train_x[rows]), band_sky_noise(decoded))
    model.set_sky_noise(own_fraction)
    return skies


def drawn_each_way(model, galaxies, counts, seed, steps, fraction):
    """{f"{stage}, {way}": {k: n_k images}}; the model draws at `fraction` of its pooled sky afterwards."""
    pooled = model.sky_sigma.flatten().clone()
    mu, sigma = encode_posteriors(model, galaxies.train_x)
    skies = class_skies(model, galaxies, mu, seed)
    kept = fit_sampler("gmm", mu, galaxies.train_y.numpy(), seed, confidence=CLASS_CONFIDENCE, spreads=sigma)
    sky_of = {"pooled, as chosen": lambda k: (fraction, pooled),
              "own, matched": lambda k: (1.0, np.sqrt(np.clip(skies[k][0] ** 2 - skies[k][1] ** 2, 0, None))),
              "own, added": lambda k: (1.0, skies[k][0])}
    drawn = {}
    for k, n in counts.items():
        latents = {STAGES[0]: (mu[class_subset(galaxies.train_y, k, n, seed + 1)], 0),
                   STAGES[1]: (kept.sample(n, seed, label=k), steps)}
        for way in WAYS:
            model.set_sky_noise(*sky_of[way](k))
            for stage, (z, stage_steps) in latents.items():
                with forked_rng(torch.device("cpu"), seed):
                    images = decode_latents(model, refine_latents(model, z, stage_steps))
                drawn.setdefault(f"{stage}, {way}", {})[k] = images
    model.set_sky_noise(fraction, pooled)
    return drawn, {k: {"class sky": (s * 255).round(2).tolist(), "decoder's own": (d * 255).round(2).tolist()}
                   for k, (s, d) in skies.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("evaluations", nargs="+",
                   help="folders with generate.py --evaluate --split val's evaluation_val.json")
    args = p.parse_args()
    lines = []
    for folder in map(Path, args.evaluations):
        chosen, model, galaxies, counts, held, recon = validation_sets(folder)
        if not hasattr(model, "sky_sigma"):
            sys.exit(f"{chosen['checkpoint']}: a model trained without --sky-noise stores no sky to draw")
        seed, steps = chosen["seed"], chosen["samplers"]["refine_steps"]
        drawn, skies = drawn_each_way(model, galaxies, counts, seed, steps, chosen["sky_noise"])
        report = morphology_report(galaxies, held, recon, drawn, counts, seed, progress=False)
        rows = report["samplers"]
        line = {"evaluation": str(folder), "sky_noise": chosen["sky_noise"], "refine_steps": steps,
                "grey_levels": skies, "failures": {name: report["failures"][f"samplers.{name}"] for name in rows}}
        line |= ratios(rows)
        print(json.dumps(line), flush=True)
        lines.append(line)
    print_mean_table(lines)


if __name__ == "__main__":
    main()
