"""GoodGAN: a small GAN that learns a 2-D mixture of Gaussians, with two optimizers (seed-era style).

``training_step(batch, batch_idx, optimizer_idx)`` is called once per optimizer for every
batch: ``optimizer_idx == 0`` trains the generator, ``1`` the discriminator. The trainer
freezes the other network's parameters during each call (``toggle_optimizer``). At the end
the script prints, for every mode of the mixture, how many generated points fell nearest to
it and how far their mean is from the real samples' mean::

    python examples/gan.py                 # about 20 s on one CPU core
    python examples/gan.py --max_epochs 10 --lr 0.001 --latent_dim 4
"""
from __future__ import annotations

import math
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any, Dict, List

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

# Runnable from a plain checkout too (``python examples/gan.py`` without installing).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import LightningModule, Trainer, seed_everything  # noqa: E402


def mode_centres(n_modes: int, radius: float = 2.0) -> torch.Tensor:
    """``n_modes`` points evenly spaced on a circle: the means of the mixture's components."""
    angles = torch.arange(n_modes, dtype=torch.float32) * (2 * math.pi / n_modes)
    return radius * torch.stack([angles.cos(), angles.sin()], dim=1)


def sample_mixture(n: int, centres: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` points from the equal-weight Gaussian mixture with the given centres."""
    modes = torch.randint(len(centres), (n,), generator=generator)
    return centres[modes] + std * torch.randn(n, 2, generator=generator)


class GoodGAN(LightningModule):
    """Generator and discriminator MLPs; the seed's ``GoodGAN`` for the two-model example.

    Extra keyword arguments (e.g. every parsed command-line flag, ``GoodGAN(**vars(args))``)
    are ignored.
    """

    def __init__(self, latent_dim: int = 8, hidden_dim: int = 128, lr: float = 1e-3, b1: float = 0.5,
                 b2: float = 0.999, batch_size: int = 256, n_modes: int = 8, mode_std: float = 0.05,
                 n_samples: int = 8192, seed: int = 0, **kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters("latent_dim", "hidden_dim", "lr", "b1", "b2", "batch_size", "n_modes",
                                  "mode_std", "n_samples", "seed")
        torch.manual_seed(seed)
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 2))
        self.discriminator = nn.Sequential(
            nn.Linear(2, hidden_dim), nn.LeakyReLU(0.2), nn.Linear(hidden_dim, hidden_dim), nn.LeakyReLU(0.2),
            nn.Linear(hidden_dim, 1))
        self.centres = mode_centres(n_modes)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """Add this model's flags to ``parent_parser`` (the seed-era pattern) and return the new parser."""
        parser = ArgumentParser(parents=[parent_parser], add_help=False)
        parser.add_argument("--latent_dim", type=int, default=8, help="size of the generator's noise input")
        parser.add_argument("--hidden_dim", type=int, default=128, help="width of both networks")
        parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of both networks")
        parser.add_argument("--b1", type=float, default=0.5, help="Adam beta1")
        parser.add_argument("--b2", type=float, default=0.999, help="Adam beta2")
        parser.add_argument("--batch_size", type=int, default=256)
        parser.add_argument("--n_modes", type=int, default=8, help="Gaussians in the mixture (on a circle)")
        parser.add_argument("--seed", type=int, default=0)
        return parser

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generated 2-D points for noise ``z``."""
        return self.generator(z)

    def training_step(self, batch: Any, batch_idx: int, optimizer_idx: int) -> Dict[str, Any]:
        """``optimizer_idx`` 0: generator (non-saturating loss); 1: discriminator."""
        (real,) = batch
        z = torch.randn(real.shape[0], self.hparams.latent_dim, device=real.device)
        fake = self(z)
        ones = torch.ones(real.shape[0], 1, device=real.device)
        if optimizer_idx == 0:
            g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
            return {"loss": g_loss, "log": {"g_loss": g_loss}}
        real_loss = F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
        fake_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), torch.zeros_like(ones))
        d_loss = (real_loss + fake_loss) / 2
        return {"loss": d_loss, "log": {"d_loss": d_loss}}

    def configure_optimizers(self) -> Any:
        """One Adam per network: index 0 generator, 1 discriminator."""
        betas = (self.hparams.b1, self.hparams.b2)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.hparams.lr, betas=betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.lr, betas=betas)
        return [opt_g, opt_d], []

    def train_dataloader(self) -> DataLoader:
        """Real samples of the mixture (drawn once, reshuffled every epoch)."""
        g = torch.Generator().manual_seed(self.hparams.seed)
        data = sample_mixture(self.hparams.n_samples, self.centres, self.hparams.mode_std, g)
        return DataLoader(TensorDataset(data), batch_size=self.hparams.batch_size, shuffle=True, drop_last=True)

    @torch.no_grad()
    def mode_report(self, n: int = 4000) -> List[Dict[str, float]]:
        """Per mode: the share of generated points nearest to it and ``|mean(generated) - mean(real)|``."""
        g = torch.Generator().manual_seed(self.hparams.seed + 1)
        real = sample_mixture(n, self.centres, self.hparams.mode_std, g)
        fake = self(torch.randn(n, self.hparams.latent_dim, generator=g).to(self.device)).cpu()
        real_mode = torch.cdist(real, self.centres).argmin(dim=1)
        fake_mode = torch.cdist(fake, self.centres).argmin(dim=1)
        report = []
        for mode in range(len(self.centres)):
            mine = fake[fake_mode == mode]
            distance = float((mine.mean(0) - real[real_mode == mode].mean(0)).norm()) if len(mine) else math.inf
            report.append({"mode": mode, "share": len(mine) / n, "distance": distance})
        return report


def print_report(model: GoodGAN) -> List[Dict[str, float]]:
    """Print the per-mode table and return it."""
    report = model.mode_report()
    print(f"{'mode':>4} {'centre':>16} {'generated share':>16} {'|mean gen - mean real|':>23}")
    for row, centre in zip(report, model.centres.tolist()):
        where = f"({centre[0]:+.2f}, {centre[1]:+.2f})"
        print(f"{row['mode']:>4} {where:>16} {row['share']:>16.3f} {row['distance']:>23.3f}")
    covered = sum(row["share"] > 0.5 / len(report) for row in report)
    print(f"modes covered (> half their fair share): {covered}/{len(report)}")
    return report


def _mean_distance(report: List[Dict[str, float]]) -> float:
    finite = [row["distance"] for row in report if math.isfinite(row["distance"])]
    return sum(finite) / len(finite) if finite else math.inf


if __name__ == "__main__":
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser = Trainer.add_argparse_args(parser)
    parser = GoodGAN.add_model_specific_args(parser)
    parser.set_defaults(max_epochs=30, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        enable_progress_bar=False)
    args = parser.parse_args()
    seed_everything(args.seed)
    gan = GoodGAN(**vars(args))
    before = gan.mode_report()
    Trainer.from_argparse_args(args).fit(gan)
    after = print_report(gan)
    print("mean |mean gen - mean real| over modes: before training "
          f"{_mean_distance(before):.3f}, after {_mean_distance(after):.3f}")
