"""The checkpoint format, in one place: what a run saves (the model, its optimizer, the flat config it
was built from, the history, the RNG state and, with a discriminator, that too), how a model is rebuilt
from it (as nanoGPT's sample.py does), where the newest one is, and whether one belongs to a config.

Plain types and tensors only, so torch.load(..., weights_only=True) opens it: a checkpoint someone hands
you is data, never code.

A config field missing from a checkpoint (one written before that field existed) has its default: every
new field's default is the behaviour the code had before it, so an old checkpoint is rebuilt, resumed and
matched as what it was. Hence a default never changes once released (a new behaviour is a new value to
choose); the config classes' from_dict, which every reader of a saved config goes through, fills them in."""
from dataclasses import asdict
from pathlib import Path

import torch

from cli import InputError
from files import RUNS_DIR, atomic_output
from model import build_model


def flat_config(config):
    """A TrainConfig as the checkpoint keeps it: a dict of plain values."""
    return asdict(config) | {"classes": list(config.classes)}


def save_checkpoint(path, model, optimizer, epoch, config, history, best_val_loss, galaxies, adversary=None):
    """Write a checkpoint atomically: model and optimizer state, the epoch reached, the config, history,
    best validation loss, the torch RNG state (for exact resume) and which data it was trained on. With
    an adversary, both networks and both optimizers: a resumed GAN run is the same run."""
    checkpoint = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
        "config": flat_config(config), "history": history, "best_val_loss": best_val_loss,
        "torch_rng": torch.get_rng_state(),
        "data": {"source": galaxies.source, "key": galaxies.key, "fingerprint": galaxies.fingerprint,
                 "classes": list(galaxies.classes)},
    }
    if next(model.parameters()).is_cuda:  # the reparameterisation's noise: exact resume on a GPU too
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state(next(model.parameters()).device)
    if adversary is not None:
        checkpoint |= {"discriminator": adversary["disc"].state_dict(),
                       "disc_optimizer": adversary["optimizer"].state_dict()}
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


def unreadable(path, error):
    """The one line for a file that is no checkpoint we can use: the exception's kind and first line."""
    first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return InputError(f"{path}: not a readable galaxy-vae checkpoint ({type(error).__name__}: {first})")


def read_checkpoint(path, device="cpu"):
    """The checkpoint dict of a file, or InputError saying why it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise unreadable(path, e) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("config"), dict) or "model" not in checkpoint:
        raise InputError(f"{path}: not a galaxy-vae checkpoint (no model and config)")
    return checkpoint


def checkpoint_file(path):
    """The checkpoint file `path` names: itself, or a run folder's best.pt."""
    path = Path(path)
    return path / "best.pt" if path.is_dir() else path


def load_checkpoint(path, device="cpu", drawn_by=None):
    """Rebuild the model from the config saved inside a checkpoint file or run folder (its best.pt):
    (model in eval mode, checkpoint dict). drawn_by: the script that draws from it (generate.py, explore.py),
    which refuses a model whose decoder takes a class, as the scripts give none."""
    path = checkpoint_file(path)
    checkpoint = read_checkpoint(path, device)
    try:
        model = build_model(checkpoint["config"], device)
        model.load_state_dict(checkpoint["model"])
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except Exception as e:
        raise unreadable(path, e) from None
    if drawn_by and model.class_input:
        raise InputError(f"{path}: its decoder takes each galaxy's class (a model of docs/class_input_study.py), "
                         f"which {drawn_by} does not give")
    return model.eval(), checkpoint


def find_latest_checkpoint(root=None):
    """The newest best.pt under root (default runs/; recursively, by modification time)."""
    root = Path(root or RUNS_DIR)
    found = sorted(root.rglob("best.pt"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise InputError(f"no checkpoint (best.pt) under {root}: train one with train.py or pass --checkpoint PATH")
    return found[-1]


def resume_mismatch(path, config):
    """Why the checkpoint at `path` (an interrupted run's last.pt) may not be resumed as this very config:
    None when it belongs to it, else one short reason (unreadable, or the first field that differs). A
    field the checkpoint lacks has its default (see the top of this file); where it runs and where it is
    written do not count."""
    try:
        saved = flat_config(type(config).from_dict(read_checkpoint(path)["config"]))
    except InputError as e:
        return str(e)
    except (TypeError, ValueError) as e:  # a config of fields with impossible values
        return str(unreadable(path, e))
    wanted = flat_config(config)
    differs = [k for k, v in wanted.items() if k not in ("out", "device") and saved.get(k) != v]
    return None if not differs else (f"{path}: of another configuration ({differs[0]} {saved[differs[0]]!r}, "
                                     f"not {wanted[differs[0]]!r})")
