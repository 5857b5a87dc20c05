"""The convolutional beta-VAE: a strided-conv encoder to (mu, log sigma^2), a transposed-conv decoder."""
import torch
import torch.nn as nn


class ConvVAE(nn.Module):
    def __init__(self, latent_dim=32, base_channels=32, n_layers=4, image_size=64, in_channels=3):
        super().__init__()
        if image_size % 2 ** n_layers or image_size // 2 ** n_layers < 1:
            raise ValueError(f"n_layers={n_layers} halves a {image_size}px image below one pixel")
        self.latent_dim, self.base_channels, self.n_layers = latent_dim, base_channels, n_layers
        self.image_size, self.in_channels = image_size, in_channels
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
        blocks = []
        for c_in, c_out in zip(channels[::-1], channels[::-1][1:] + [in_channels]):
            # kernel 4, stride 2, padding 1 doubles the resolution exactly, without checkerboard overlap gaps
            blocks.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if c_out != in_channels:
                blocks += [nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*blocks, nn.Sigmoid())

    def encode(self, x):
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def reparameterize(self, mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z):
        h = self.from_latent(z).view(-1, self.base_channels * 2 ** (self.n_layers - 1),
                                     self.bottom_size, self.bottom_size)
        return self.decoder(h)

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, n, device=None, generator=None):
        device = device or next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, device=device, generator=generator)
        return self.decode(z)
