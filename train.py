"""Train the convolutional beta-VAE on galaxies: `python train.py --latent 32 --beta 1.0`.

One training loop, train(), is used by this script and by grid_search.py. Each epoch writes the
history, the plots, a reconstructions grid and the checkpoints `last.pt` and `best.pt` (by
validation loss) into the run folder; `--resume RUN` continues a run where it stopped.
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from cli import InputError, Parser, exit_on_input_error, flag
from config import PRESET_MACHINES, PRESETS, TrainConfig
from data import load_galaxies
from devices import check_precision, forked_rng, pick_device
from discriminator import build_adversary
from files import RUNS_DIR, atomic_link, atomic_output
from graphed_step import GraphedTrainStep, adam, graphs_wanted, load_adam_state
from losses import TrainingDiverged, beta_at, run_epoch
from model import build_model
from morphology import band_sky_noise
from plots import plot_history, plot_reconstructions

FIGURE_SECONDS = 10  # the run's figures are redrawn at most this often, and after the last epoch


def fid_choice_interval(config, device):
    """Every how many epochs the validation reconstructions' FID is measured to pick best.pt (0: never):
    --fid-every, or by default 5 for an adversarial run on a GPU, where it costs seconds, and never on a
    CPU, where Inception runs at ~8 images/s (N = 549: about a minute a measurement)."""
    if config.fid_every is not None:
        return config.fid_every
    return 5 if device.type == "cuda" and config.adversarial > 0 else 0


def resident(images, device):
    """The images on the GPU when they take under a quarter of its free memory (no copy per batch), else
    where they are."""
    if device.type != "cuda" or images.device == device:
        return images
    free, _ = torch.cuda.mem_get_info(device)
    return images.to(device) if images.numel() * images.element_size() < free / 4 else images


def is_best(history, config, fid_every, best_val_loss):
    """Is the epoch just recorded the one best.pt should hold? Only once beta has reached its target:
    during warm-up a small beta makes the loss look better than the model is. Then the lowest validation
    loss; but the loss does not see what an adversarial term buys, and a GAN's own losses are no guide, so
    with --fid-every the lowest validation FID so far, and for an adversarial run without it the last epoch."""
    h = history[-1]
    if h["beta"] != config.beta:
        return False
    if fid_every:
        return "val_fid" in h and h["val_fid"] <= min(r["val_fid"] for r in history if "val_fid" in r)
    return config.adversarial > 0 or h["val_loss"] < best_val_loss


def train(config, galaxies=None, progress=True, resume=False, on_epoch=None):
    """Train a ConvVAE as `config` says; returns {"run_dir", "best", "history", "best_val_loss"}.
    With resume=True, continues from run_dir/last.pt when it exists. on_epoch(epoch, record), if given, is
    called after each epoch is saved (a grid search reports the validation loss there; an exception it
    raises ends the run with that epoch kept)."""
    device = pick_device(config.device)
    config.check()  # before the data is loaded: fail fast
    check_precision(config.precision, device)
    run_dir = Path(config.out) if config.out else RUNS_DIR / time.strftime("%Y%m%d-%H%M%S")
    fid_every, inception = fid_choice_interval(config, device), None
    if fid_every:
        import fid  # here: a run that measures no FID does not pay for importing Inception at start-up
        from evaluation import fid_scorer, reconstructions
        try:  # first of all: without the FID weights, asking for the choice is bad input
            inception = fid.load_inception(device=device)
        except InputError as e:
            if config.fid_every is not None:
                raise InputError(f"--fid-every {config.fid_every}: {e}") from None
            print(f"best.pt: the last epoch, not chosen by FID ({e})")
            fid_every = 0
    galaxies = galaxies or load_galaxies(config.data, config.classes, config.max_per_class,
                                         seed=config.seed, progress=progress)
    if config.galaxies_shown:  # resolved here, where the training split's size is known; saved so in last.pt
        config = replace(config, epochs=max(1, round(config.galaxies_shown / len(galaxies.train_x))))
    if fid_every:
        score_fid, fid_n = fid_scorer(galaxies, reconstructions, "val", device=device, inception=inception)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_model(config, device)
    graphed = graphs_wanted(config, device)
    optimizer = adam(model.parameters(), config.lr, capturable=graphed)
    adversary = None
    if config.adversarial > 0:  # built after the VAE, so the VAE starts from the same weights either way
        adversary = build_adversary(config.adversarial, config.disc_augment, config.disc_channels, config.lr, device,
                                    config.lecam, capturable=graphed)
    history, best_val_loss, start_epoch = [], float("inf"), 0
    if resume and (run_dir / "last.pt").exists():
        checkpoint = read_checkpoint(run_dir / "last.pt", device)
        model.load_state_dict(checkpoint["model"])
        load_adam_state(optimizer, checkpoint["optimizer"])
        if adversary is not None:
            if "discriminator" not in checkpoint:
                raise InputError(f"{run_dir / 'last.pt'}: has no discriminator to resume --adversarial with")
            adversary["disc"].load_state_dict(checkpoint["discriminator"])
            load_adam_state(adversary["optimizer"], checkpoint["disc_optimizer"])
        history, best_val_loss = checkpoint["history"], checkpoint["best_val_loss"]
        start_epoch = checkpoint["epoch"]
        torch.set_rng_state(checkpoint["torch_rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"].cpu(), device)
    elif config.sky_noise:  # measured on the training split alone (a resumed run loaded it with the weights)
        model.set_sky_noise(config.sky_noise, band_sky_noise(galaxies.train_x))
    if progress:
        print(f"training on {device} ({config.precision}): {len(galaxies.train_x)} train / {len(galaxies.val_x)} validation "
              f"images from {galaxies.source}; run folder {run_dir}")
        if config.galaxies_shown:
            print(f"{config.epochs} epochs: about {config.galaxies_shown:,} galaxies shown (--galaxies-shown)")
    train_x, val_x = resident(galaxies.train_x, device), resident(galaxies.val_x, device)
    train_y, val_y = (galaxies.train_y, galaxies.val_y) if config.class_input else (None, None)
    step = GraphedTrainStep(model, optimizer, config, adversary) if graphed else None
    if fid_every and progress:
        print(f"best.pt: the epoch of the lowest FID of {fid_n} validation reconstructions, measured every "
              f"{fid_every} epochs once beta is reached")

    drawn = time.monotonic()
    for epoch in range(start_epoch, config.epochs):
        beta = beta_at(epoch, config.beta, config.warmup_epochs)
        # The shuffle depends only on (seed, epoch), so a resumed run sees the same batches.
        shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        desc = f"epoch {epoch + 1}/{config.epochs}" if progress else ""
        start = time.perf_counter()
        try:
            # The adversarial term starts once beta has: first the decoder learns to reconstruct, so the
            # discriminator does not win at once against blurry blobs.
            active = adversary if epoch >= config.warmup_epochs else None
            train_metrics = run_epoch(model, train_x, config, beta, optimizer, shuffle, desc, active, step, train_y)
            val_metrics = run_epoch(model, val_x, config, beta, labels=val_y)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"training diverged in epoch {epoch + 1}: {e}; the last good checkpoint "
                                   f"is kept in {run_dir} (try a lower --lr)") from None
        history.append({"epoch": epoch + 1, "beta": beta, "seconds": round(time.perf_counter() - start, 2),
                        **{f"train_{k}": v for k, v in train_metrics.items()},
                        **{f"val_{k}": v for k, v in val_metrics.items()}})
        measured = fid_every and beta == config.beta and ((epoch + 1) % fid_every == 0 or epoch + 1 == config.epochs)
        if measured:
            history[-1] |= {"val_fid": score_fid(model), "val_fid_n": fid_n}
        if progress:
            h = history[-1]
            print(f"epoch {epoch + 1:3d}  beta {beta:.4g}  train loss {h['train_loss']:.1f}  "
                  f"val loss {h['val_loss']:.1f}  val SSIM {h['val_ssim']:.4f}  val KLD {h['val_kld']:.1f}"
                  + (f"  val FID {h['val_fid']:.1f}" if measured else "") + f"  ({h['seconds']:.1f} s)")
        if is_best(history, config, fid_every, best_val_loss):
            best_val_loss = val_metrics["loss"]
            save_checkpoint(run_dir / "best.pt", model, optimizer, epoch + 1, config, history,
                            best_val_loss, galaxies, adversary)
            atomic_link(run_dir / "best.pt", run_dir / "last.pt")  # the same checkpoint: written once
        else:
            save_checkpoint(run_dir / "last.pt", model, optimizer, epoch + 1, config, history,
                            best_val_loss, galaxies, adversary)
        with atomic_output(run_dir / "history.json") as tmp:
            tmp.write_text(json.dumps(history, indent=1))
        # The figures at most every FIGURE_SECONDS and after the last epoch: on a GPU an epoch takes less
        # than drawing them. A noisy decoder draws from the RNG: the figure takes a fork of it, so that a
        # run resumed from last.pt (saved above, RNG state included) goes on exactly as this one does.
        if epoch + 1 == config.epochs or time.monotonic() - drawn >= FIGURE_SECONDS:
            plot_history(history, run_dir)
            with forked_rng(device):
                plot_reconstructions(model, galaxies.val_x, galaxies.val_y, run_dir / "reconstructions.png")
            drawn = time.monotonic()
        if on_epoch is not None:
            on_epoch(epoch + 1, history[-1])

    if not (run_dir / "best.pt").exists():  # warm-up longer than the run: the last epoch is the best we have
        save_checkpoint(run_dir / "best.pt", model, optimizer, config.epochs, config, history,
                        history[-1]["val_loss"], galaxies, adversary)
        best_val_loss = history[-1]["val_loss"]
    return {"run_dir": run_dir, "best": run_dir / "best.pt", "history": history,
            "best_val_loss": best_val_loss}


def parse_args(argv=None):
    d = TrainConfig()
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    presets = "; ".join(f"{name} ({PRESET_MACHINES[name]}): " + " ".join(
        flag(k) + ("" if v is True else f" {v}") for k, v in options.items()) for name, options in PRESETS.items())
    p.add_argument("--preset", help=f"a tested set of options: {presets}. Flags given beside it win")

    def option(group, name, kind, text, **more):
        """A TrainConfig field as a flag, its default the config's (an on/off field: a switch)."""
        if kind is bool:
            group.add_argument(flag(name), action="store_true", help=text)
        else:
            group.add_argument(flag(name), type=kind, default=getattr(d, name), help=text, **more)

    g = p.add_argument_group("data")
    option(g, "data", str, "Galaxy10_DECals.h5, an image folder, or 'embedded' (default: data/Galaxy10_DECals.h5 "
           "if present, else the embedded procedural set)")
    option(g, "classes", int, "Galaxy10 class ids", nargs="+")
    option(g, "max_per_class", int, "cap per class, for quick runs")
    g = p.add_argument_group("model")
    option(g, "latent", int, "latent dimension")
    option(g, "base_channels", int, "channels of the first conv")
    option(g, "layers", int, "conv blocks in encoder and decoder (2-5)")
    option(g, "upsample", str, "decoder upsampling: transpose (default), nearest or bilinear")
    option(g, "res_blocks", int, "residual blocks per decoder block (default 0)")
    option(g, "decoder_noise", bool, "per-pixel noise into every decoder block (StyleGAN), for stochastic detail "
           "with --adversarial")
    option(g, "sky_noise", float, "draw images with F times the training sky's noise per band (default 0: the "
           "decoder's smooth mean); trades SSIM for realism", metavar="F")
    g = p.add_argument_group("loss")
    option(g, "beta", float, "weight of the KL term after warm-up")
    option(g, "warmup_epochs", int, "epochs to raise beta from 1e-4")
    option(g, "recon_loss", str, "the reconstruction term: ssim (1 - SSIM, default) or mse (the mean squared "
           "error, scaled to the size of 1 - SSIM at the end of training, so that beta means the same balance)",
           metavar="ssim|mse")
    option(g, "recon_weight", float, "weight of the reconstruction term (default: number of pixel values, 3*64*64)")
    option(g, "l1_weight", float, "alpha in 1 - SSIM + alpha * L1 (default 0)")
    option(g, "augment", bool, "train on each galaxy turned by a random multiple of 90 degrees and mirrored half "
           "the time (the sky has no up or left: 8x the orientations)")
    g = p.add_argument_group("adversary (a patch discriminator beside the VAE)")
    option(g, "adversarial", float, "weight of the adaptive patch-discriminator term after warm-up (default 0: off)",
           metavar="W")
    option(g, "disc_channels", int, "width of the discriminator's first layer (default 32; 16 trains ~1.7x faster "
           "on a CPU)")
    option(g, "disc_augment", bool, "show the discriminator random 90-degree turns and mirrors of both sides")
    option(g, "lecam", float, "weight of the LeCam penalty that keeps the discriminator from learning the training "
           "galaxies by heart (Tseng et al. 2021; default 0: off)", metavar="LAMBDA")
    g = p.add_argument_group("run")
    option(g, "batch_size", int, None)
    option(g, "lr", float, "Adam learning rate")
    g.add_argument("--epochs", type=int, help=f"default {d.epochs}; with --resume, the run's own; given, it wins "
                   "over --galaxies-shown")
    option(g, "galaxies_shown", int, "train for the epochs that show about N training galaxies (N / the training "
           "split, rounded) instead of --epochs: a budget of time whatever the set's size", metavar="N")
    option(g, "device", str, "auto, cpu or cuda")
    option(g, "precision", str, "training precision: fp32, or bf16 (CUDA, or a CPU with AVX512-BF16/AMX; the model "
           "in bfloat16, SSIM and KLD in fp32; measuring is always fp32)")
    option(g, "fid_every", int, "every K epochs (and at the last), measure the FID of the validation "
           "reconstructions and keep the epoch of the lowest as best.pt (default: 5 for --adversarial on a GPU, "
           "else 0: off; on a CPU each measurement takes about N/8 s, N = the validation split up to 549); "
           "may be given with --resume, as measuring does not change training", metavar="K")
    option(g, "seed", int, None)
    option(g, "out", str, "run folder (default: runs/<date-time>)")
    g.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last.pt")
    preset = p.parse_known_args(argv)[0].preset
    if preset is not None:
        if preset not in PRESETS:
            raise InputError(f"--preset {preset!r}: choose {', '.join(PRESETS)}")
        p.set_defaults(**PRESETS[preset])
    return p.parse_args(argv)


