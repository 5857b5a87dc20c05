"""Samplers of the latent space: where to draw z so that the decoder draws galaxies like the training
set, of all classes or of one. An unconditional VAE has no class input, so a class is targeted by a
sampler fitted to where the encoder puts that class's training galaxies.

One interface for all: `fit_sampler(kind, latents, labels)` returns a Sampler whose `.sample(n, seed, label)`
gives n float32 latents (of class `label`, or of all classes in their training proportions). Every
N(0, I) draw, the base noise of the mixture, the second-stage VAE and the flow included, comes from
model.standard_normal_latents, so a seed means the same noise everywhere.

  normal  N(0, I), the VAE's own prior; it knows no classes.
  gmm     a full-covariance Gaussian mixture per class (scikit-learn), fitted to the aggregate posterior
          the decoder was trained on: draws z = mu + sigma * eps of each training galaxy's q(z|x)
          (posterior_draws) where the encoder's sigma is given (fit_training_sampler), else to the means.
          The draws also give a 128-dimensional class enough points for DEFAULT_COMPONENTS full covariances.
  vae2    a second-stage VAE on the latents (Dai & Wipf 2019, "Diagnosing and enhancing VAE models"):
          a small MLP VAE, conditioned on the class, with a learned decoder variance gamma; u ~ N(0, I)
          is decoded to z, plus the decoder's noise. The first-stage latents do not fill N(0, I); the
          second stage's do.
  flow    a RealNVP normalizing flow (Dinh et al. 2017), affine couplings conditioned on the class, fitted
          by maximum likelihood; u ~ N(0, I) is mapped back to z.

Every class-targeted draw keeps only the latents that the class model (CLASS_MODEL: a small regularised MLP
fitted to the training latents) gives to the class drawn with probability >= `confidence` (CLASS_CONFIDENCE;
0 keeps all), drawing again until it has n. A class's galaxies do not fill a Gaussian (edge-ons turned every
way most likely lie around a ring), so a mixture fitted to them puts draws in its middle or among the other
classes, where the decoder draws a blend. On real SDSS galaxies keeping the sure draws lifted the judge's
accuracy on every class, at an FID within 2 of keeping every draw (docs/results.md). The class model is
nonlinear because one class can surround another: a logistic regression was sure of no real round or edge-on
galaxy of the default model (docs/seed-findings.md).
"""
import math
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

from cli import InputError
from model import encode_posteriors, standard_normal_latents

SAMPLERS = ("normal", "gmm", "vae2", "flow")
DEFAULT_SAMPLER = "gmm"  # the best FID of the four where measured side by side (docs/decoder-study.md)
# Chosen on gz1_sdss_sample's validation split by a rule fixed first: the lowest confidence at which the judge tells
# every class's samples apart as well as real galaxies (ratio >= 0.95, every class and seed of the CPU preset), the
# FID equal within its noise. 0.95 with the means' mixture; 0.9 with this one
# (docs/results.md, "`--class-confidence` 0.9, and where class samples lose their morphology").
CLASS_CONFIDENCE = 0.9
# The mixture: up to 16 components fitted to 8 posterior draws a galaxy. On the CPU preset's three models
# (validation, N = 126) 8 components fitted so scored 2.1-6.1 lower FID on every seed than 2 on the means, the most
# those allow in 128 dimensions; 16 scored 2.4 lower than 8 on average over two fits of each (5 of 6 lower), the
# classes as far apart (docs/results.md, "The mixture fitted to the aggregate posterior", "Sixteen components").
DEFAULT_COMPONENTS = 16
POSTERIOR_DRAWS = 8
# A class of many galaxies gets fewer draws each, at most this many in all: the embedded set's ~1,460 galaxies a
# class took 8 of the 17 s of the README's first `--class` draw at 8 draws each, and 4,096 points still allow 31
# full covariances in 128 dimensions (fit_mixture's d + 1 points each). gz1_sdss_sample's classes (~307) keep all 8.
MAX_FIT_POINTS = 4096
MIXTURE_FIT = f"posterior-x{POSTERIOR_DRAWS}-max{MAX_FIT_POINTS}"  # kept with every draw choice measured with it
# The fit's noise is drawn from seed + this, never from the seed the draws are made with: sample(n, seed) with
# the fit's own seed would otherwise reuse the noise the fitted points were made of.
FIT_NOISE_SEED = 999_983
KEEP_ROUNDS = 8          # draws of 4n + 64 latents at most, then the surest n
# A class's draws have collapsed when they lie less than half as far apart as its training latents (median
# distance to the nearest other point, at equal n): samplers that follow the latents measured 0.93-1.41 on
# gz1_sdss_sample, and a spread scaled by s scales that distance by s (docs/samplers.md).
COLLAPSE_SPREAD = 0.5


