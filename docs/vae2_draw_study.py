"""vae2's draw with and without the decoder's noise, and the collapse test, on a checkpoint's training latents:
`python docs/vae2_draw_study.py CHECKPOINT [SAMPLER ...]` (default: vae2 gmm), from the repository root with
PYTHONPATH=. (docs/samplers.md holds what it measured).

Each sampler is fitted once to the encoder's means of the training galaxies (keeping draws at p >= 0.95, the
default when it was measured; 0.9 now); vae2 is then drawn as before its fix (decoder(u): gamma set to 0) and
after (decoder(u) + sqrt(gamma) eps). Per class, of 1,024 raw draws (before the confidence filter): the share
the class model of the training latents (samplers.latent_class_model) puts at p >= 0.95, the mean std per
dimension of the draws over the class's latents', and samplers.spread_ratio against the class's latents, of
the draws themselves and of the encoder's means of their decoded images (the first 256), with
samplers.Sampler.collapse's verdict on the latter."""
import sys
import time

import torch

import samplers
from checkpoint import load_checkpoint
from data import checkpoint_galaxies
from model import decode_latents, encode_means

DRAWS, IMAGES, CONFIDENCE = 1024, 256, 0.95


def main(path, kinds):
    model, checkpoint = load_checkpoint(path)
    galaxies = checkpoint_galaxies(checkpoint, progress=False)
    latents, labels = encode_means(model, galaxies.train_x), galaxies.train_y.numpy()
    print(f"{path}: epoch {checkpoint['epoch']}, latents {tuple(latents.shape)}")
    for kind in kinds:
        start = time.time()
        sampler = samplers.fit_sampler(kind, latents, labels, confidence=CONFIDENCE)
        gamma = getattr(sampler, "gamma", None)
        print(f"{kind}: fitted in {time.time() - start:.0f} s" + ("" if gamma is None else f", gamma {gamma:.4f}"))
        for name, noise in ({"before (mean)": 0.0, "after (+ noise)": gamma} if gamma is not None else {"": None}).items():
            if noise is not None:
                sampler.gamma = noise
            for k in sampler.classes:
                z, real = sampler._sample(DRAWS, 0, k), torch.as_tensor(latents[labels == k])
                column = list(sampler.latent_classifier.classes_).index(k)
                sure = sampler.latent_classifier.predict_proba(z.double().numpy())[:, column] >= CONFIDENCE
                sampler.kept[k], sampler.drawn[k] = float(sure.mean()), len(sure)
                verdict = sampler.collapse(k, encode_means(model, decode_latents(model, z[:IMAGES])))
                print(f"  {kind} {name} class {k}: kept {sure.mean():.3f} of {DRAWS} at p >= {CONFIDENCE}; std draws / "
                      f"class {z.std(0).mean() / real.std(0).mean():.2f}; spread ratio, latents "
                      f"{samplers.spread_ratio(z, real):.2f}, images' latents {verdict['spread']:.2f}; "
                      f"collapsed: {verdict['collapsed']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["vae2", "gmm"])
