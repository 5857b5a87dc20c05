"""Which way of drawing a class's latents keeps the class, on the validation split:
`python docs/class_sampler_study.py RUN [RUN ...] [--confidences 0.5,0.8,0.9,0.95] [--only WAY,...] [--seed S]`.

For each run (its best.pt) and each way of drawing: the real-galaxy judge's accuracy on 126 class samples
a class divided by its accuracy on the real validation galaxies, per class ("ratio"); the FID of the class
samples against the real validation galaxies at N = 126 (42 a class, as generate.py --evaluate --split val
measures it); the copying statistic Z_U of evaluation.copying_z (near 0: the samples lie as far from the
training galaxies as new galaxies do; far below 0: copies); and the share of draws kept. Samples take one
decode-encode step (--refine-steps), as the preset's runs chose. The ways:
- "gmm": the mixture per class, every draw kept (--class-confidence 0);
- "gmm p>=C": the project's sampler at --class-confidence C (samplers.Sampler.keep_confident), its mixture
  fitted to the training galaxies' posteriors as generate.py fits it;
- "gmm 8 p>=0.95": the same with up to 8 components (DEFAULT_COMPONENTS is 16; 8 until 2026-12-07, night);
- "gmm means p>=0.95": the same fitted to the posteriors' means (the sampler until 2026-12-07, evening);
- "gmm t=T": every draw kept, its Gaussian noise scaled by T (a temperature, as NVAE and Glow draw);
- "gmm knn": keeping the draws whose 10 nearest training latents are mostly of the class drawn;
- "diag16", "diag16 knn": a 16-component diagonal mixture per class, every draw kept / kNN-kept;
- "ledoit-wolf": one Gaussian per class with the Ledoit-Wolf shrunk covariance;
- "flow": the RealNVP sampler, every draw kept;
- "posterior": a training galaxy's posterior q(z|x), i.e. its latent plus the encoder's noise (a copying
  reference).
Everything is fitted on the training split; one JSON line per run."""
import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fid  # noqa: E402
from checkpoint import load_checkpoint  # noqa: E402
from data import checkpoint_galaxies  # noqa: E402
from devices import forked_rng, pick_device  # noqa: E402
from evaluation import copying_z, fid_counts, nearest_distances, real_activations  # noqa: E402
from judge import classify, load_or_train_classifier  # noqa: E402
from model import decode_latents, encode_means, encode_posteriors, refine_latents, standard_normal_latents  # noqa: E402
from samplers import fit_sampler, sample_mixture  # noqa: E402


def tempered(mixture, n, seed, t):
    """sample_mixture's draw with its Gaussian noise scaled by t: the same components, nearer their means."""
    rng = np.random.default_rng(seed)
    eps = standard_normal_latents(n, mixture.means_.shape[1], seed).double().numpy()
    component = rng.choice(len(mixture.weights_), size=n, p=mixture.weights_ / mixture.weights_.sum())
    chol = np.linalg.cholesky(mixture.covariances_)
    return torch.from_numpy(mixture.means_[component] + t * np.einsum("nij,nj->ni", chol[component], eps)).float()


def knn_kept(draw, knn, k, n):
    """The first n of draw(4n, seed) over seeds 0, 1, ... that the kNN classifier gives to class k."""
    chunks, tried = [], 0
    for attempt in range(50):
        z = draw(4 * n, 7919 * attempt)
        chunks.append(z[torch.from_numpy(knn.predict(z.numpy()) == k)])
        tried += len(z)
        if sum(map(len, chunks)) >= n:
            break
    z = torch.cat(chunks)
    return z[:n], len(z) / tried