# The class model's name, kept with every draw choice measured with it (draw_choice). An MLP of 64 units with
# L2 weight 1: the best validation log-loss of six class models on three models' latents, as often right when
# sure as the logistic regression it replaced, and sure of far more real galaxies (docs/seed-findings.md, 5).
CLASS_MODEL = "mlp64-alpha1"


def class_model_at(confidence):
    """The name of the class model that keeps a class's draws at this --class-confidence; None where every
    draw is kept. What evaluation.json and the draw choices record."""
    return CLASS_MODEL if confidence > 0 else None


def latent_class_model():
    """The unfitted class model of the latents (CLASS_MODEL): scikit-learn's MLPClassifier, seeded (imported
    here: scikit-learn costs a second at start-up)."""
    from sklearn.neural_network import MLPClassifier
    return MLPClassifier((64,), alpha=1.0, max_iter=500, random_state=0)


def fit_latent_class_model(latents, labels):
    """latent_class_model fitted to (latents, labels) in float64 on one BLAS thread, quietly: it is judged by its
    validation log-loss, not by whether Adam's last steps converged."""
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings(), one_blas_thread():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return latent_class_model().fit(np.asarray(latents, np.float64), labels)


def one_blas_thread():
    """A context in which numpy's BLAS and OpenMP run one thread: scikit-learn's mixture and MLP multiply matrices of
    32-128 columns, where a second thread costs more than it gives (the embedded set's mixture fit: 4.2 s on 2
    threads, 1.5 s on one; docs/performance.md). threadpoolctl comes with scikit-learn."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(1)


def check_confidence(confidence):
    if not 0 <= confidence < 1:
        raise InputError(f"--class-confidence {confidence}: must be at least 0 (0: keep every draw) and below 1")


def check_kind(kind):
    if kind not in SAMPLERS:
        raise InputError(f"--sampler {kind}: choose {', '.join(SAMPLERS)}")


class Sampler:
    """A fitted sampler. `classes`: the class ids it can target (empty for normal); `fit_seconds`: how long
    fitting took on this machine; `kept` and `drawn`: per class, the share of its latents the last draw kept
    and of how many; `latents`, `labels`: what it was fitted to."""
    kind, classes, fit_seconds, confidence, latent_classifier = None, (), 0.0, 0.0, None

    def __init__(self, latent_dim, classes=(), counts=()):
        self.latent_dim, self.classes, self.counts = latent_dim, tuple(int(k) for k in classes), tuple(counts)
        self.kept, self.drawn, self.latents, self.labels = {}, {}, None, None

    def sample(self, n, seed=0, label=None):
        """n latents (float32 tensor, n x latent_dim) of class `label`, or of any class (labels drawn in
        their training proportions) when label is None."""
        if label is not None and int(label) not in self.classes:
            raise InputError(f"the {self.kind} sampler cannot draw class {label}: it was fitted to "
                             f"{', '.join(map(str, self.classes)) or 'no classes'}")
        if label is not None or not self.classes:
            return self._sample_kept(n, seed, label)
        # A class per sample, then each class's samples drawn with its own seed offset, in one order.
        rng = np.random.default_rng(seed)
        labels = rng.choice(self.classes, size=n, p=np.array(self.counts) / sum(self.counts))
        z = torch.empty(n, self.latent_dim)
        for k in self.classes:
            where = torch.from_numpy(labels == k)
            if where.any():
                z[where] = self._sample_kept(int(where.sum()), seed + 1000 * k, k)
        return z

    def keep_confident(self, latents, labels, confidence):
        """From now on keep only draws of class k that the class model (latent_class_model) fitted to
        (latents, labels) gives to k with probability >= confidence; 0, or fewer than two classes: keep
        every draw."""
        self.confidence = confidence
        if confidence > 0 and len(self.classes) > 1:
            self.latent_classifier = fit_latent_class_model(latents, labels)

    def _sample_kept(self, n, seed, label):
        if self.latent_classifier is None or label is None:
            return self._sample(n, seed, label)
        column = list(self.latent_classifier.classes_).index(int(label))
        drawn, sure = [], []
        for attempt in range(KEEP_ROUNDS):
            drawn.append(self._sample(4 * n + 64, seed + 10_007 * attempt, label))
            sure.append(self.latent_classifier.predict_proba(drawn[-1].double().numpy())[:, column])
            if sum((p >= self.confidence).sum() for p in sure) >= n:
                break
        z, sure = torch.cat(drawn), np.concatenate(sure)
        keep = sure >= self.confidence
        self.kept[int(label)], self.drawn[int(label)] = float(keep.mean()), len(keep)
        if keep.sum() >= n:
            return z[torch.from_numpy(keep)][:n]
        # A model whose classes overlap everywhere: the n surest draws, in the order drawn, and a word.
        print(f"warning: class {label}: only {keep.sum()} of {len(z)} latents drawn by the "
              f"{self.kind} sampler reach --class-confidence {self.confidence:g}; drawing its {n} surest",
              file=sys.stderr)
        return z[torch.from_numpy(np.sort(np.argsort(-sure, kind="stable")[:n]))]

    def collapse(self, label, drawn, seed=0):
        """Have the draws of class `label` collapsed? `drawn`: their latents (n x d), as callers measure them
        the encoder's means of the decoded images, so that both sides are encodings of images like the training
        latents. {"kept": the share of the last draw of the class kept at the confidence (None when every draw
        is kept), "spread": spread_ratio of the draws against the class's training latents, "collapsed": one
        line saying why (no draw confident, or draws piled together), or None}."""
        real = torch.as_tensor(self.latents[self.labels == int(label)])
        spread, kept = spread_ratio(torch.as_tensor(drawn).float(), real.float(), seed), self.kept.get(int(label))
        reasons = []
        if kept == 0:
            reasons.append(f"none of its {self.drawn[int(label)]:,} draws reaches p >= {self.confidence:g}")
        if spread < COLLAPSE_SPREAD:
            reasons.append(f"its draws lie {spread:.2f}x as far apart as the class's training latents "
                           f"(< {COLLAPSE_SPREAD:g})")
        return {"kept": kept, "spread": spread, "collapsed": "; ".join(reasons) or None}


def median_neighbour_distance(z):
    """The median over the points of z (n x d) of the distance to the nearest other point (computed directly:
    cdist's matrix product rounds near-equal points' 0 to ~1e-3)."""
    d = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
    return d.fill_diagonal_(math.inf).min(1).values.median().item()


def spread_ratio(drawn, real, seed=0):
    """How far apart draws lie against real latents: the median nearest-neighbour distance among the draws
    over that among the real latents, at equal n (seeded subsets of the larger), as that distance shrinks
    with n. About 1 for draws that follow the real latents; near 0 for draws piled on a few points."""
    n = min(len(drawn), len(real))
    if n < 2:
        raise ValueError(f"spread_ratio needs at least 2 points a side, got {len(drawn)} and {len(real)}")
    g = torch.Generator().manual_seed(seed)
    drawn, real = (z[torch.randperm(len(z), generator=g)[:n]] for z in (drawn, real))
    return median_neighbour_distance(drawn) / max(median_neighbour_distance(real), 1e-12)


class NormalSampler(Sampler):
    kind = "normal"

    def _sample(self, n, seed, label):
        return standard_normal_latents(n, self.latent_dim, seed)


# ---------------------------------------------------------------- Gaussian mixture

def fit_mixture(latents, components=DEFAULT_COMPONENTS, seed=0):
    """A full-covariance Gaussian mixture fitted to latents, with at most one component per latent_dim + 1
    points, so that no component's covariance is fitted to fewer points than it has dimensions."""
    from sklearn.mixture import GaussianMixture
    z = np.asarray(latents, dtype=np.float64)
    n, d = z.shape
    if n < 2:
        raise InputError(f"need at least 2 latents to fit a sampler, got {n}")
    k = max(1, min(components, n // (d + 1)))
    with one_blas_thread():
        return GaussianMixture(k, covariance_type="full", random_state=seed).fit(z)


def sample_mixture(mixture, n, seed=0):
    """n latents from a fitted GaussianMixture. Drawn here rather than by GaussianMixture.sample, which
    returns its samples grouped by component."""
    rng = np.random.default_rng(seed)
    eps = standard_normal_latents(n, mixture.means_.shape[1], seed).double().numpy()
    component = rng.choice(len(mixture.weights_), size=n, p=mixture.weights_ / mixture.weights_.sum())
    chol = np.linalg.cholesky(mixture.covariances_)
    return torch.from_numpy(mixture.means_[component] + np.einsum("nij,nj->ni", chol[component], eps)).float()


def posterior_draws(means, spreads, seed=0):
    """Draws z = mu + sigma * eps of each galaxy's posterior q(z|x) (means, spreads: n x d): POSTERIOR_DRAWS
    a galaxy, fewer where that would pass MAX_FIT_POINTS (never fewer than one), with noise from
    seed + FIT_NOISE_SEED. The aggregate posterior the decoder was trained on, as points a mixture is fitted to."""
    n, d = means.shape
    draws = max(1, min(POSTERIOR_DRAWS, MAX_FIT_POINTS // max(n, 1)))
    eps = standard_normal_latents(draws * n, d, seed + FIT_NOISE_SEED).numpy()
    return np.tile(means, (draws, 1)) + np.tile(spreads, (draws, 1)) * eps


class MixtureSampler(Sampler):
    kind = "gmm"

    def __init__(self, latents, labels, components=DEFAULT_COMPONENTS, seed=0, spreads=None):
        super().__init__(latents.shape[1], *np.unique(labels, return_counts=True))
        def fitted_to(k):
            z = latents[labels == k]
            return z if spreads is None else posterior_draws(z, spreads[labels == k], seed + k)
        self.mixtures = {k: fit_mixture(fitted_to(k), components, seed) for k in self.classes}

    def _sample(self, n, seed, label):
        return sample_mixture(self.mixtures[int(label)], n, seed)


# ---------------------------------------------------------------- small torch models on the latents

def mlp(d_in, d_out, width, depth=2):
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.SiLU()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class TorchSampler(Sampler):
    """Shared by vae2 and flow: latents standardised per class and dimension, one-hot classes, and training by
    Adam with a held-out tenth of the latents choosing the epoch to keep (the lowest held-out loss), so a
    few thousand latents are not memorised. A step of these small MLPs costs far less than 4x more at 4x
    the batch (the time goes to launching operations), so the batch grows with the set, to about 8 steps an
    epoch between 128 and 512 latents, and the learning rate with its square root: on the embedded set's
    3,951 training latents that fits vae2 and flow 1.5-2.9x faster at the same or a lower held-out loss; a
    small set (gz1_sdss_sample's 921) keeps 128, where fewer steps fitted the flow worse (docs/performance.md,
    "Fitting the samplers")."""

    def __init__(self, latents, labels, seed=0, epochs=200, batch_size=None, lr=None):
        super().__init__(latents.shape[1], *np.unique(labels, return_counts=True))
        z = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
        # Standardised per class: with the class means left in, the class input alone explained most of the
        # variance, and the second-stage VAE learnt to ignore u (its samples were the class mean).
        onehot = self.onehot(labels)
        self.mean = torch.stack([z[onehot[:, i] > 0].mean(0) for i in range(len(self.classes))])
        self.std = torch.stack([z[onehot[:, i] > 0].std(0) if (onehot[:, i] > 0).sum() > 1 else torch.ones(z.shape[1])
                                for i in range(len(self.classes))]).clamp_min(1e-6)
        z = (z - onehot @ self.mean) / (onehot @ self.std)
        torch.manual_seed(seed)
        self.net = self.build()
        self.fit(z, onehot, seed, epochs, batch_size, lr)

    def onehot(self, labels):
        labels = torch.as_tensor(np.asarray(labels).astype(np.int64))
        return (labels[:, None] == torch.tensor(self.classes)[None]).float()

    def fit(self, z, c, seed, epochs, batch_size, lr):
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(z), generator=g)
        held = order[: max(1, len(z) // 10)] if len(z) >= 20 else order  # tiny sets: no room to hold out
        train = order[len(held):] if len(z) >= 20 else order
        self.held = held
        batch_size = batch_size or min(512, max(128, round(len(train) / 8)))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=lr or 1e-3 * math.sqrt(batch_size / 128))
        best, best_state = math.inf, None
        for epoch in range(epochs):
            self.warmup = min(1.0, (epoch + 1) / max(1, epochs // 4))  # vae2's KL weight: 0 -> 1 over a quarter
            self.net.train()
            for index in train[torch.randperm(len(train), generator=g)].split(batch_size):
                loss = self.loss(z[index], c[index], g)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            self.net.eval()
            with torch.no_grad():
                held_loss = self.loss(z[held], c[held], torch.Generator().manual_seed(seed)).item()
            if held_loss < best:
                best, best_state = held_loss, {k: v.clone() for k, v in self.net.state_dict().items()}
        self.net.load_state_dict(best_state)
        self.net.eval()
        self.held_out_loss = best

    @torch.no_grad()
    def _sample(self, n, seed, label):
        # u and any noise the model adds after it from one seeded draw
        u = standard_normal_latents(n, self.latent_dim * (1 + self.noise_draws), seed)
        c, i = self.onehot(np.full(n, int(label))), self.classes.index(int(label))
        return self.generate(*u.chunk(1 + self.noise_draws, 1), c=c) * self.std[i] + self.mean[i]


class SecondStageVAE(TorchSampler):
    """Dai & Wipf's second stage: z -> u -> z with u of the same dimension as z, an MLP each way, and a
    decoder variance gamma. Their loss, per latent: ||z - decoder(u)||^2 / (2 gamma) + (d/2) log gamma +
    KL(q(u|z) || N(0, I)). As gamma shrinks the reconstruction term dominates, and the aggregate posterior
    of u is pushed onto N(0, I), which is what lets u ~ N(0, I) decode to real latents. Gamma is not a
    slowly learnt parameter here but its optimum, the batch's mean squared error per dimension (Rybkin et
    al. 2021, "Simple and effective VAE training with calibrated decoders"): a learnt log gamma moved too
    slowly, and the decoder ignored u. Both MLPs see the class one-hot, so one model serves every class."""
    kind = "vae2"
    noise_draws = 1  # z = decoder(u) + sqrt(gamma) * eps

    def build(self, width=256):
        d, c = self.latent_dim, len(self.classes)
        return nn.ModuleDict({"encoder": mlp(d + c, 2 * d, width), "decoder": mlp(d + c, d, width)})

    def squared_error(self, z, c, generator):
        """Per latent: ||z - decoder(u)||^2 with u drawn from q(u | z); and the KL term's mean and log-variance."""
        mu, logvar = self.net.encoder(torch.cat([z, c], 1)).chunk(2, 1)
        u = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        return ((z - self.net.decoder(torch.cat([u, c], 1))) ** 2).sum(1), mu, logvar

    def fit(self, z, c, seed, *settings):
        super().fit(z, c, seed, *settings)
        with torch.no_grad():  # the decoder's variance on latents it did not learn from (see generate)
            squared_error = self.squared_error(z[self.held], c[self.held], torch.Generator().manual_seed(seed))[0]
        self.gamma = float(squared_error.mean() / z.shape[1])

    def loss(self, z, c, generator):
        squared_error, mu, logvar = self.squared_error(z, c, generator)
        gamma = (squared_error.mean() / z.shape[1]).detach().clamp_min(1e-6)
        nll = squared_error / (2 * gamma) + 0.5 * z.shape[1] * gamma.log()
        kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
        # The KL term warms up during training (held-out losses use it in full): starting at full weight,
        # the encoder's information cost won, and the decoder learnt to ignore u.
        return (nll + (self.warmup if self.net.training else 1.0) * kl).mean()

    def generate(self, u, eps, c):
        """A draw of the model fitted: decoder(u) + sqrt(gamma) * eps, not decoder(u) alone. The decoder gives
        the mean of z given u; what u does not encode is in gamma, the decoder's variance (measured on the
        held-out latents: the training ones it partly learnt by heart). Dai & Wipf draw the mean, as their
        gamma goes to 0; on a few thousand latents it does not (its u cannot hold 32-128 dimensions of
        them), and the mean alone drew every class near its middle (issue 43, gz1_sdss_sample's vaegan-cpu
        model: no draw sure of its class, all judged spirals; before and after: docs/samplers.md)."""
        return self.net.decoder(torch.cat([u, c], 1)) + math.sqrt(self.gamma) * eps


class Coupling(nn.Module):
    """One RealNVP affine coupling: the dimensions where mask is 0 are scaled and shifted by functions of
    those where it is 1 (and of the class); log-scales pass through tanh to keep the flow stable."""

    def __init__(self, mask, n_classes, width):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = mlp(len(mask) + n_classes, 2 * len(mask), width)

    def forward(self, x, c):  # data -> noise: (u, log|det du/dx|)
        s, t = self.net(torch.cat([x * self.mask, c], 1)).chunk(2, 1)
        s = torch.tanh(s) * (1 - self.mask)
        return x * self.mask + (1 - self.mask) * (x * s.exp() + t), s.sum(1)

    def inverse(self, u, c):
        s, t = self.net(torch.cat([u * self.mask, c], 1)).chunk(2, 1)
        s = torch.tanh(s) * (1 - self.mask)
        return u * self.mask + (1 - self.mask) * (u - t) * (-s).exp()


class FlowSampler(TorchSampler):
    """A class-conditional RealNVP of 8 couplings on a seeded random half-split of the dimensions each,
    fitted by maximum likelihood: the exact density, unlike the mixture's few Gaussians."""
    kind = "flow"
    noise_draws = 0

    def build(self, couplings=8, width=128):
        d = self.latent_dim
        masks = [torch.zeros(d) for _ in range(couplings)]
        for i, mask in enumerate(masks):
            # Alternate a random half with its complement, so each dimension is transformed every other layer.
            if i % 2 == 0:
                half = torch.randperm(d)[: d // 2] if d > 1 else torch.tensor([], dtype=torch.long)
                mask[half] = 1
            else:
                mask[:] = 1 - masks[i - 1]
        return nn.ModuleList(Coupling(m, len(self.classes), width) for m in masks)

    def loss(self, z, c, generator):
        log_det = torch.zeros(len(z))
        for layer in self.net:
            z, ld = layer(z, c)
            log_det = log_det + ld
        return (0.5 * (z ** 2).sum(1) - log_det).mean() / z.shape[1]  # nats per dimension, less a constant

    def generate(self, u, c):
        for layer in reversed(self.net):
            u = layer.inverse(u, c)
        return u


# ---------------------------------------------------------------- the one entry point

def fit_sampler(kind, latents, labels=None, seed=0, components=DEFAULT_COMPONENTS, epochs=None,
                confidence=CLASS_CONFIDENCE, spreads=None):
    """A Sampler of `kind` fitted to latents (N x d; the encoder's training means), per class when labels
    (N class ids) are given, else as one class. `epochs` trains vae2 and flow (default 200); `components`
    caps the mixture; `spreads` (N x d, the encoder's sigma), given, fits the mixture to the posteriors;
    `confidence`: see Sampler.keep_confident. Records its fit time."""
    check_kind(kind)
    check_confidence(confidence)
    z = np.asarray(latents, dtype=np.float32)
    if z.ndim != 2 or len(z) < 2:
        raise InputError(f"need at least 2 latents to fit a sampler, got {len(z)}")
    labels = np.zeros(len(z), dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64)
    start = time.perf_counter()
    if kind == "normal":
        sampler = NormalSampler(z.shape[1])
    elif kind == "gmm":
        spreads = None if spreads is None else np.asarray(spreads, np.float32)
        sampler = MixtureSampler(z, labels, components, seed, spreads)
    else:
        sampler = (SecondStageVAE if kind == "vae2" else FlowSampler)(z, labels, seed, epochs or 200)
    sampler.keep_confident(z, labels, confidence)
    sampler.latents, sampler.labels = z, labels  # what collapse() compares a class's draws with
    sampler.fit_seconds = time.perf_counter() - start
    return sampler


def fit_training_sampler(kind, model, galaxies, seed=0, components=DEFAULT_COMPONENTS, epochs=None, posteriors=None,
                         confidence=CLASS_CONFIDENCE):
    """A sampler of `kind` fitted to where `model`'s encoder puts the training galaxies (their posteriors'
    (mu, sigma), or `posteriors` when the caller has them already), per class: what generate.py, the explorer
    and the evaluation draw from."""
    mu, sigma = encode_posteriors(model, galaxies.train_x) if posteriors is None else posteriors
    return fit_sampler(kind, mu, galaxies.train_y, seed, components, epochs, confidence, sigma)
