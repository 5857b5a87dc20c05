"""Images as files: which suffixes an image folder may hold, and float images in [0, 1] as 8-bit pixels."""
import torch

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def to_uint8(images):
    """Float images in [0, 1] (N x 3 x H x W, or one 3 x H x W) -> uint8 numpy, channels last, rounded
    to nearest as torchvision's save_image does."""
    pixels = images.detach().float().cpu().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    return pixels.movedim(-3, -1).numpy()