def ways_of_drawing(model, galaxies, latents, labels, confidences, device, seed=0):
    """{name: draw(k, n) -> (n latents of class k, share of draws kept)}; `seed` fits and draws the `gmm` ways."""
    from sklearn.covariance import LedoitWolf
    from sklearn.mixture import GaussianMixture
    from sklearn.neighbors import KNeighborsClassifier
    classes = list(galaxies.classes)
    sd = encode_posteriors(model, galaxies.train_x)[1]
    gmm = fit_sampler("gmm", latents, labels, seed, confidence=0, spreads=sd)
    knn = KNeighborsClassifier(10).fit(latents.numpy(), labels)
    ways = {"gmm": lambda k, n: (gmm.sample(n, seed, label=k), 1.0)}
    for c in confidences:
        sure = fit_sampler("gmm", latents, labels, seed, confidence=c, spreads=sd)
        ways[f"gmm p>={c:g}"] = (lambda s: lambda k, n: (s.sample(n, seed, label=k), s.kept[k]))(sure)
    fewer = fit_sampler("gmm", latents, labels, seed, components=8, confidence=0.95, spreads=sd)
    ways["gmm 8 p>=0.95"] = lambda k, n: (fewer.sample(n, seed, label=k), fewer.kept[k])
    on_means = fit_sampler("gmm", latents, labels, seed, components=4, confidence=0.95)
    ways["gmm means p>=0.95"] = lambda k, n: (on_means.sample(n, seed, label=k), on_means.kept[k])
    for t in (0.8, 0.6):
        ways[f"gmm t={t}"] = (lambda t: lambda k, n: (tempered(gmm.mixtures[k], n, 0, t), 1.0))(t)
    ways["gmm knn"] = lambda k, n: knn_kept(lambda m, seed: gmm.sample(m, seed, label=k), knn, k, n)
    diag = {}
    for k in classes:
        fitted = GaussianMixture(16, covariance_type="diag", random_state=0).fit(latents[labels == k].numpy())
        diag[k] = SimpleNamespace(means_=fitted.means_, weights_=fitted.weights_,
                                  covariances_=np.stack([np.diag(c) for c in fitted.covariances_]))
    ways["diag16"] = lambda k, n: (sample_mixture(diag[k], n, 0), 1.0)
    ways["diag16 knn"] = lambda k, n: knn_kept(lambda m, seed: sample_mixture(diag[k], m, seed), knn, k, n)
    lw = {k: LedoitWolf().fit(latents[labels == k].numpy()) for k in classes}
    ways["ledoit-wolf"] = lambda k, n: (torch.from_numpy(
        lw[k].location_ + standard_normal_latents(n, latents.shape[1], 0).double().numpy()
        @ np.linalg.cholesky(lw[k].covariance_).T).float(), 1.0)
    flow = fit_sampler("flow", latents, labels, confidence=0)
    ways["flow"] = lambda k, n: (flow.sample(n, 0, label=k), 1.0)

    def posterior(k, n):
        rows = torch.nonzero(torch.from_numpy(labels == k)).flatten()
        pick = rows[torch.randint(len(rows), (n,), generator=torch.Generator().manual_seed(k))]
        return latents[pick] + sd[pick] * standard_normal_latents(n, latents.shape[1], 0), 1.0
    ways["posterior"] = posterior
    return ways


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders (their best.pt)")
    p.add_argument("--samples", type=int, default=126, help="class samples per class for the judge")
    p.add_argument("--refine-steps", type=int, default=1)
    p.add_argument("--confidences", type=lambda t: [float(v) for v in t.split(",")], default=[0.5, 0.8, 0.9, 0.95])
    p.add_argument("--only", type=lambda t: t.split(","), help="the ways to run (default: all)")
    p.add_argument("--seed", type=int, default=0, help="fits and draws the gmm ways (the others draw with 0)")
    args = p.parse_args()
    device = pick_device("auto")
    inception = fid.load_inception(device=device)
    for run in args.runs:
        model, checkpoint = load_checkpoint(Path(run) / "best.pt", device)
        galaxies = checkpoint_galaxies(checkpoint, progress=False)
        classes = list(galaxies.classes)
        judge = load_or_train_classifier(galaxies, 30, 0, device, progress=False)
        said = classify(judge, galaxies.val_x, classes)
        real_accuracy = {k: (said[galaxies.val_y == k] == k).float().mean().item() for k in classes}
        counts = fid_counts(galaxies, "val", 126)
        real = np.concatenate([real_activations(galaxies, "val", k, n, 0, inception, device, False)
                               for k, n in counts.items()])
        latents, labels = encode_means(model, galaxies.train_x), galaxies.train_y.numpy()
        held_out = nearest_distances(encode_means(model, galaxies.val_x), latents)
        result = {"run": run, "seed": args.seed, "classes": classes, "real_val_accuracy": real_accuracy, "ways": {}}
        ways = ways_of_drawing(model, galaxies, latents, labels, args.confidences, device, args.seed)
        for name, draw in ways.items():
            if args.only and name not in args.only:
                continue
            images, kept = {}, {}
            for k in classes:
                z, kept[k] = draw(k, args.samples)
                with forked_rng(device, 0):
                    images[k] = decode_latents(model, refine_latents(model, z, args.refine_steps))
            acts = np.concatenate([fid.get_activations(images[k][:n], inception, None, device, False)
                                   for k, n in counts.items()])
            drawn = torch.cat([encode_means(model, images[k][:n]) for k, n in counts.items()])
            result["ways"][name] = {
                "fid": round(fid.feature_distance(acts, real), 1),
                "ratio": {k: round((classify(judge, images[k], classes) == k).float().mean().item() / real_accuracy[k], 3)
                          for k in classes},
                "copying_z": round(copying_z(nearest_distances(drawn, latents), held_out), 2),
                "kept": {k: round(v, 3) for k, v in kept.items()}}
            print(run, name, result["ways"][name], file=sys.stderr, flush=True)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
