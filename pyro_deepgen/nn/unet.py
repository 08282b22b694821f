"""A small U-Net for images, conditioned on a diffusion time step."""
import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .time_mlp import sinusoidal_embedding


def _norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(num_groups, channels), channels)


class _ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, time_dim: int, num_groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(in_ch, num_groups), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2, self.conv2 = _norm(out_ch, num_groups), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class UNet(nn.Module):
    r"""A small U-Net ``net(x, t) -> (mean_param, var_param)`` for images ``(N, C, H, W)``.

    Residual blocks (GroupNorm, SiLU, 3x3 convolutions, plus a projection of the sinusoidal time
    embedding) at each resolution; strided convolutions go down, nearest-neighbour
    interpolation to the skip connection's size goes up, so odd sizes such as 28 -> 14 -> 7
    work. The last convolution starts at zero and has ``2 * out_channels`` channels, split in
    two: the plug-in signature of :class:`~pyro_deepgen.models.GaussianDiffusion`. Sized for
    8x8 digits and 28x28 MNIST on a CPU; it is a simplified version of Ho et al.'s network
    (no attention, no dropout).

    :param int in_channels: image channels, default 1.
    :param int base_channels: channels at full resolution, default 32.
    :param channel_mults: channel multiplier per resolution; its length is the number of
        resolutions (default ``(1, 2)``: one downsampling).
    :param int num_groups: GroupNorm groups (reduced to a divisor of the channels).
    :param int out_channels: channels of each output, default ``in_channels``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_groups: int = 8,
        out_channels: Optional[int] = None,
    ) -> None:
        super().__init__()
        if in_channels < 1 or base_channels < 1 or not channel_mults:
            raise ValueError("in_channels, base_channels must be positive, channel_mults non-empty")
        self.out_channels = in_channels if out_channels is None else int(out_channels)
        self.base_channels = int(base_channels)
        time_dim = 4 * self.base_channels
        self.time_mlp = nn.Sequential(
            nn.Linear(self.base_channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        chans = [self.base_channels * int(m) for m in channel_mults]
        self.conv_in = nn.Conv2d(in_channels, self.base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        prev = self.base_channels
        for c in chans:
            self.down.append(_ResBlock(prev, c, time_dim, num_groups))
            prev = c
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in chans[:-1])
        self.mid = _ResBlock(chans[-1], chans[-1], time_dim, num_groups)
        self.up = nn.ModuleList()
        for i, c in enumerate(chans):
            below = chans[i + 1] if i + 1 < len(chans) else chans[-1]
            self.up.append(_ResBlock(below + c, c, time_dim, num_groups))
        self.norm_out = _norm(chans[0], num_groups)
        self.conv_out = nn.Conv2d(chans[0], 2 * self.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"UNet expects images (N, C, H, W), got shape {tuple(x.shape)}")
        emb = self.time_mlp(sinusoidal_embedding(t, self.base_channels).to(x.dtype))
        h = self.conv_in(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.up))):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = self.up[i](torch.cat([h, skip], dim=1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[:, : self.out_channels], out[:, self.out_channels :]
