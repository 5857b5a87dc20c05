"""The judge: a small CNN classifier, trained on the training split only, that says whether generated
galaxies look like the class they were drawn for. It is a second model, fixed before it sees samples."""
import math
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from data import atomic_output, default_cache_dir

CLASSIFIER_VERSION = 3  # bump when GalaxyClassifier or its training changes: old caches are then ignored


class GalaxyClassifier(nn.Sequential):
    """Four strided conv blocks and a linear head: enough to tell round, spiral and edge-on galaxies
    apart, small enough to train in seconds on a CPU. It judges whether class-targeted samples look like
    their class. Four, not three: the last block's 31-pixel receptive field sees a whole disk's shape;
    with 15 pixels the network took compact round galaxies for the bulges of edge-on ones."""
    def __init__(self, n_classes, width=16):
        blocks, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width, 8 * width):
            blocks += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        super().__init__(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, n_classes))


def train_classifier(images, labels, classes, epochs=5, seed=0, device="cpu", batch_size=64, progress=True):
    torch.manual_seed(seed)
    model = GalaxyClassifier(len(classes)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    # The learning rate falls to zero over the run, so the model we keep is not one noisy step's snapshot.
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    targets = torch.tensor([classes.index(int(c)) for c in labels])
    shuffle = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="classifier", unit="epoch", disable=not progress):
        for index in torch.randperm(len(images), generator=shuffle).split(batch_size):
            # A galaxy's class does not depend on how it lies on the sky: each batch is turned by a random
            # multiple of 90 degrees and maybe mirrored, eight times the data for free.
            turns, mirror = torch.randint(4, (2,), generator=shuffle).tolist()
            x = torch.rot90(images[index], turns, dims=(2, 3))
            x = x.flip(3) if mirror % 2 else x
            loss = nn.functional.cross_entropy(model(x.to(device)), targets[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def load_or_train_classifier(galaxies, epochs=5, seed=0, device="cpu", cache_dir=None, progress=True):
    """The classifier of these splits: from the data cache (data.default_cache_dir()) (a plain state dict, loaded with
    weights_only=True) when trained before, else trained on the training split and cached."""
    classes = list(galaxies.classes)
    name = f"classifier-{galaxies.key}-v{CLASSIFIER_VERSION}-e{epochs}-s{seed}.pt"
    path = Path(cache_dir or default_cache_dir()) / name
    if path.is_file():
        try:
            model = GalaxyClassifier(len(classes)).to(device)
            model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            return model.eval()
        except Exception:  # a damaged cache is rebuilt, not fatal
            pass
    model = train_classifier(galaxies.train_x, galaxies.train_y, classes, epochs, seed, device, progress=progress)
    with atomic_output(path) as tmp:
        torch.save(model.state_dict(), tmp)
    return model


@torch.no_grad()
def classify(model, images, classes, batch_size=256):
    """Predicted Galaxy10 class ids of images."""
    device = next(model.parameters()).device
    return torch.tensor(classes)[torch.cat([model(b.to(device)).argmax(1).cpu() for b in images.split(batch_size)])]
