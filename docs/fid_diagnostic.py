"""What a run's reconstruction FID is made of, for the README's decoder section:
`python docs/fid_diagnostic.py RUN [--blur 0.7 1.0 1.5] [--noise 0.01 0.02]`.

Every FID is against the run's whole test split, at its size N on both sides (standard weights): the real
test galaxies blurred by a Gaussian of each --blur sigma (px), the reconstructions (posterior mean), and the
reconstructions with white noise of each --noise sigma added (clipped to [0, 1]). If blurred real galaxies
score far below the reconstructions, and noise does not move them, the FID is counting structure the decoder
drops, not blur or missing noise."""
import argparse
import sys
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from model import decode_latents, encode_means  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder or checkpoint")
    p.add_argument("--blur", type=float, nargs="*", default=[0.7, 1.0, 1.5], help="Gaussian sigmas (px)")
    p.add_argument("--noise", type=float, nargs="*", default=[0.01, 0.02], help="noise sigmas (0-1 pixel units)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    model, checkpoint = load_checkpoint(args.run)
    test_x = checkpoint_galaxies(checkpoint).test_x
    inception = fid.load_inception()
    real = fid.calculate_statistics(fid.get_activations(test_x, inception, progress=False))

    def distance(images):
        return fid.frechet_distance(*real, *fid.calculate_statistics(fid.get_activations(images, inception, progress=False)))

    print(f"FID against the test split, N = {len(test_x)} on both sides")
    for sigma in args.blur:
        print(f"real test galaxies blurred, sigma {sigma} px: {distance(gaussian_blur(test_x, 9, sigma)):.1f}")
    reconstructions = decode_latents(model, encode_means(model, test_x))
    print(f"reconstructions: {distance(reconstructions):.1f}")
    generator = torch.Generator().manual_seed(args.seed)
    for sigma in args.noise:
        noisy = (reconstructions + sigma * torch.randn(reconstructions.shape, generator=generator)).clamp(0, 1)
        print(f"reconstructions + noise sigma {sigma}: {distance(noisy):.1f}")


if __name__ == "__main__":
    main()
