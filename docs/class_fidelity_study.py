"""Where a model's class samples lose their class, on the validation split:
`python docs/class_fidelity_study.py RUN [RUN ...] [--samples 126]`.

The real-galaxy judge (generate.py --evaluate's) looks at `gmm` class samples (one decode-encode step) drawn
in four ways, and gives its accuracy per class divided by its accuracy on the real validation galaxies:
- sky noise "matched": the noise that, added in quadrature to what the decoder already draws (measured on
  its reconstructions of the training split), gives the training split's sky (morphology.band_sky_noise);
- matched "per class": the same from each class's own training galaxies;
- "as saved": the checkpoint's own --sky-noise, with the mixture fitted to the training latents;
- "8 views": as saved, with the mixture fitted to the latents of all 8 turns and mirrors of the training
  galaxies.
Then the judge's confusion matrices (rows: the class drawn or true) for real validation galaxies, their
reconstructions and the as-saved samples. Everything is fixed on the training split; one JSON line per run."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from devices import forked_rng, pick_device  # noqa: E402
from judge import classify, load_or_train_classifier  # noqa: E402
from model import decode_latents, encode_means, refine_latents  # noqa: E402
from morphology import band_sky_noise  # noqa: E402
from samplers import fit_sampler  # noqa: E402


def confusion(judge, images, labels, classes):
    said = classify(judge, images, classes)
    return [[round(((said == j) & (labels == k)).sum().item() / max(1, (labels == k).sum().item()), 3)
             for j in classes] for k in classes]


def grey_levels(sigma):
    return [round(float(v) * 255, 2) for v in sigma]


def class_samples(model, sampler, classes, n, sky_sigma=None):
    """n refined gmm samples of each class, drawn with sky_sigma (per class, or one for all) if given."""
    saved = model.sky_noise, model.sky_sigma.clone()
    images = []
    for k in classes:
        if sky_sigma is not None:
            model.sky_noise = 1.0
            model.sky_sigma.copy_(torch.as_tensor(sky_sigma[k] if isinstance(sky_sigma, dict) else sky_sigma)
                                  .view(1, -1, 1, 1))
        with forked_rng(next(model.parameters()).device, 0):
            images.append(decode_latents(model, refine_latents(model, sampler.sample(n, 0, label=k), 1)))
    model.sky_noise = saved[0]
    model.sky_sigma.copy_(saved[1])
    return torch.cat(images), torch.tensor(classes).repeat_interleave(n)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (their best.pt), trained with --sky-noise > 0")
    p.add_argument("--samples", type=int, default=126, help="class samples drawn per class")
    args = p.parse_args()
    device = pick_device("auto")
    for run in args.runs:
        model, checkpoint = load_checkpoint(Path(run) / "best.pt", device)
        if not model.sky_noise:
            print(f"{run}: drawn without --sky-noise, so there is no sky noise to match", file=sys.stderr)
            sys.exit(2)
        galaxies = checkpoint_galaxies(checkpoint, progress=False)
        classes, x, y = list(galaxies.classes), galaxies.train_x, galaxies.train_y
        judge = load_or_train_classifier(galaxies, 30, 0, device, progress=False)
        real = confusion(judge, galaxies.val_x, galaxies.val_y, classes)
        latents = encode_means(model, x)
        as_saved = model.sky_noise
        model.sky_noise = 0.0
        with forked_rng(device, 0):
            mean_images = decode_latents(model, latents)

        def matched(keep):
            target, carried = band_sky_noise(x[keep]), band_sky_noise(mean_images[keep])
            return np.sqrt(np.clip(target ** 2 - carried ** 2, 0, None)).astype(np.float32)
        skies = {"matched": matched(slice(None)),
                 "per class": {k: matched(y == k) for k in classes}}
        model.sky_noise = as_saved
        views = [torch.rot90(v, t, dims=(2, 3)) for v in (x, x.flip(3)) for t in range(4)][1:]  # [0] is x
        samplers = {"one view": fit_sampler("gmm", latents, y, confidence=0),  # every draw, as before issue 26's guard
                    "8 views": fit_sampler("gmm", torch.cat([latents] + [encode_means(model, v) for v in views]),
                                           y.repeat(8), confidence=0)}
        drawn = {"matched": class_samples(model, samplers["one view"], classes, args.samples, skies["matched"]),
                 "per class": class_samples(model, samplers["one view"], classes, args.samples, skies["per class"]),
                 "as saved": class_samples(model, samplers["one view"], classes, args.samples),
                 "8 views": class_samples(model, samplers["8 views"], classes, args.samples)}
        with forked_rng(device, 0):
            reconstructions = decode_latents(model, encode_means(model, galaxies.val_x))
        confusions = {name: confusion(judge, *images, classes) for name, images in drawn.items()}
        ratios = {name: [round(c[i][i] / real[i][i], 3) for i in range(len(classes))] for name, c in confusions.items()}
        print(json.dumps({"run": run, "classes": classes, "ratio_to_real": ratios,
                          "sky_grey_levels": {"matched": grey_levels(skies["matched"]),
                                              **{f"class {k}": grey_levels(v) for k, v in skies["per class"].items()}},
                          "confusion": {"real": real,
                                        "reconstructions": confusion(judge, reconstructions, galaxies.val_y, classes),
                                        "as saved": confusions["as saved"]}}), flush=True)


if __name__ == "__main__":
    main()
