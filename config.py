"""What a training run depends on: TrainConfig (the model's ModelConfig fields and the training
settings), its validity rules, and the presets, the tested sets of options that train.py's --preset names."""
import math
from dataclasses import dataclass, fields

from classes import DEFAULT_CLASSES
from cli import InputError, check_choice, check_flag, check_value
from losses import PRECISIONS, RECON_LOSSES
from model import ModelConfig


@dataclass
class TrainConfig(ModelConfig):
    """Everything a run depends on: the model's hyper-parameters (ModelConfig's fields) and these."""
    data: str | None = None            # None: the Galaxy10 file in data/ if present, else the embedded set
    classes: tuple = DEFAULT_CLASSES
    max_per_class: int | None = None   # small, fast runs
    beta: float = 1.0
    warmup_epochs: int = 5
    recon_loss: str = "ssim"           # "mse": MSE_SCALE x MSE in the place of 1 - SSIM (see losses.py); a
                                       # checkpoint from before this field trained with SSIM, its default
    recon_weight: float | None = None  # None: number of pixel values (see losses.py)
    l1_weight: float = 0.0             # alpha in 1 - SSIM + alpha * L1 (see losses.py)
    adversarial: float = 0.0           # W of the adaptive adversarial term; 0: no discriminator
    disc_channels: int = 32            # width of the patch discriminator's first layer (doubled twice)
    augment: bool = False              # the VAE trains on random turns and mirrors (losses.turn_or_mirror_each)
    disc_augment: bool = False         # the discriminator sees random turns and mirrors (losses.turn_or_mirror_batch)
    lecam: float = 0.0                 # lambda of the discriminator's LeCam penalty (losses.lecam_penalty); 0: off
    fid_every: int | None = None       # every K epochs the validation reconstructions' FID, which picks best.pt;
                                       # None: 5 for an adversarial run on a GPU, else 0 (off)
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 20
    galaxies_shown: int | None = None  # train for the epochs that show about this many training galaxies instead
                                       # (a time budget that holds whatever the set's size); None: --epochs
    device: str = "auto"
    precision: str = "fp32"            # "bf16": autocast for the model, SSIM and KLD in fp32 (losses.py)
    seed: int = 0
    out: str | None = None             # run folder; None: runs/<date-time>

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in d.items() if k in known})
        config.classes, config.class_input = tuple(config.classes), tuple(config.class_input)
        return config

    def check(self):
        """The one set of validity rules, used by train.py and grid_search.py; raises InputError naming
        the first bad value as its flag. The model's own rules live with the model."""
        super().check()
        if self.class_input and tuple(self.class_input) != tuple(self.classes):
            raise InputError(f"class_input {self.class_input}: a decoder told the class must know the run's classes "
                             f"{self.classes}, in their order")
        for name in ("batch_size", "epochs"):
            check_value(name, getattr(self, name), lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        if self.galaxies_shown is not None:
            check_value("galaxies_shown", self.galaxies_shown, lambda v: v >= 1 and v == int(v),
                        "a whole number, at least 1")
        check_value("warmup_epochs", self.warmup_epochs, lambda v: v >= 0 and v == int(v), "a whole number >= 0")
        check_value("lr", self.lr, lambda v: 0 < v < math.inf, "a learning rate > 0")
        check_value("beta", self.beta, lambda v: 0 <= v < math.inf, "beta >= 0")
        check_choice("recon_loss", self.recon_loss, RECON_LOSSES)
        if self.recon_weight is not None:
            check_value("recon_weight", self.recon_weight, lambda v: 0 < v < math.inf, "> 0")
        check_value("l1_weight", self.l1_weight, lambda v: 0 <= v < math.inf, ">= 0")
        check_value("adversarial", self.adversarial, lambda v: 0 <= v < math.inf, ">= 0 (0: off)")
        check_flag("augment", self.augment)
        check_flag("disc_augment", self.disc_augment)
        check_value("lecam", self.lecam, lambda v: 0 <= v < math.inf, ">= 0 (0: off)")
        if self.fid_every is not None:
            check_value("fid_every", self.fid_every, lambda v: v >= 0 and v == int(v), "a whole number >= 0 (0: off)")
        check_value("disc_channels", self.disc_channels, lambda v: v >= 1 and v == int(v), "a whole number, at least 1")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: must be one of {', '.join(PRECISIONS)}")
        return self


# The VAE-GAN: the seed's decoder with StyleGAN's noise, the adaptive adversarial term and L1 beside SSIM. A
# half-width discriminator makes its steps 1.7x faster on a CPU, and the GAN needs ~40 epochs to come
# through its unsettled start; LeCam keeps the discriminator from learning the training galaxies by heart;
# a wide latent (with beta 0.5) pays in SSIM for half the sky's noise. Measurements: docs/decoder-study.md.
VAEGAN = {"decoder_noise": True, "adversarial": 0.5, "l1_weight": 1.0, "disc_augment": True, "disc_channels": 16,
          "lecam": 0.1, "latent": 128, "beta": 0.5, "sky_noise": 0.5}
# One flag for a tested set of options, and the machine it is for; flags given beside it win. The CPU preset
# is a budget of galaxies shown, not of epochs: 175,000 are the embedded set's 40 epochs (~13 min on 2 cores),
# and on a smaller set more epochs fill the same minutes (171 on gz1_sdss_sample's 1,023 training galaxies,
# which a GAN needs: 40 of them left its FID at 3.6-4.7x the floor; docs/results.md). The GPU preset shows
# twice as many: on gz1_sdss_sample the validation FID of the last epoch fell from 78.3 to 72.0 (three seeds),
# and on a GPU its best.pt is the epoch of the lowest validation FID (train.fid_choice_interval).
PRESETS = {"vaegan-cpu": VAEGAN | {"galaxies_shown": 175_000}, "vaegan-gpu": VAEGAN | {"galaxies_shown": 350_000}}
PRESET_MACHINES = {"vaegan-cpu": "2 CPU cores: ~13 min whatever the set's size",
                   "vaegan-gpu": "one GPU: twice the galaxies shown, ~30 s of steps on an H200"}
