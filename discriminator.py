"""A small patch discriminator for the optional adversarial term (Isola et al. 2017; Esser et al.
2021): strided 4x4 convolutions to a grid of logits, each judging one ~34 px patch of a 64 px galaxy as
real or reconstructed. Trained from scratch beside the VAE; no pretrained weights, nothing of the FID
network."""
import torch
import torch.nn as nn


class PatchDiscriminator(nn.Module):
    def __init__(self, channels=32, in_channels=3):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),              # 32 px
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),  # 16 px
            nn.Conv2d(2 * c, 4 * c, 4, stride=1, padding=1), nn.BatchNorm2d(4 * c), nn.LeakyReLU(0.2),  # 15 px
            nn.Conv2d(4 * c, 1, 4, stride=1, padding=1))                                        # 14 x 14 logits
        for m in self.modules():  # DCGAN's initialisation, as pix2pix and taming-transformers use
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.net(x)


def build_adversary(weight, augment=False, channels=32, lr=1e-3, device="cpu", lecam=0.0, capturable=False):
    """What losses.train_step needs to add the adversarial term: a fresh PatchDiscriminator of `channels`, its
    optimizer, the term's weight W, whether the discriminator sees turns and mirrors, and LeCam's lambda
    (0: off; on, the discriminator keeps the moving means of its real and fake logits as a buffer, so they
    are saved and resumed with its weights). capturable: its Adam state on the device, for a CUDA graph."""
    disc = PatchDiscriminator(channels).to(device, memory_format=torch.channels_last)
    if lecam:
        disc.register_buffer("logit_ema", torch.zeros(2, device=device))
    # Adam betas (0.5, 0.9) as in the GAN literature: a short momentum memory for a moving target.
    return {"disc": disc, "weight": weight, "augment": augment, "lecam": lecam,
            "optimizer": torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9), capturable=capturable)}
