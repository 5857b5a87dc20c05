"""The convolutional beta-VAE and its config (as nanoGPT keeps GPTConfig beside the GPT): a strided-conv
encoder to (mu, log sigma^2), a decoder that doubles the resolution per block (transposed convolutions, or
resize + 3x3 convolution), optionally with residual blocks; how a model is built from a config; and latents
in and out (encode, decode, interpolate, refine). checkpoint.py rebuilds a model from a checkpoint."""
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn

from cli import InputError, check_choice, check_flag, check_value


@dataclass
class ModelConfig:
    """The hyper-parameters that build a ConvVAE. A checkpoint's flat config dict holds these among
    the training settings; from_dict picks them out."""
    latent: int = 32          # latent dimension
    base_channels: int = 32   # channels of the first conv; doubled by each further block
    layers: int = 4           # conv blocks in encoder and decoder; 64 px halved per block
    upsample: str = "transpose"  # decoder's doubling: transpose (ConvTranspose2d 4x4), nearest or bilinear + 3x3 conv
    res_blocks: int = 0       # residual blocks after each decoder block below full resolution
    decoder_noise: bool = False  # per-pixel noise into every decoder block (StyleGAN), for --adversarial
    sky_noise: float = 0.0    # images drawn with this fraction of the training sky's noise (ConvVAE.decode)
    class_input: tuple = ()   # the classes the decoder is told (a conditional VAE, ConvVAE.decoder_input); (): none.
                              # Only docs/class_input_study.py trains one: measured, not adopted (docs/results.md)
    class_adversary: float = 0.0  # weight of a class model on mu that the encoder learns to fool; needs
                                  # class_input; 0: none (ConvVAE.class_adversary_loss; docs/class_input_study.py)

    @classmethod
    def from_dict(cls, d):
        config = cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})
        config.class_input = tuple(config.class_input)
        return config

    def check(self):
        """Raise InputError naming the first bad value, as its command-line flag."""
        for name in ("latent", "base_channels"):
            check_value(name, getattr(self, name), lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        check_value("layers", self.layers, lambda v: 2 <= v <= 5 and v == int(v),
                    "a whole number, 2 to 5 (64 px halved per layer)")
        check_value("res_blocks", self.res_blocks, lambda v: 0 <= v <= 8 and v == int(v), "a whole number, 0 to 8")
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        check_flag("decoder_noise", self.decoder_noise)
        check_sky_noise(self.sky_noise)
        if not all(isinstance(k, int) and k >= 0 for k in self.class_input) or len(set(self.class_input)) < len(
                self.class_input):
            raise InputError(f"class_input {self.class_input!r}: must be distinct class numbers (or none)")
        check_value("class_adversary", self.class_adversary, lambda v: 0 <= v < float("inf"), ">= 0 (0: none)")
        if self.class_adversary and not self.class_input:
            raise InputError(f"class_adversary {self.class_adversary}: needs a decoder told the class (class_input)")
        return self


def check_sky_noise(fraction):
    """--sky-noise F, at training (ModelConfig) or at draw time (generate.py): a fraction 0 to 4, else InputError."""
    check_value("sky_noise", fraction, lambda v: 0 <= v <= 4, "a fraction of the sky's noise, 0 to 4 (0: off)")


UPSAMPLE_MODES = ("transpose", "nearest", "bilinear")


class ResidualBlock(nn.Module):
    """x + conv(LeakyReLU(BN(conv(x)))), 3x3, same channels: more decoder depth at a fixed resolution
    without a longer gradient path. The last conv starts at zero, so a new block is the identity."""
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels),
                                  nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x):
        return x + self.body(x)


class NoiseInjection(nn.Module):
    """x + w_c * n with n ~ N(0, 1) one map per image, w one learned weight per channel, starting at 0
    (Karras et al. 2019, StyleGAN): detail the latent cannot hold, such as where the faint field stars
    fall, comes from the noise instead of being averaged into a blur. Drawn in eval mode too, from the
    global torch generator, so a seed makes it repeatable."""
    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        b, _, h, w = x.shape
        return x + self.weight * torch.randn(b, 1, h, w, device=x.device, dtype=x.dtype)


def upsampling_block(c_in, c_out, mode):
    """Double the resolution. transpose: kernel 4, stride 2, padding 1 doubles exactly; nearest or
    bilinear resize + 3x3 conv gives every output pixel the same number of taps, so no checkerboard
    (Odena et al. 2016)."""
    if mode == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1)]
    return [nn.Upsample(scale_factor=2, mode=mode, **({"align_corners": False} if mode == "bilinear" else {})),
            nn.Conv2d(c_in, c_out, 3, padding=1)]


