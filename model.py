"""The convolutional beta-VAE and its config: a strided-conv encoder to (mu, log sigma^2), a
decoder that doubles the resolution per block (transposed convolutions, or resize + 3x3 convolution),
optionally with residual blocks. Also how a model is built from a config, put on a device, and rebuilt from
the config saved inside a checkpoint (as nanoGPT keeps GPTConfig beside the GPT)."""
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn

from data import InputError

RUNS_DIR = Path(__file__).resolve().parent / "runs"


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

    @classmethod
    def from_dict(cls, d):
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})

    def check(self):
        """Raise InputError naming the first bad value, as its command-line flag."""
        for name in ("latent", "base_channels"):
            check_value(name, getattr(self, name), lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        check_value("layers", self.layers, lambda v: 2 <= v <= 5 and v == int(v),
                    "a whole number, 2 to 5 (64 px halved per layer)")
        check_value("res_blocks", self.res_blocks, lambda v: 0 <= v <= 8 and v == int(v), "a whole number, 0 to 8")
        check_choice("upsample", self.upsample, UPSAMPLE_MODES)
        check_flag("decoder_noise", self.decoder_noise)
        check_value("sky_noise", self.sky_noise, lambda v: 0 <= v <= 4, "a fraction of the sky's noise, 0 to 4 (0: off)")
        return self


def check_value(name, value, valid, rule):
    """One validity rule, reported as its command-line flag: `--layers 9: must be 2 to 5 ...`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        raise InputError(f"--{name.replace('_', '-')} {value!r}: must be {rule}")


def check_choice(name, value, choices):
    """A named variant, reported as its flag: `--upsample 'cubic': choose transpose, nearest or bilinear`."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"--{name.replace('_', '-')} {value!r}: choose {', '.join(choices[:-1])} or {choices[-1]}")


def check_flag(name, value):
    """An on/off option, reported as its flag: `--decoder-noise 'yes': must be true or false`."""
    if not isinstance(value, bool):
        raise InputError(f"--{name.replace('_', '-')} {value!r}: must be true or false")


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


class ConvVAE(nn.Module):
    def __init__(self, latent_dim=32, base_channels=32, n_layers=4, image_size=64, in_channels=3,
                 upsample="transpose", res_blocks=0, decoder_noise=False, sky_noise=0.0):
        super().__init__()
        if image_size % 2 ** n_layers or image_size // 2 ** n_layers < 1:
            raise ValueError(f"n_layers={n_layers} halves a {image_size}px image below one pixel")
        self.latent_dim, self.base_channels, self.n_layers = latent_dim, base_channels, n_layers
        self.image_size, self.in_channels = image_size, in_channels
        self.upsample, self.res_blocks, self.decoder_noise = upsample, res_blocks, decoder_noise
        self.sky_noise = sky_noise
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

        self.from_latent = nn.Linear(latent_dim, flat)
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

    def decode(self, z):
        """The decoder's image; in eval mode with sky_noise F, drawn with F times the survey's sky noise.
        The decoder learns the mean image, which is what SSIM and L1 reward and what training sees; a
        survey image is that plus sky noise (Lanusse et al. 2021 add it the same way), which a smooth mean
        lacks and Inception notices. F trades SSIM for realism (Blau & Michaeli 2018): README."""
        h = self.from_latent(z).view(-1, self.base_channels * 2 ** (self.n_layers - 1),
                                     self.bottom_size, self.bottom_size)
        x = self.decoder(h)
        if self.sky_noise and not self.training:
            x = (x + self.sky_noise * self.sky_sigma * torch.randn_like(x)).clamp(0, 1)
        return x

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


# ---------------------------------------------------------------- building, devices, checkpoints

def pick_device(name="auto"):
    """auto (CUDA when there is one, else the CPU), cpu, cuda or cuda:N; bad names raise InputError."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name!r}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@contextmanager
def forked_rng(device, seed=None):
    """Random draws inside (optionally from `seed`) leave the RNG of the CPU and of `device` as they were:
    a noisy decoder's figure or explorer image does not shift the draws of whatever runs next."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def cpu_info():
    """The first processor's fields in /proc/cpuinfo ("model name", "cpu family", "cpu MHz", "flags", ...);
    empty where there is no such file."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the blank line after the first processor
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_flags():
    """The CPU's feature flags (avx2, avx512f, avx512_bf16, ...), an empty set where unknown."""
    return set(cpu_info().get("flags", "").split())


def cpu_has_bf16():
    """Does this CPU do bfloat16 in hardware (AVX512-BF16 or AMX)? Elsewhere oneDNN emulates it."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def check_precision(precision, device):
    """bf16 training needs hardware bfloat16: a CUDA device that has it, or a CPU with AVX512-BF16 or
    AMX (elsewhere oneDNN emulates it, slower than fp32); raises InputError otherwise."""
    if precision != "bf16":
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp32")
    if device.type == "cpu" and not cpu_has_bf16():
        raise InputError("--precision bf16: this CPU has neither AVX512-BF16 nor AMX; use fp32")


def build_model(config, device="cpu"):
    """The ConvVAE that `config` (a ModelConfig, or any object or dict with its fields) describes, on
    `device`, in channels_last memory format (oneDNN's own layout: the convolutions skip a reorder of
    every activation); bad values raise InputError."""
    if not isinstance(config, ModelConfig):
        config = ModelConfig.from_dict(config if isinstance(config, dict) else asdict(config))
    config.check()
    return ConvVAE(config.latent, config.base_channels, config.layers, upsample=config.upsample,
                   res_blocks=config.res_blocks, decoder_noise=config.decoder_noise,
                   sky_noise=config.sky_noise).to(device, memory_format=torch.channels_last)


def checkpoint_file(path):
    """The checkpoint file `path` names: itself, or a run folder's best.pt."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def load_checkpoint(path, device="cpu"):
    """Rebuild the model from the config saved inside a checkpoint file or run folder (its best.pt):
    (model in eval mode, checkpoint dict). weights_only: a checkpoint someone hands you is data, not code."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = build_model(checkpoint["config"], device)
        model.load_state_dict(checkpoint["model"])
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except Exception as e:
        raise InputError(f"{path}: not a readable galaxy-vae checkpoint ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]})") from None
    return model.eval(), checkpoint


def find_latest_checkpoint(root=None):
    """The newest best.pt under root (default runs/; recursively, by modification time)."""
    root = Path(root or RUNS_DIR)
    found = sorted(root.rglob("best.pt"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise InputError(f"no checkpoint (best.pt) under {root}: train one with train.py or pass --checkpoint PATH")
    return found[-1]


# ---------------------------------------------------------------- latents in and out

def standard_normal_latents(n, latent_dim, seed=0):
    """n latents z ~ N(0, I), float32, drawn on the CPU: the same seed gives the same galaxies on every
    device and in every script (the grid, --samples, --evaluate, the explorer)."""
    return torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def encode_means(model, images, batch_size=256):
    """Posterior means mu (N x latent, on the CPU): where the encoder puts each galaxy."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.encode(b.to(device))[0].float().cpu() for b in images.split(batch_size)])


@torch.no_grad()
def decode_latents(model, z, batch_size=256):
    """Images (N x 3 x 64 x 64 in [0, 1], on the CPU) decoded from latents z."""
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model.decode(b.to(device)).float().cpu() for b in z.split(batch_size)])


DEFAULT_REFINE_STEPS = 0  # as drawn; the scripts choose per model (refine.resolve_refine_steps)


def refine_latents(model, z, steps=DEFAULT_REFINE_STEPS, batch_size=256):
    """z after `steps` decode-encode round trips, z <- mu(D(z)): Creswell, Arulkumaran & Bharath 2016's
    Markov chain ("Improving sampling from generative autoencoders with Markov chains"), with the posterior
    mean for its draw. A sampler's latents fall partly between the galaxies the decoder was trained on; one
    round trip moves them to where the encoder puts a galaxy that looks like their image. None by default
    here; the scripts' --refine-steps auto chooses 0 or 1 per model on the validation split, as on the
    preset's runs one step brought the samples' FID to the reconstructions' on four splits of five and
    worsened the fifth (README, "One decode-encode step")."""
    for _ in range(steps):
        z = encode_means(model, decode_latents(model, z, batch_size), batch_size)
    return z
