"""Samplers of the latent space: where to draw z so that the decoder draws galaxies like the training
set, of all classes or of one. An unconditional VAE has no class input, so a class is targeted by a
prior fitted to the encoder's means of that class's training galaxies."""
import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from data import InputError
from model import standard_normal_latents

PRIORS = ("gmm", "gaussian")


def fit_class_prior(latents, kind="gmm", components=4, seed=0):
    """A full-covariance Gaussian (kind "gaussian") or Gaussian mixture ("gmm") fitted to latents, of one
    class or of all. The mixture gets at most one component per latent_dim + 1 points, so that no
    component's covariance is fitted to fewer points than it has dimensions."""
    z = np.asarray(latents, dtype=np.float64)
    n, d = z.shape
    if kind not in PRIORS:
        raise InputError(f"--prior {kind}: choose {' or '.join(PRIORS)}")
    if n < 2:
        raise InputError(f"need at least 2 latents to fit a prior, got {n}")
    k = 1 if kind == "gaussian" else max(1, min(components, n // (d + 1)))
    return GaussianMixture(k, covariance_type="full", random_state=seed).fit(z)


def sample_prior(prior, n, latent_dim, seed=0):
    """n latents (float32 tensor) from a fitted mixture, or from N(0, I) when prior is None. Drawn here
    rather than by GaussianMixture.sample, which returns its samples grouped by component."""
    if prior is None:
        return standard_normal_latents(n, latent_dim, seed)
    rng = np.random.default_rng(seed)
    eps = standard_normal_latents(n, latent_dim, seed).double().numpy()
    component = rng.choice(len(prior.weights_), size=n, p=prior.weights_ / prior.weights_.sum())
    chol = np.linalg.cholesky(prior.covariances_)
    return torch.from_numpy(prior.means_[component] + np.einsum("nij,nj->ni", chol[component], eps)).float()
