from __future__ import annotations

import torch.nn.functional as F
from monai.networks.nets import SwinUNETR
from torch import nn

from harness.presets import require_known_preset
from harness.registry import MODELS


class PadToMultiple(nn.Module):
    """Pads H and W up to a multiple of ``multiple`` (and at least ``min_size``), runs ``net``, crops back.

    SwinUNETR embeds 2x2 patches and then halves the token grid four times, so its input
    sides must be multiples of 2**5 = 32 (MONAI raises otherwise); the tiny preset's 48 is
    not. And at 32 the deepest map is 1x1, where the decoder's instance norm refuses to
    train, so sides are padded to at least 64 (2x2 there). Reflect padding (48 -> 64, 8
    rows/columns each side) continues the image instead of adding a black frame the network
    would have to learn to ignore; it falls back to zeros only when a side is too short to
    reflect that far. The pad is split evenly so the crop keeps the image centred, and the
    wrapper holds no parameters: ``net.*`` is the whole state dict.
    """

    def __init__(self, net: nn.Module, multiple: int, min_size: int = 0):
        super().__init__()
        self.net = net
        self.multiple = multiple
        self.min_size = min_size

    def _padded(self, side: int) -> int:
        side = max(side, self.min_size)
        return side + (-side) % self.multiple

    def forward(self, x):
        h, w = x.shape[-2:]
        ph, pw = self._padded(h) - h, self._padded(w) - w
        if not (ph or pw):
            return self.net(x)
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        mode = "reflect" if max(pad[:2]) < w and max(pad[2:]) < h else "constant"
        out = self.net(F.pad(x, pad, mode=mode))
        return out[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]


# (feature_size, depths, num_heads, window_size). paper: the SwinUNETR paper's feature size 48
# with MONAI's default depths, heads and 7x7 windows. tiny/smoke: MONAI requires feature_size
# divisible by 12, so 12 is the floor, and at 12 the convolutional decoder (its 16*12-channel
# bottleneck block alone is 0.66M) dominates: tiny has 1.58M parameters and one Adam step of
# batch 16 at 48x48 (padded to 64) took 0.30 s single-threaded (2-core shared CPU), ~3.5 min
# for 665 steps; the most expensive of the five, and not reducible without leaving MONAI's
# network. Depth 2 per stage keeps Swin's regular/shifted window alternation (depth 1 would
# never shift); 4x4 windows tile the 32/16/8/4 token grids of a 64px input without padding
# (7x7 would pad 32 to 35), head dim 12 throughout. paper (25.1M) at batch 48, 256x256: 169 ms
# per Adam step, 24 GiB (fp32, H200). Trained with the tiny recipe (665 steps, seed 0, 222 s on the
# loaded CPU): test Dice 0.80 on synthetic polyps (basic-unet: 0.74).
CONFIGS = {
    "smoke": (12, (2, 2, 2, 2), (1, 2, 4, 8), 4),
    "tiny": (12, (2, 2, 2, 2), (1, 2, 4, 8), 4),
    "paper": (48, (2, 2, 2, 2), (3, 6, 12, 24), 7),
}


@MODELS.register("swin-unetr")
def swin_unetr(preset: str = "tiny"):
    """MONAI SwinUNETR, 2D, input padded to a multiple of 32 (>= 64) and cropped back, 1 logit channel (tiny: 1.6M parameters)."""
    require_known_preset(preset, CONFIGS)
    feature_size, depths, heads, window = CONFIGS[preset]
    # img_size is gone from SwinUNETR's signature in MONAI 1.6: the network takes any
    # multiple of 32, which the wrapper guarantees.
    net = SwinUNETR(in_channels=3, out_channels=1, spatial_dims=2, feature_size=feature_size,
                    depths=depths, num_heads=heads, window_size=window)
    return PadToMultiple(net, 32, min_size=64)
