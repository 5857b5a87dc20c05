"""What --sky-noise buys on a trained model, on the validation split:
`python docs/sky_noise_study.py RUN [RUN ...] [--fractions 0 0.25 0.5] [--fid-samples 126]`.

The sky noise is added where the model draws (model.ConvVAE.decode, eval mode), so one checkpoint can be
drawn at any fraction F without training again. For each run and F: the SSIM of the validation
reconstructions, their FID against the validation galaxies (per class at n_k = N / classes, pooled, as
`generate.py --evaluate` measures), and the real-galaxy judge's accuracy on them per class beside its
accuracy on the real validation galaxies. One JSON line per run and fraction. A run without sky noise
(the default model) gets one line, at its own setting."""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from devices import forked_rng, pick_device  # noqa: E402
from evaluation import (class_subset, fid_counts, fid_table, judge_accuracy, real_activations,  # noqa: E402
                        reconstruction_ssim)
from judge import load_or_train_classifier  # noqa: E402
from model import decode_latents, encode_means  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (their best.pt)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.125, 0.25, 0.375, 0.5])
    p.add_argument("--fid-samples", type=int, default=126, help="N per FID side (as generate.py --evaluate)")
    args = p.parse_args()
    device = pick_device("auto")
    inception = fid.load_inception(device=device)
    for run in args.runs:
        model, checkpoint = load_checkpoint(Path(run) / "best.pt", device)
        galaxies = checkpoint_galaxies(checkpoint, progress=False)
        x, y, classes = galaxies.val_x, galaxies.val_y, galaxies.classes
        counts = fid_counts(galaxies, "val", args.fid_samples)
        real = {k: real_activations(galaxies, "val", k, n, 0, inception, device, False) for k, n in counts.items()}
        judge = load_or_train_classifier(galaxies, 30, 0, device, progress=False)
        real_accuracy = judge_accuracy(judge, x, y, classes)
        for fraction in args.fractions if model.sky_noise else [model.sky_noise]:
            model.sky_noise = fraction
            with forked_rng(device, 0):
                ssim = reconstruction_ssim(model, x, y, classes)
            with forked_rng(device, 0):
                recon = decode_latents(model, encode_means(model, x))
            acts = {k: fid.get_activations(recon[class_subset(y, k, n, 0)], inception, device=device, progress=False)
                    for k, n in counts.items()}
            print(json.dumps({"run": run, "sky_noise": fraction, "n": sum(counts.values()),
                              "ssim": round(ssim["mean"], 4), "recon_fid": round(fid_table(acts, real)["overall"], 1),
                              "judge_reconstructions": {k: round(v, 3) for k, v in
                                                        judge_accuracy(judge, recon, y, classes).items()},
                              "judge_real": {k: round(v, 3) for k, v in real_accuracy.items()}}), flush=True)


if __name__ == "__main__":
    main()
