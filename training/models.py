"""Small 2-D U-Nets for 128x128 planar scintigrams (ONNX-exportable, CPU-friendly)."""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``levels`` poolings, ``base`` channels at full resolution doubling per level.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the normalised image).
    out_channels : int
        Output logit channels (``len(labels)`` of the contract).
    base : int
        Channels of the first level.
    levels : int
        Number of 2x down-samplings (input sides must be divisible by ``2**levels``).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, base: int = 16, levels: int = 3) -> None:
        super().__init__()
        chans = [base * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0])] +
                                  [_block(chans[i], chans[i + 1]) for i in range(levels)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(levels))])
        self.dec = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(levels))])
        self.head = nn.Conv2d(chans[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, out_channels, H, W]`` for an input ``[N, in_channels, H, W]``."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def build_model(config: dict) -> UNet:
    """U-Net from a config's ``model`` section (``out_channels``, ``base``, ``levels``)."""
    m = config["model"]
    return UNet(1, int(m["out_channels"]), int(m.get("base", 16)), int(m.get("levels", 3)))
