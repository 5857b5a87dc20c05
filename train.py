"""Train the convolutional beta-VAE on galaxies: `python train.py --latent 32 --beta 1.0`.

One training loop, train(), is used by this script and by grid_search.py. Each epoch writes the
history, the plots, a reconstructions grid and the checkpoints `last.pt` and `best.pt` (by
validation loss) into the run folder; `--resume RUN` continues a run where it stopped.
"""
import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from data import DEFAULT_CLASSES, InputError, Parser, atomic_output, exit_on_input_error, load_galaxies
from discriminator import build_adversary
from losses import PRECISIONS, TrainingDiverged, beta_at, run_epoch
from model import (RUNS_DIR, ModelConfig, build_model, check_flag, check_precision, check_value, forked_rng,
                   load_checkpoint, pick_device)
from morphology import band_sky_noise
from plots import plot_history, plot_reconstructions


@dataclass
class TrainConfig(ModelConfig):
    """Everything a run depends on: the model's hyper-parameters (ModelConfig's fields) and these."""
    data: str | None = None            # None: the Galaxy10 file in data/ if present, else the embedded set
    classes: tuple = DEFAULT_CLASSES
    max_per_class: int | None = None   # small, fast runs
    beta: float = 1.0
    warmup_epochs: int = 5
    recon_weight: float | None = None  # None: number of pixel values (see losses.py)
    l1_weight: float = 0.0             # alpha in 1 - SSIM + alpha * L1 (see losses.py)
    adversarial: float = 0.0           # W of the adaptive adversarial term; 0: no discriminator
    disc_channels: int = 32            # width of the patch discriminator's first layer (doubled twice)
    disc_augment: bool = False         # the discriminator sees random turns and mirrors (losses.dihedral)
    lecam: float = 0.0                 # lambda of the discriminator's LeCam penalty (losses.lecam_penalty); 0: off
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 20
    device: str = "auto"
    precision: str = "fp32"            # "bf16": autocast for the model, SSIM and KLD in fp32 (losses.py)
    seed: int = 0
    out: str | None = None             # run folder; None: runs/<date-time>

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in known})
        config.classes = tuple(config.classes)
        return config

    def check(self):
        """The one set of validity rules, used by train.py and grid_search.py; raises InputError naming
        the first bad value as its flag. The model's own rules live with the model."""
        super().check()
        for name in ("batch_size", "epochs"):
            check_value(name, getattr(self, name), lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        check_value("warmup_epochs", self.warmup_epochs, lambda v: v >= 0 and v == int(v), "a whole number >= 0")
        check_value("lr", self.lr, lambda v: 0 < v < math.inf, "a learning rate > 0")
        check_value("beta", self.beta, lambda v: 0 <= v < math.inf, "beta >= 0")
        if self.recon_weight is not None:
            check_value("recon_weight", self.recon_weight, lambda v: 0 < v < math.inf, "> 0")
        check_value("l1_weight", self.l1_weight, lambda v: 0 <= v < math.inf, ">= 0")
        check_value("adversarial", self.adversarial, lambda v: 0 <= v < math.inf, ">= 0 (0: off)")
        check_flag("disc_augment", self.disc_augment)
        check_value("lecam", self.lecam, lambda v: 0 <= v < math.inf, ">= 0 (0: off)")
        check_value("disc_channels", self.disc_channels, lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        return self


# One flag for a tested set of options; flags given beside it still win. See the README's comparison.
PRESETS = {"sharp": {"upsample": "bilinear", "res_blocks": 1, "l1_weight": 1.0, "adversarial": 0.1},
           # VAE-GAN: pays off only after ~100 epochs (minutes on a GPU, beyond the 15-minute CPU budget)
           "vaegan": {"upsample": "bilinear", "res_blocks": 1, "l1_weight": 1.0, "adversarial": 0.5,
                      "decoder_noise": True},
           # the VAE-GAN that fits the 15-minute CPU budget: the seed's decoder, a half-width discriminator
           # (1.7x faster steps) and the 40 epochs it needs to come through the GAN's unsettled start; a wide
           # latent (SSIM +0.03-0.05) pays for half the sky's noise (the largest fraction that kept every
           # GPU run's validation SSIM above the default's), and LeCam so that the discriminator does not win
           "vaegan-cpu": {"decoder_noise": True, "adversarial": 0.5, "l1_weight": 1.0, "disc_augment": True,
                          "disc_channels": 16, "lecam": 0.1, "latent": 128, "beta": 0.5, "sky_noise": 0.5,
                          "epochs": 40}}


def save_checkpoint(path, model, optimizer, epoch, config, history, best_val_loss, galaxies, adversary=None):
    # Plain types and tensors only, so torch.load(..., weights_only=True) opens it: a checkpoint
    # someone hands you is data, never code.
    checkpoint = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
        "config": asdict(config) | {"classes": list(config.classes)}, "history": history,
        "best_val_loss": best_val_loss, "torch_rng": torch.get_rng_state(),
        "data": {"source": galaxies.source, "key": galaxies.key, "classes": list(galaxies.classes)},
    }
    if adversary is not None:  # both networks and both optimizers: a resumed GAN run is the same run
        checkpoint |= {"discriminator": adversary["disc"].state_dict(),
                       "disc_optimizer": adversary["optimizer"].state_dict()}
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


def train(config, galaxies=None, progress=True, resume=False):
    """Train a ConvVAE as `config` says; returns {"run_dir", "best", "history", "best_val_loss"}.
    With resume=True, continues from run_dir/last.pt when it exists."""
    device = pick_device(config.device)
    config.check()  # before the data is loaded: fail fast
    check_precision(config.precision, device)
    run_dir = Path(config.out) if config.out else RUNS_DIR / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    galaxies = galaxies or load_galaxies(config.data, config.classes, config.max_per_class,
                                         seed=config.seed, progress=progress)
    torch.manual_seed(config.seed)
    model = build_model(config, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    adversary = None
    if config.adversarial > 0:  # built after the VAE, so the VAE starts from the same weights either way
        adversary = build_adversary(config.adversarial, config.disc_augment, config.disc_channels, config.lr, device,
                                    config.lecam)
    history, best_val_loss, start_epoch = [], math.inf, 0
    if resume and (run_dir / "last.pt").exists():
        checkpoint = torch.load(run_dir / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if adversary is not None:
            if "discriminator" not in checkpoint:
                raise InputError(f"{run_dir / 'last.pt'}: has no discriminator to resume --adversarial with")
            adversary["disc"].load_state_dict(checkpoint["discriminator"])
            adversary["optimizer"].load_state_dict(checkpoint["disc_optimizer"])
        history, best_val_loss = checkpoint["history"], checkpoint["best_val_loss"]
        start_epoch = checkpoint["epoch"]
        torch.set_rng_state(checkpoint["torch_rng"])
    elif config.sky_noise:  # measured on the training split alone (a resumed run loaded it with the weights)
        model.sky_sigma.copy_(torch.as_tensor(band_sky_noise(galaxies.train_x)).view(1, -1, 1, 1))
    if progress:
        print(f"training on {device} ({config.precision}): {len(galaxies.train_x)} train / {len(galaxies.val_x)} validation "
              f"images from {galaxies.source}; run folder {run_dir}")

    for epoch in range(start_epoch, config.epochs):
        beta = beta_at(epoch, config.beta, config.warmup_epochs)
        # The shuffle depends only on (seed, epoch), so a resumed run sees the same batches.
        shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        desc = f"epoch {epoch + 1}/{config.epochs}" if progress else ""
        try:
            # The adversarial term starts once beta has: first the decoder learns to reconstruct, so the
            # discriminator does not win at once against blurry blobs.
            active = adversary if epoch >= config.warmup_epochs else None
            train_metrics = run_epoch(model, galaxies.train_x, config, beta, optimizer, shuffle, desc, active)
            val_metrics = run_epoch(model, galaxies.val_x, config, beta)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: {e}; the last good checkpoint "
                                   f"is kept in {run_dir} (try a lower --lr)") from None
        history.append({"epoch": epoch + 1, "beta": beta,
                        **{f"train_{k}": v for k, v in train_metrics.items()},
                        **{f"val_{k}": v for k, v in val_metrics.items()}})
        if progress:
            h = history[-1]
            print(f"epoch {epoch + 1:3d}  beta {beta:.4g}  train loss {h['train_loss']:.1f}  "
                  f"val loss {h['val_loss']:.1f}  val SSIM {h['val_ssim']:.4f}  val KLD {h['val_kld']:.1f}")
        # The best model is chosen only once beta has reached its target: during warm-up a small
        # beta makes the loss look better than the model is. With a discriminator it is the last epoch: the
        # validation loss does not see what the adversarial term buys (on gz1 the epoch it picked scored
        # FID 194, the last 126), and a GAN's own losses are no guide either.
        if beta == config.beta and (val_metrics["loss"] < best_val_loss or config.adversarial > 0):
            best_val_loss = val_metrics["loss"]
            save_checkpoint(run_dir / "best.pt", model, optimizer, epoch + 1, config, history,
                            best_val_loss, galaxies, adversary)
        save_checkpoint(run_dir / "last.pt", model, optimizer, epoch + 1, config, history,
                        best_val_loss, galaxies, adversary)
        with atomic_output(run_dir / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))
        plot_history(history, run_dir)
        # A noisy decoder draws from the RNG: the figure takes a fork of it, so that a run resumed from
        # last.pt (saved above, RNG state included) goes on exactly as this one does.
        with forked_rng(device):
            plot_reconstructions(model, galaxies.val_x, galaxies.val_y, run_dir / "reconstructions.png")

    if not (run_dir / "best.pt").exists():  # warm-up longer than the run: the last epoch is the best we have
        save_checkpoint(run_dir / "best.pt", model, optimizer, config.epochs, config, history,
                        history[-1]["val_loss"], galaxies, adversary)
        best_val_loss = history[-1]["val_loss"]
    return {"run_dir": run_dir, "best": run_dir / "best.pt", "history": history,
            "best_val_loss": best_val_loss}


def parse_args(argv=None):
    d = TrainConfig()
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=d.data, help="Galaxy10_DECals.h5, an image folder, or 'embedded' "
                   "(default: data/Galaxy10_DECals.h5 if present, else the embedded procedural set)")
    p.add_argument("--classes", type=int, nargs="+", default=list(d.classes), help="Galaxy10 class ids")
    p.add_argument("--max-per-class", type=int, default=d.max_per_class, help="cap per class, for quick runs")
    p.add_argument("--latent", type=int, default=d.latent, help="latent dimension")
    p.add_argument("--beta", type=float, default=d.beta, help="weight of the KL term after warm-up")
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="epochs to raise beta from 1e-4")
    p.add_argument("--recon-weight", type=float, default=d.recon_weight,
                   help="weight of 1 - SSIM (default: number of pixel values, 3*64*64)")
    p.add_argument("--l1-weight", type=float, default=d.l1_weight, help="alpha in 1 - SSIM + alpha * L1 (default 0)")
    p.add_argument("--adversarial", type=float, default=d.adversarial, metavar="W",
                   help="weight of the adaptive patch-discriminator term after warm-up (default 0: off)")
    p.add_argument("--base-channels", type=int, default=d.base_channels, help="channels of the first conv")
    p.add_argument("--upsample", default=d.upsample, help="decoder upsampling: transpose (default), nearest or bilinear")
    p.add_argument("--res-blocks", type=int, default=d.res_blocks, help="residual blocks per decoder block (default 0)")
    p.add_argument("--decoder-noise", action="store_true",
                   help="per-pixel noise into every decoder block (StyleGAN), for stochastic detail with --adversarial")
    p.add_argument("--sky-noise", type=float, default=d.sky_noise, metavar="F",
                   help="draw images with F times the training sky's noise per band (default 0: the decoder's "
                        "smooth mean); trades SSIM for realism, see the README")
    p.add_argument("--disc-channels", type=int, default=d.disc_channels,
                   help="width of the discriminator's first layer (default 32; 16 trains ~1.7x faster on a CPU)")
    p.add_argument("--disc-augment", action="store_true",
                   help="show the discriminator random 90-degree turns and mirrors of both sides (with --adversarial)")
    p.add_argument("--lecam", type=float, default=d.lecam, metavar="LAMBDA",
                   help="weight of the LeCam penalty that keeps the discriminator from learning the training "
                        "galaxies by heart (Tseng et al. 2021; with --adversarial; default 0: off)")
    p.add_argument("--layers", type=int, default=d.layers, help="conv blocks in encoder and decoder (2-5)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    p.add_argument("--epochs", type=int, help=f"default {d.epochs}; with --resume, the run's own")
    p.add_argument("--device", default=d.device, help="auto, cpu or cuda")
    p.add_argument("--precision", default=d.precision, help="training precision: fp32, or bf16 (CUDA, or a CPU "
                   "with AVX512-BF16/AMX; the model in bfloat16, SSIM and KLD in fp32; measuring is always fp32)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help="run folder (default: runs/<date-time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last.pt")
    presets = "; ".join(f"{name}: " + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
                                                for k, v in options.items()) for name, options in PRESETS.items())
    p.add_argument("--preset", help=f"a tested set of options ({presets}); flags given beside it win")
    preset = p.parse_known_args(argv)[0].preset
    if preset is not None:
        if preset not in PRESETS:
            raise InputError(f"--preset {preset!r}: choose {', '.join(PRESETS)}")
        p.set_defaults(**PRESETS[preset])
    return p.parse_args(argv)


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    if args.resume:
        last = Path(args.resume) / "last.pt"
        if not last.is_file():
            raise InputError(f"{last}: no checkpoint to resume from")
        _, checkpoint = load_checkpoint(last)
        # The saved config wins, except for the number of epochs, which may be raised to train longer.
        config = TrainConfig.from_dict(checkpoint["config"] | {"out": args.resume, "device": args.device})
        if args.epochs is not None:
            config.epochs = args.epochs
    else:
        options = {k: v for k, v in vars(args).items() if k not in ("resume", "preset")}
        config = TrainConfig.from_dict(options | {"epochs": TrainConfig.epochs if args.epochs is None else args.epochs})
    try:
        result = train(config, resume=bool(args.resume))
    except TrainingDiverged as e:
        raise SystemExit(f"train.py: {e}")
    last = result["history"][-1]
    print(f"done: val SSIM {last['val_ssim']:.4f}, val KLD {last['val_kld']:.1f}; "
          f"best checkpoint {result['best']}")


if __name__ == "__main__":
    main()
