"""Measure trained runs side by side for the README's variant table and draw one figure of the same
test galaxies reconstructed by each: `python docs/compare_variants.py RUN... --out docs/variants`
(`--figure-only`: just the figure).

Per run (its best.pt): test SSIM of posterior-mean reconstructions, FID of those reconstructions and of
N(0, I) samples against the test split (the first N test galaxies; N says how many), parameters, and the
training time from the run's history. Writes OUT.jsonl (one line per run, appended) and OUT.png."""
import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from losses import ssim  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from model import decode_latents, encode_means, standard_normal_latents  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("runs", nargs="+")
    p.add_argument("--names", nargs="+", help="one label per run (default: folder names)")
    p.add_argument("--num", type=int, default=90, help="images per FID (capped by the test split)")
    p.add_argument("--show", type=int, default=10, help="test galaxies in the figure")
    p.add_argument("--out", default="docs/variants")
    p.add_argument("--figure-only", action="store_true", help="draw OUT.png, measure nothing")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    names = args.names or [Path(r).name for r in args.runs]
    inception, real, rows = fid.load_inception(device="cpu"), None, []
    measured = ({json.loads(line)["run"] for line in open(f"{args.out}.jsonl")}
                if Path(f"{args.out}.jsonl").is_file() else set())
    for run, name in zip(args.runs, names):
        torch.manual_seed(0)  # a --decoder-noise model draws its noise from the global RNG: same figure each time
        model, checkpoint = load_checkpoint(run)
        galaxies = checkpoint_galaxies(checkpoint, progress=False)
        test = galaxies.test_x[:args.num]
        shown = galaxies.test_x[torch.linspace(0, len(galaxies.test_x) - 1, args.show).long()]  # every class
        if str(run) in measured or args.figure_only:  # already in OUT.jsonl: only its row of the figure
            rows.append((name, decode_latents(model, encode_means(model, shown))))
            continue
        if real is None:
            real = fid.calculate_statistics(fid.get_activations(test, inception, progress=False))
        start = time.time()
        recon = decode_latents(model, encode_means(model, test))
        samples = decode_latents(model, standard_normal_latents(len(test), model.latent_dim, seed=0))
        fid_of = lambda images: float(fid.frechet_distance(  # noqa: E731
            *fid.calculate_statistics(fid.get_activations(images, inception, progress=False)), *real))
        full_recon = decode_latents(model, encode_means(model, galaxies.test_x))
        row = {"name": name, "run": str(run), "config": checkpoint["config"], "epoch": checkpoint["epoch"],
               "test_ssim": ssim(full_recon, galaxies.test_x, per_image=True).mean().item(),
               "n_test_ssim": len(galaxies.test_x), "recon_fid": fid_of(recon), "sample_fid": fid_of(samples),
               "n_fid": len(test), "params": sum(t.numel() for t in model.parameters()),
               "train_minutes": json.loads((Path(run) / "train_seconds.json").read_text())["seconds"] / 60
               if (Path(run) / "train_seconds.json").is_file() else None,
               "eval_seconds": round(time.time() - start, 1)}
        print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)
        with open(f"{args.out}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append((name, decode_latents(model, encode_means(model, shown))))
    grids = [("test galaxies", shown)] + rows
    fig, axes = plt.subplots(len(grids), 1, figsize=(args.show * 0.9, len(grids) * 1.05))
    for ax, (name, images) in zip(axes, grids):
        ax.imshow(make_grid(images, nrow=args.show, padding=1).permute(1, 2, 0).numpy())
        ax.set_axis_off()
        ax.set_title(name, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=110)


if __name__ == "__main__":
    main()
