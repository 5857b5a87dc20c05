"""The judge: a small CNN classifier that says whether generated galaxies look like the class they were
drawn for. It is fixed before it sees a sample: trained on the training split only, its design (width)
and its epoch chosen by accuracy on the validation split, never by accuracy on generated images. The
candidates tried and their validation accuracies travel with it (`model.selection`)."""
import math
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from devices import one_cpu_thread
from files import atomic_output, default_cache_dir, set_aside
from losses import turn_or_mirror_each

JUDGE_VERSION = 5  # bump when GalaxyClassifier, its training or the candidates change: old caches are then ignored
CANDIDATE_WIDTHS = (16, 32)  # the designs tried; the one with the best validation accuracy is kept


class GalaxyClassifier(nn.Sequential):
    """Four strided conv blocks and a linear head: enough to tell round, spiral and edge-on galaxies
    apart, small enough to train in a minute on a CPU. Four, not three: the last block's 31-pixel
    receptive field sees a whole disk's shape; with 15 pixels the network took compact round galaxies for
    the bulges of edge-on ones."""
    def __init__(self, n_classes, width=16):
        blocks, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        super().__init__(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c_in, n_classes))
        self.width = width


def accuracy(model, images, labels, classes):
    return (classify(model, images, classes) == labels).float().mean().item() if len(images) else float("nan")


def train_classifier(images, labels, classes, epochs=30, seed=0, device="cpu", batch_size=64, progress=True,
                     width=16, val=None):
    """A GalaxyClassifier trained on (images, labels) for `epochs` (no early stop: the learning rate decays
    to zero, so the last epochs tend to be the best). With val = (images, labels), the state after the epoch
    of best validation accuracy (the earliest of equals) is returned, and `model.val_curve` holds the
    accuracy of every epoch."""
    torch.manual_seed(seed)
    model = GalaxyClassifier(len(classes), width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    # The learning rate falls to zero over the run, so late epochs are not one noisy step's snapshot.
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    targets = torch.tensor([classes.index(int(c)) for c in labels])
    shuffle = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, curve = -1.0, None, 0, []
    bar = tqdm(range(epochs), desc=f"judge width {width}", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        for index in torch.randperm(len(images), generator=shuffle).split(batch_size):
            x = turn_or_mirror_each(images[index], shuffle)
            loss = nn.functional.cross_entropy(model(x.to(device)), targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        if val is None:
            continue
        curve.append(accuracy(model, *val, classes))
        bar.set_postfix(val_accuracy=f"{curve[-1]:.3f}")
        if curve[-1] > best:
            best, best_epoch = curve[-1], epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.val_curve, model.best_epoch = curve, best_epoch
    return model.eval()


def select_judge(galaxies, epochs=30, seed=0, device="cpu", widths=CANDIDATE_WIDTHS, progress=True):
    """Train one candidate per width on the training split; keep the one (and its epoch) with the best
    validation accuracy, the smaller of equals. `model.selection` records every candidate. On a CPU they
    train on one thread, so that the judge, and every accuracy it gives, is the same whatever the machine's
    core count (it is trained once per split and cached)."""
    classes, val = list(galaxies.classes), (galaxies.val_x, galaxies.val_y)
    with one_cpu_thread() if torch.device(device).type == "cpu" else nullcontext():
        candidates = [train_classifier(galaxies.train_x, galaxies.train_y, classes, epochs, seed, device,
                                       progress=progress, width=w, val=val) for w in widths]
    chosen = max(candidates, key=lambda m: (max(m.val_curve), -m.width))
    chosen.selection = {
        "chosen": {"width": chosen.width, "epoch": chosen.best_epoch, "val_accuracy": max(chosen.val_curve)},
        "candidates": [{"width": m.width, "epoch": m.best_epoch, "val_accuracy": max(m.val_curve),
                        "val_accuracy_per_epoch": m.val_curve} for m in candidates],
        "max_epochs": epochs, "seed": seed, "n_train": len(galaxies.train_x),
        "n_val": len(val[0])}
    return chosen


def load_or_train_classifier(galaxies, epochs=30, seed=0, device="cpu", cache_dir=None, progress=True,
                             name=None, widths=CANDIDATE_WIDTHS):
    """The judge of these splits, chosen by select_judge: from the data cache (files.default_cache_dir()) when
    chosen before (state, width and selection record as plain tensors and types, loaded with
    weights_only=True), else trained and cached. `name` tells one judge of the splits from another (default:
    the judge of the real galaxies, named by their content's fingerprint, so a folder copied again keeps it)."""
    classes = list(galaxies.classes)
    name = f"{name or 'judge-' + galaxies.fingerprint}-v{JUDGE_VERSION}-e{epochs}-s{seed}.pt"
    path = Path(cache_dir or default_cache_dir()) / name
    if path.is_file():
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
            model = GalaxyClassifier(len(classes), saved["width"]).to(device)
            model.load_state_dict(saved["state"])
            model.selection = saved["selection"]
            return model.eval()
        except Exception as e:  # a damaged cache is kept aside and rebuilt, not fatal
            set_aside(path, f"not a cached judge ({type(e).__name__})", "; training the judge again")
    model = select_judge(galaxies, epochs, seed, device, widths, progress)
    with atomic_output(path) as tmp:
        torch.save({"state": model.state_dict(), "width": model.width, "selection": model.selection}, tmp)
    return model


@torch.no_grad()
def classify(model, images, classes, batch_size=256):
    """Predicted Galaxy10 class ids of images: the class of the mean probability over the eight turns and
    mirror images of each galaxy (as in Dieleman et al. 2015's Galaxy Zoo classifier), so the verdict
    does not depend on how the galaxy happens to lie."""
    device = next(model.parameters()).device
    model.eval()

    def probabilities(x):
        views = [torch.rot90(v, t, dims=(2, 3)) for v in (x, x.flip(3)) for t in range(4)]
        return torch.stack([model(v).softmax(1) for v in views]).mean(0)
    return torch.tensor(classes)[torch.cat([probabilities(b.to(device)).argmax(1).cpu() for b in images.split(batch_size)])]