def config_of(args):
    """The run's TrainConfig from the parsed flags: a new run's, or with --resume the saved one, whose number
    of epochs may be raised to train longer and whose --fid-every may change (measuring draws from no RNG the
    training uses). --epochs, when given, wins over --galaxies-shown."""
    if args.resume:
        last = Path(args.resume) / "last.pt"
        if not last.is_file():
            raise InputError(f"{last}: no checkpoint to resume from")
        _, checkpoint = load_checkpoint(last)
        given = {"fid_every": args.fid_every} if args.fid_every is not None else {}
        config = TrainConfig.from_dict(checkpoint["config"] | {"out": args.resume, "device": args.device} | given)
        if args.epochs is not None:
            config.epochs, config.galaxies_shown = args.epochs, None
        return config
    options = {k: v for k, v in vars(args).items() if k not in ("resume", "preset")}
    if args.epochs is not None:
        options["galaxies_shown"] = None
    return TrainConfig.from_dict(options | {"epochs": TrainConfig.epochs if args.epochs is None else args.epochs})


@exit_on_input_error
def main(argv=None):
    args = parse_args(argv)
    config = config_of(args)
    try:
        result = train(config, resume=bool(args.resume))
    except TrainingDiverged as e:
        raise SystemExit(f"train.py: {e}")
    last = result["history"][-1]
    print(f"done: val SSIM {last['val_ssim']:.4f}, val KLD {last['val_kld']:.1f}; "
          f"best checkpoint {result['best']}")


if __name__ == "__main__":
    main()
