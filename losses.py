"""Hand-written SSIM and KL divergence, and the beta-VAE objective built from them.

Reductions, and why the two terms are on comparable scales:
- ssim() averages the local SSIM map over positions, then over channels: one number per image in
  [-1, 1]; 1 - SSIM is a *mean* dissimilarity per pixel value.
- kld() sums the KL divergence over latent dimensions (it is one number per image, in nats) and
  averages over the batch.
- The ELBO compares a reconstruction term *summed* over the image with that summed KLD. So the
  reconstruction term is (1 - SSIM) times `recon_weight`, by default the number of pixel values
  (3 x 64 x 64 = 12,288): 1 - SSIM then plays the role of a per-pixel negative log-likelihood summed
  over the image, and beta = 1 means the usual VAE balance; beta > 1 trades detail for a smoother,
  more disentangled latent space (Higgins et al. 2017).
- `recon_loss` "mse" (train.py --recon-loss mse) puts MSE_SCALE x the mean squared error per pixel value
  in the place of 1 - SSIM, weighed by the same recon_weight, so that "SSIM or MSE in the loss" is tested
  at equal beta. The scale makes the two terms the same size where training ends: on the validation
  reconstructions of trained default models (1 - SSIM) / MSE was 95, 87 and 97 on gz1_sdss_sample (three
  seeds; docs/grid-search.md, "SSIM or MSE"), so MSE_SCALE = 100. Read as a likelihood, MSE_SCALE * MSE summed
  over the pixel values is -log N(x; recon, sigma^2) up to a constant, with sigma^2 = 1 / 200 (sigma 0.071
  of the pixel range): beta = 1 is the usual VAE balance for a decoder that far from its targets.
- `l1_weight` alpha adds alpha * mean |x - recon| to 1 - SSIM before that scaling (Zhao et al. 2017):
  both are means per pixel value in [0, 1], so alpha = 1 weighs a mean absolute error of 0.1 like an
  SSIM loss of 0.1. SSIM alone ignores a uniform shift of colour and brightness; L1 pins it.
- The adversarial term (optional) is -D(recon), averaged over the discriminator's patches and the batch,
  times an adaptive weight: W * |grad of the reconstruction term| / |grad of the adversarial term| at the
  decoder's last layer (Esser et al. 2021), so it pushes as hard as W times the reconstruction term
  whatever their scales. The discriminator minimises the hinge loss, plus lambda times the LeCam penalty
  when `--lecam lambda` is on (Tseng et al. 2021).

The objective on a model: batch_losses (one batch), train_step (one Adam step) and run_epoch (one pass,
training or measuring) are the step that train.train() repeats and that bench.py times. With
precision "bf16" the model's convolutions and matmuls run under bfloat16 autocast while SSIM and KLD are
computed in fp32 from fp32 copies of its outputs; measuring (no optimizer) is always fp32.
"""
import functools
import math
import time
from contextlib import nullcontext

import torch
from tqdm import tqdm

K1, K2 = 0.01, 0.03
RECON_LOSSES = ("ssim", "mse")
MSE_SCALE = 100.0  # MSE as large as 1 - SSIM at the end of training (module docstring)


def gaussian_window(size=11, sigma=1.5, dtype=torch.float32, device=None):
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    w = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (w / w.sum()).to(dtype)


@functools.lru_cache(maxsize=32)
def valid_blur_matrix(n, size, sigma, dtype, device):
    """An n x (n - size + 1) band matrix M such that x @ M is x filtered along its last axis
    ('valid', no padding). One matmul per axis is much faster on CPU than a depthwise conv."""
    window = gaussian_window(size, sigma, dtype, device)
    m = torch.zeros(n, n - size + 1, dtype=dtype, device=device)
    for j in range(n - size + 1):
        m[j:j + size, j] = window
    return m


