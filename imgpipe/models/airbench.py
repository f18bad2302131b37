"""The default network for small RGB images: an airbench94-style CNN, sized for CPUs.

What is taken from where (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
2024, github.com/KellerJordan/cifar10-airbench, ``airbench94.py``):

- a first 2x2 convolution initialised as a patch-whitening filter bank from training images
  (eigenvectors of the 2x2 patch covariance, positive and negative copies) and kept frozen; only
  its bias trains, for the first part of the run (the loop turns it off, see ``whiten_bias``);
- three conv groups (conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU), widths ``w, 4w, 4w``
  (airbench94: ``w = 64``), convs initialised with an identity (Dirac) part;
- BatchNorm with momentum 0.6 (PyTorch's ``momentum = 0.4``), eps 1e-12 and frozen scale;
- a bias-free linear head scaled by 1/9.

The recipe around it (label smoothing 0.2, Nesterov SGD with a triangular schedule and a 64x
learning rate on BN biases, lookahead-style weight averaging, on-the-batch flip and 2-pixel
translation, flip test-time augmentation) lives in ``imgpipe.train`` and in ``params.yaml``.
Changes here: a global max-pool instead of the fixed 3x3 pool so any image size >= 9 px works, and
any channel count (greyscale gets a 2 * 1 * 4 = 8-filter whitening layer).
"""

from __future__ import annotations

import torch
from torch import nn

# Eigenvalues below this share of the largest are float32 round-off, not directions of the data.
NULL_DIRECTION = 1e-7
# airbench94 uses eps 1e-12. Under bf16 autocast a channel whose values agree to bf16's ~3
# significant digits (small batches, late pooled groups) has a variance of ~0: with eps 1e-12 BN's
# backward multiplied its gradient by up to 1e6 and a tiny-data run went NaN in 3 steps. 1e-5
# (PyTorch's default) bounds that at ~300x and is negligible beside the variance of a live channel.
BN_EPS = 1e-5


class BatchNorm(nn.BatchNorm2d):
    """BN with airbench's momentum convention (0.6 = keep 60% of the old running stats)."""

    def __init__(self, num_features: int, momentum: float = 0.6):
        super().__init__(num_features, eps=BN_EPS, momentum=1 - momentum)
        self.weight.requires_grad = False  # scale frozen at 1; the bias trains (with a larger lr)


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding="same", bias: bool = False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])  # an implicit residual path


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout)
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class AirNet(nn.Module):
    """airbench94's network with a width knob (``width`` = first group's channels)."""

    min_size = 9

    def __init__(self, in_channels: int, num_classes: int, size: tuple[int, int] = (32, 32), width: int = 0):
        super().__init__()
        if min(size) < self.min_size:
            raise ValueError(f"airbench needs images of at least {self.min_size}x{self.min_size} pixels, "
                             f"got {size[0]}x{size[1]}")
        width = width or 32
        whiten_width = 2 * in_channels * 2 * 2
        self.whiten = nn.Conv2d(in_channels, whiten_width, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        nn.init.zeros_(self.whiten.bias)
        self.body = nn.Sequential(
            nn.GELU(),
            ConvGroup(whiten_width, width),
            ConvGroup(width, 4 * width),
            ConvGroup(4 * width, 4 * width),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes, bias=False)
        self.scale = 1 / 9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.whiten(x))) * self.scale

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the frozen first conv to whiten the 2x2 patches of ``x`` (normalised NCHW floats)."""
        c, (h, w) = x.shape[1], self.whiten.weight.shape[2:]
        patches = x.float().unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c * h * w)
        cov = (patches.T @ patches) / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov.double(), UPLO="U")
        eigenvalues, eigenvectors = eigenvalues.float(), eigenvectors.float()
        eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
        eigenvectors = eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)
        # Directions the images do not span (greyscale digits stored as RGB: 8 of 12 eigenvalues are
        # ~1e-16 of the largest) carry only round-off. Whitened, they became channels of noise (or
        # constants) that the dirac-initialised convs pass through every group; BatchNorm (eps 1e-12)
        # scaled that noise to unit variance and its backward multiplied gradients by ~1e6 per
        # layer (1e30 at the whitening bias). fp32 survived by luck; under bf16 autocast the loss was
        # NaN by the third step. Those filter slots repeat the real directions instead, so every
        # channel carries signal. (CIFAR-10's smallest eigenvalue is ~1e-5 of the largest: unchanged.)
        kept = int((eigenvalues.view(-1) > NULL_DIRECTION * eigenvalues.max()).sum().clamp_min(1))
        scaled[kept:] = scaled[torch.arange(kept, len(scaled)) % kept]
        self.whiten.weight.copy_(torch.cat((scaled, -scaled)))