class ReversedGradient(torch.autograd.Function):
    """The identity forward, the gradient's negative backward (Ganin & Lempitsky 2015): a class model after it
    learns to read the class from its input, while whatever made the input learns to hide it, in one step."""
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class ConvVAE(nn.Module):
    def __init__(self, latent_dim=32, base_channels=32, n_layers=4, image_size=64, in_channels=3,
                 upsample="transpose", res_blocks=0, decoder_noise=False, sky_noise=0.0, class_input=(),
                 class_adversary=0.0):
        super().__init__()
        if image_size % 2 ** n_layers or image_size // 2 ** n_layers < 1:
            raise ValueError(f"n_layers={n_layers} halves a {image_size}px image below one pixel")
        self.latent_dim, self.base_channels, self.n_layers = latent_dim, base_channels, n_layers
        self.image_size, self.in_channels = image_size, in_channels
        self.upsample, self.res_blocks, self.decoder_noise = upsample, res_blocks, decoder_noise
        self.sky_noise, self.class_input, self.class_adversary = sky_noise, tuple(class_input), class_adversary
        if class_input:  # class number -> its one-hot column (a buffer: it moves with the model)
            self.register_buffer("class_column", torch.full((max(class_input) + 1,), -1, dtype=torch.long),
                                 persistent=False)
            self.class_column[list(class_input)] = torch.arange(len(class_input))
        if class_adversary:  # reads the class from mu: ConvVAE.class_adversary_loss
            self.latent_classifier = nn.Sequential(nn.Linear(latent_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256),
                                                   nn.LeakyReLU(0.2), nn.Linear(256, len(class_input)))
        if sky_noise:  # the training split's sky noise per band, set by train.py (morphology.band_sky_noise)
            self.register_buffer("sky_sigma", torch.zeros(1, in_channels, 1, 1))
        channels = [base_channels * 2 ** i for i in range(n_layers)]
        self.bottom_size = image_size // 2 ** n_layers
        flat = channels[-1] * self.bottom_size ** 2

        blocks, c_in = [], in_channels
        for c_out in channels:
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                       nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.encoder = nn.Sequential(*blocks, nn.Flatten())
        self.to_mu = nn.Linear(flat, latent_dim)
        self.to_logvar = nn.Linear(flat, latent_dim)

        self.from_latent = nn.Linear(latent_dim + len(self.class_input), flat)
        # transpose (the seed's decoder): the last block maps straight to RGB. A resize block would then
        # be one 3x3 conv from blurred features, so the resize decoders end with a full-resolution block
        # to base_channels and a 3x3 conv to RGB.
        outs = channels[::-1][1:] + [in_channels if upsample == "transpose" else base_channels]
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(channels[::-1], outs)):
            blocks += upsampling_block(c_in, c_out, upsample)
            if c_out != in_channels:
                blocks += [NoiseInjection(c_out)] if decoder_noise else []
                blocks += [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            if i < n_layers - 1:  # below full resolution, where a 3x3 conv costs a quarter or less
                blocks += [ResidualBlock(c_out) for _ in range(res_blocks)]
        if upsample != "transpose":
            blocks.append(nn.Conv2d(base_channels, in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*blocks, nn.Sigmoid())

    def last_layer(self):
        """The weight of the decoder's last convolution: where the adversarial weight compares gradient
        norms (Esser et al. 2021)."""
        return self.decoder[-2].weight

    def encode(self, x):
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def reparameterize(self, mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decoder_input(self, z, labels):
        """z, and with class_input each galaxy's class as a one-hot vector beside it (Sohn, Lee & Yan 2015, the
        conditional VAE): meant to let the decoder draw the class it is told and leave the latent the rest; on
        gz1_sdss_sample the latent's own class won (docs/results.md). A model without class_input takes z alone
        and ignores labels."""
        if not self.class_input:
            return z
        if labels is None:
            raise InputError(f"this model's decoder takes each galaxy's class (one of "
                             f"{', '.join(map(str, self.class_input))}), and none was given (a model of "
                             "docs/class_input_study.py, which the scripts do not draw from)")
        labels = torch.as_tensor(labels, device=z.device).long()
        if labels.ndim == 0:
            labels = labels.expand(len(z))
        known = (labels >= 0) & (labels < len(self.class_column))
        column = self.class_column[labels.clamp(0, len(self.class_column) - 1)]
        if not bool((known & (column >= 0)).all()):
            raise InputError(f"class {sorted(set(labels.tolist()) - set(self.class_input))}: this model's decoder "
                             f"knows classes {', '.join(map(str, self.class_input))}")
        return torch.cat([z, nn.functional.one_hot(column, len(self.class_input)).to(z.dtype)], 1)

    def class_adversary_loss(self, mu, labels):
        """The cross-entropy of the class model reading each galaxy's class from its mu, through a reversed
        gradient: the class model learns to lower it and the encoder to raise it, so that the latent holds no
        class and a decoder told the class must draw the one it is told (Lample et al. 2017, Fader networks).
        The step adds class_adversary times it to the objective (losses.train_step)."""
        columns = self.class_column[torch.as_tensor(labels, device=mu.device).long()]
        return nn.functional.cross_entropy(self.latent_classifier(ReversedGradient.apply(mu)), columns)

    def decode(self, z, labels=None):
        """The decoder's image (of class `labels` for a model with class_input); in eval mode with sky_noise F,
        drawn with F times the survey's sky noise.
        The decoder learns the mean image, which is what SSIM and L1 reward and what training sees; a
        survey image is that plus sky noise (Lanusse et al. 2021 add it the same way), which a smooth mean
        lacks and Inception notices. F trades SSIM for realism (Blau & Michaeli 2018): docs/decoder-study.md."""
        h = self.from_latent(self.decoder_input(z, labels))
        h = h.view(-1, self.base_channels * 2 ** (self.n_layers - 1), self.bottom_size, self.bottom_size)
        x = self.decoder(h)
        if self.sky_noise and not self.training:
            x = (x + self.sky_noise * self.sky_sigma * torch.randn_like(x)).clamp(0, 1)
        return x

    def set_sky_noise(self, fraction, sky_sigma=None):
        """Draw with `fraction` times the sky noise from now on, whatever the model was trained to draw with.
        sky_sigma (per band, morphology.band_sky_noise) replaces the stored one; a model built without sky
        noise stores none, so it needs one for any fraction above 0."""
        if sky_sigma is not None:
            sigma = torch.as_tensor(sky_sigma, dtype=torch.float32).view(1, -1, 1, 1)
            if hasattr(self, "sky_sigma"):
                self.sky_sigma.copy_(sigma)
            else:
                self.register_buffer("sky_sigma", sigma.to(next(self.parameters()).device))
        elif fraction and not hasattr(self, "sky_sigma"):
            raise ValueError("this model stores no sky noise: give sky_sigma (morphology.band_sky_noise)")
        self.sky_noise = fraction

    def forward(self, x, labels=None):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar), labels), mu, logvar


# ---------------------------------------------------------------- building

def build_model(config, device="cpu"):
    """The ConvVAE that `config` (a ModelConfig, or any object or dict with its fields) describes, on
    `device`, in channels_last memory format (oneDNN's own layout: the convolutions skip a reorder of
    every activation); bad values raise InputError."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config if isinstance(config, dict) else asdict(config))
    config.check()
    return ConvVAE(config.latent, config.base_channels, config.layers, upsample=config.upsample,
                   res_blocks=config.res_blocks, decoder_noise=config.decoder_noise,
                   sky_noise=config.sky_noise, class_input=config.class_input,
                   class_adversary=config.class_adversary).to(device, memory_format=torch.channels_last)


# ---------------------------------------------------------------- latents in and out

def standard_normal_latents(n, latent_dim, seed=0):
    """n latents z ~ N(0, I), float32, drawn on the CPU: the same seed gives the same galaxies on every
    device and in every script (the grid, --samples, --evaluate, the explorer)."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def encode_means(model, images, batch_size=256):
    """Posterior means mu (N x latent, on the CPU): where the encoder puts each galaxy."""
    return encode_posteriors(model, images, batch_size)[0]


@torch.no_grad()
def encode_posteriors(model, images, batch_size=256):
    """Each galaxy's posterior q(z|x) = N(mu, sigma^2): (mu, sigma), N x latent each, on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    mu, logvar = zip(*(model.encode(b.to(device)) for b in images.split(batch_size)))
    return torch.cat(mu).float().cpu(), torch.cat(logvar).float().cpu().mul(0.5).exp()


@torch.no_grad()
def decode_latents(model, z, batch_size=256, labels=None):
    """Images (N x 3 x 64 x 64 in [0, 1], on the CPU) decoded from latents z (of classes `labels`, one class
    number per latent or one for all, where the model's decoder takes a class)."""
    device = next(model.parameters()).device
    model.eval()
    labels = None if labels is None else torch.as_tensor(labels).long().expand(len(z))
    return torch.cat([model.decode(b.to(device), None if labels is None else labels[i:i + batch_size])
                      .float().cpu() for i, b in zip(range(0, len(z), batch_size), z.split(batch_size))])


def interpolate_latents(z_a, z_b, steps=8):
    """`steps` evenly spaced points on the line from z_a to z_b, both ends included exactly."""
    t = torch.linspace(0, 1, steps, dtype=z_a.dtype).unsqueeze(1)
    return (1 - t) * z_a + t * z_b


def refine_latents(model, z, steps=0, batch_size=256, labels=None):
    """z after `steps` decode-encode round trips, z <- mu(D(z)): Creswell, Arulkumaran & Bharath 2016's
    Markov chain ("Improving sampling from generative autoencoders with Markov chains"), with the posterior
    mean for its draw. A sampler's latents fall partly between the galaxies the decoder was trained on; a
    round trip moves them to where the encoder puts a galaxy that looks like their image. Whether that
    helps depends on the model, so the scripts take the number of steps a validation measurement chose
    (evaluation.refine_choice)."""
    for _ in range(steps):
        z = encode_means(model, decode_latents(model, z, batch_size, labels), batch_size)
    return z