def ssim(x, y, window_size=11, sigma=1.5, data_range=1.0, per_image=False):
    """Structural similarity of x and y, (B, C, H, W) in [0, data_range], with an 11x11 Gaussian
    window (sigma 1.5), K1 = 0.01, K2 = 0.03 and 'valid' filtering: the same definition as
    skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False). Returns the batch mean, or one value per image."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    _, _, h, w = x.shape
    if min(h, w) < window_size:
        raise ValueError(f"ssim needs images of at least {window_size}x{window_size}, got {h}x{w}")
    blur_w = valid_blur_matrix(w, window_size, sigma, x.dtype, x.device)
    blur_h = valid_blur_matrix(h, window_size, sigma, x.dtype, x.device)
    def blur(*maps):  # several maps in one batched matmul pair instead of one convolution each
        return blur_h.T @ torch.stack(maps) @ blur_w
    # Two groups, so that when y is a fixed target (the training loss) backward skips its maps entirely.
    mu_x, xx, xy = blur(x, x * x, x * y)
    mu_y, yy = blur(y, y * y)
    var_x, var_y, cov_xy = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    per_img = ssim_map.mean(dim=(2, 3)).mean(dim=1)
    return per_img if per_image else per_img.mean()


def kld(mu, logvar):
    """KL(q(z|x) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()


def beta_at(epoch, beta, warmup_epochs, beta_start=1e-4):
    """Linear warm-up from beta_start at epoch 0 to beta at epoch `warmup_epochs`: a small beta first
    lets the decoder learn to reconstruct before the KL term pulls the posterior to the prior
    (avoids posterior collapse)."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs:
        return float(beta)
    return float(beta_start + (beta - beta_start) * epoch / warmup_epochs)


def vae_loss(recon, x, mu, logvar, beta, recon_weight=None, l1_weight=0.0, recon_loss="ssim"):
    """total = recon_weight * (1 - SSIM + l1_weight * L1) + beta * KLD, per image (see the module
    docstring), with MSE_SCALE * MSE in the place of 1 - SSIM when recon_loss is "mse"; "recon" is the first
    term. SSIM is returned either way: it is what a run reports."""
    if recon_weight is None:
        recon_weight = x[0].numel()
    if recon_loss not in RECON_LOSSES:
        raise ValueError(f"recon_loss {recon_loss!r}: use one of {', '.join(RECON_LOSSES)}")
    similarity = ssim(recon, x)
    divergence = kld(mu, logvar)
    l1 = (recon - x).abs().mean()
    dissimilarity = MSE_SCALE * (recon - x).pow(2).mean() if recon_loss == "mse" else 1 - similarity
    reconstruction = recon_weight * (dissimilarity + l1_weight * l1)
    total = reconstruction + beta * divergence
    return {"total": total, "recon": reconstruction, "ssim": similarity, "l1": l1, "kld": divergence,
            "beta": beta if isinstance(beta, torch.Tensor) else float(beta)}


def hinge_discriminator_loss(real_logits, fake_logits):
    """0.5 * (mean relu(1 - D(real)) + mean relu(1 + D(fake))): zero once real patches score >= 1 and
    fakes <= -1, so a discriminator that already wins stops pushing its logits further."""
    return 0.5 * (torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean())


def lecam_penalty(real_logits, fake_logits, logit_ema):
    """mean relu(D(real) - ema_fake)^2 + mean relu(ema_real - D(fake))^2 (Tseng et al. 2021, "Regularizing
    GANs under limited data"), logit_ema = (moving mean of D(real), of D(fake)). On a few thousand galaxies
    the discriminator learns them by heart (its hinge loss falls to ~0.01) and its verdicts on the decoder
    swing; the penalty keeps each verdict within reach of the other side's history."""
    return (torch.relu(real_logits - logit_ema[1]).pow(2).mean()
            + torch.relu(logit_ema[0] - fake_logits).pow(2).mean())


def generator_loss(fake_logits):
    """-mean D(recon): the decoder's adversarial term."""
    return -fake_logits.mean()


def adaptive_weight(recon_loss, adv_loss, last_layer, weight, max_ratio=1e4):
    """weight * |d recon_loss / d last_layer| / (|d adv_loss / d last_layer| + 1e-4), detached
    (Esser et al. 2021, eq. 7). Keeps the graph for the backward pass that follows."""
    g_rec = torch.autograd.grad(recon_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(adv_loss, last_layer, retain_graph=True)[0]
    return weight * (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(max=max_ratio).detach()


# ---------------------------------------------------------------- the objective on a model

PRECISIONS = ("fp32", "bf16")


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def autocast(precision, device):
    """bfloat16 autocast on `device` for precision "bf16", else nothing (plain fp32)."""
    if precision == "fp32":
        return nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def batch_losses(model, x, beta, recon_weight=None, l1_weight=0.0, precision="fp32", recon_loss="ssim", labels=None):
    """The loss dict of one batch (see vae_loss), with the reconstructions under "decoded". The model runs
    in `precision`; SSIM and KLD always in fp32 (1 - SSIM is a small difference of near-equal terms: bf16's
    8-bit mantissa would round it away). A NaN is not checked here: run_epoch checks its sums once an epoch,
    so a GPU never waits for the host at a step. labels: the batch's classes, for a decoder that takes one."""
    with autocast(precision, x.device):
        recon, mu, logvar = model(x, labels)
    recon = recon.float()
    losses = vae_loss(recon, x, mu.float(), logvar.float(), beta, recon_weight, l1_weight, recon_loss)
    if getattr(model, "class_adversary", 0) and labels is not None:  # not in "total": the objective's (train_step)
        losses["latent_ce"] = model.class_adversary_loss(mu.float(), labels)
    return losses | {"decoded": recon}


@functools.lru_cache(maxsize=8)
def turns_and_mirrors(size, device):
    """The 8 symmetries of a size x size square as pixel permutations (8, size*size): row 2k + m is the
    index map of mirrored if m, then turned by rot90 k times."""
    grid = torch.arange(size * size, device=device).view(1, 1, size, size)
    return torch.stack([torch.rot90(view, k, dims=(2, 3)).flatten() for k in range(4) for view in (grid, grid.flip(3))])


def turn_or_mirror_batch(x):
    """x turned by a random multiple of 90 degrees and mirrored half the time: the symmetries of the sky (a
    galaxy has no up or left), so showing them to the discriminator adds data without leaking into what the
    decoder learns (Zhao et al. 2020, Karras et al. 2020). Differentiable: a permutation of pixels. On a GPU
    the choice is drawn on the device, as a permutation of a square image's pixels, so that the step holds no
    host sync and can be captured as a CUDA graph (graphed_step.py)."""
    if x.is_cuda and x.shape[-1] == x.shape[-2]:
        choice = torch.randint(8, (1,), device=x.device)
        index = turns_and_mirrors(x.shape[-1], x.device).index_select(0, choice).view(-1)
        return x.flatten(2).index_select(2, index).view_as(x)
    x = torch.rot90(x, int(torch.randint(4, ())), dims=(2, 3))
    return x.flip(3) if torch.randint(2, ()) else x


def turn_or_mirror_each(x, generator):
    """Each image of x mirrored half the time, then turned by its own random multiple of 90 degrees (one of
    the square's 8 symmetries each), drawn from the CPU `generator` as turns, then mirrors: a galaxy has no
    up or left, so a training set shown this way holds eight times the orientations, which a few hundred
    edge-ons need. Used by the VAE's --augment and by the judge. A gather of pixels, on x's device, with
    no host sync."""
    b, c, h, w = x.shape
    if h != w:
        raise ValueError(f"turns and mirrors need square images, got {h}x{w}")
    turns = torch.randint(4, (b,), generator=generator)
    mirrors = torch.randint(2, (b,), generator=generator)
    choice = (2 * turns + mirrors).to(x.device, non_blocking=True)
    index = turns_and_mirrors(w, x.device).index_select(0, choice)[:, None, :].expand(b, c, h * w)
    return x.flatten(2).gather(2, index).view(b, c, h, w)


def train_step(model, x, optimizer, beta, recon_weight=None, l1_weight=0.0, precision="fp32", adversary=None,
               set_to_none=True, recon_loss="ssim", labels=None):
    """One Adam step on batch x; returns its loss dict, with "objective" the total the VAE stepped on. With an
    adversary (discriminator, its optimizer, weight W, whether it sees turns and mirrors, LeCam's lambda), the
    VAE's loss gains the adaptively weighted adversarial term, then the discriminator takes one step of its
    hinge loss (+ lambda x LeCam) on x against the same reconstructions (both in fp32). set_to_none=False
    zeroes the gradients in place (where a captured CUDA graph owns them: graphed_step.py)."""
    losses = batch_losses(model, x, beta, recon_weight, l1_weight, precision, recon_loss, labels)
    total, recon = losses["total"], losses["decoded"]
    if "latent_ce" in losses:
        total = total + model.class_adversary * losses["latent_ce"]
    if adversary is not None:
        disc = adversary["disc"]
        seen = turn_or_mirror_batch if adversary["augment"] else (lambda images: images)
        losses["adv"] = generator_loss(disc(seen(recon)))
        losses["adv_weight"] = adaptive_weight(losses["recon"], losses["adv"], model.last_layer(),
                                               adversary["weight"])
        total = total + losses["adv_weight"] * losses["adv"]
    losses["objective"] = total
    optimizer.zero_grad(set_to_none=set_to_none)
    total.backward()
    optimizer.step()
    if adversary is not None:
        real_logits, fake_logits = disc(seen(x)), disc(seen(recon.detach()))
        losses["disc"] = disc_total = hinge_discriminator_loss(real_logits, fake_logits)
        if adversary["lecam"]:
            disc_total = disc_total + adversary["lecam"] * lecam_penalty(real_logits, fake_logits, disc.logit_ema)
            with torch.no_grad():  # decay 0.99, as Tseng et al.
                disc.logit_ema.lerp_(torch.stack([real_logits.mean(), fake_logits.mean()]), 0.01)
        losses["disc_objective"] = disc_total
        adversary["optimizer"].zero_grad(set_to_none=set_to_none)  # also clears what the VAE's backward left in D
        disc_total.backward()
        adversary["optimizer"].step()
    return losses


def recon_loss_of(config):
    """The reconstruction term a run's config names; "ssim" for a config from before it could name one."""
    return getattr(config, "recon_loss", "ssim")


def eager_step(model, optimizer, config):
    """train_step with the run's settings, as a function of (batch, beta, adversary): what run_epoch calls per
    batch (graphed_step.GraphedTrainStep is the same on a GPU, captured)."""
    def step(x, beta, adversary=None, labels=None):
        return train_step(model, x, optimizer, beta, config.recon_weight, getattr(config, "l1_weight", 0.0),
                          getattr(config, "precision", "fp32"), adversary, recon_loss=recon_loss_of(config),
                          labels=labels)
    return step


# What run_epoch reports (name, key in the loss dict), and the sums that must stay finite (what, key).
METRICS = (("loss", "total"), ("ssim", "ssim"), ("l1", "l1"), ("kld", "kld"))
ADVERSARIAL_METRICS = (("disc", "disc"), ("adv_weight", "adv_weight"))
CLASS_ADVERSARY_METRICS = (("latent_ce", "latent_ce"),)  # the class model on mu: log 3 = 1.10 where it reads nothing
GUARDED = (("loss", "objective"), ("discriminator loss", "disc_objective"))  # a NaN in D reaches the VAE next


def run_epoch(model, images, config, beta, optimizer=None, generator=None, desc="", adversary=None, step=None,
              labels=None):
    """One pass over `images` (an N x 3 x 64 x 64 tensor in memory, on the model's device or the CPU) in
    batches of config.batch_size: trains in config.precision when an optimizer is given (each batch through
    `step`, by default eager_step's; with config.augment, each galaxy turned or mirrored at random, drawn
    from `generator` after the shuffle, so a resumed epoch sees the same images), else measures in fp32.
    Returns the per-image means of loss (the VAE's, without the adversarial term), SSIM, L1 and KLD, and in
    adversarial epochs of the discriminator's hinge loss and the adaptive weight (with a class adversary and
    labels, of its cross-entropy on mu). The sums stay on the device
    and are read once, at the end (a GPU step never waits for the host); a NaN or infinity in any step's
    objective then raises TrainingDiverged. labels (the images' classes) go to a decoder that takes a class."""
    training = optimizer is not None
    model.train(training)
    device = next(model.parameters()).device
    if training and step is None:
        step = eager_step(model, optimizer, config)
    order = torch.randperm(len(images), generator=generator) if training else torch.arange(len(images))
    names = METRICS + (ADVERSARIAL_METRICS if adversary is not None else ()) + (
        CLASS_ADVERSARY_METRICS if getattr(model, "class_adversary", 0) and labels is not None else ())
    guarded = GUARDED if adversary is not None else GUARDED[:1]
    keys = [key for _, key in names] + [key for _, key in guarded]
    sums = torch.zeros(len(keys), device=device)
    shown, seen = time.monotonic(), 0
    with torch.set_grad_enabled(training), tqdm(order.to(images.device).split(config.batch_size), desc=desc,
                                                leave=False, disable=not desc) as bar:
        for index in bar:
            x, y = images[index], None if labels is None else labels[index.cpu()].to(device)
            if training and getattr(config, "augment", False):
                x = turn_or_mirror_each(x, generator)
            x = x.to(device, memory_format=torch.channels_last)  # the model's layout
            if training:
                losses = step(x, beta, adversary) if y is None else step(x, beta, adversary, labels=y)
            else:
                losses = batch_losses(model, x, beta, config.recon_weight, getattr(config, "l1_weight", 0.0),
                                      recon_loss=recon_loss_of(config), labels=y)
                losses["objective"] = losses["total"]
            sums += torch.stack([losses[key].detach().float() for key in keys]) * len(index)
            seen += len(index)
            if desc and time.monotonic() - shown > 1:  # the one host sync, at most once a second
                shown = time.monotonic()
                bar.set_postfix(loss=f"{sums[0].item() / seen:.1f}")
    values = dict(zip(keys, sums.tolist()))
    diverged = [f"{what} is {values[key]}" for what, key in reversed(guarded) if not math.isfinite(values[key])]
    if diverged:
        raise TrainingDiverged(", ".join(diverged))
    return {name: values[key] / len(images) for name, key in names}
