"""The test reconstruction FID of adversarial runs with and without the FID choice of best.pt, over seeds:
`python docs/fid_choice_study.py RUN [RUN ...] [--fid-samples 126]`.

Each RUN was trained with --fid-every K, so its best.pt is the epoch of the lowest validation FID and its
last.pt the last epoch (what best.pt was before). Both are measured as `generate.py --evaluate` measures
the reconstructions: per class at n_k = N / classes test galaxies, pooled, real side cached. Prints one row a
run and the mean and standard deviation of each column over the runs."""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from devices import forked_rng, pick_device  # noqa: E402
from evaluation import class_subset, fid_counts, fid_table, real_activations  # noqa: E402
from model import decode_latents, encode_means  # noqa: E402


def test_reconstruction_fid(model, galaxies, num_samples, inception, device, seed=0):
    counts = fid_counts(galaxies, "test", num_samples)
    x, y = galaxies.test_x, galaxies.test_y
    real = {k: real_activations(galaxies, "test", k, n, seed, inception, device, False) for k, n in counts.items()}
    with forked_rng(next(model.parameters()).device, seed):
        recon = {k: decode_latents(model, encode_means(model, x[class_subset(y, k, n, seed)])) for k, n in counts.items()}
    acts = {k: fid.get_activations(images, inception, device=device, progress=False) for k, images in recon.items()}
    return fid_table(acts, real)["overall"], sum(counts.values())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders trained with --fid-every")
    p.add_argument("--fid-samples", type=int, default=126, help="N per FID side (as generate.py --evaluate)")
    args = p.parse_args()
    device = pick_device("auto")
    inception = fid.load_inception(device=device)
    rows = []
    for run in args.runs:
        best_model, best = load_checkpoint(Path(run) / "best.pt", device)
        last_model, last = load_checkpoint(Path(run) / "last.pt", device)
        galaxies = checkpoint_galaxies(best, progress=False)
        best_fid, n = test_reconstruction_fid(best_model, galaxies, args.fid_samples, inception, device)
        last_fid, _ = test_reconstruction_fid(last_model, galaxies, args.fid_samples, inception, device)
        val = {h["epoch"]: h["val_fid"] for h in last["history"] if "val_fid" in h}
        rows.append((best_fid, last_fid))
        print(f"{run}: N = {n}; best.pt epoch {best['epoch']} (validation FID {val.get(best['epoch'], float('nan')):.1f}) "
              f"test {best_fid:.1f}; last.pt epoch {last['epoch']} test {last_fid:.1f}; validation FIDs {val}")
    best_fids, last_fids = np.array(rows).T
    for name, values in (("FID-chosen best.pt", best_fids), ("last epoch", last_fids)):
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        print(f"{name:>20}: mean {values.mean():.1f}, sd {sd:.1f} ({100 * sd / values.mean():.0f}% of the mean) "
              f"over {len(values)} runs")


if __name__ == "__main__":
    main()
