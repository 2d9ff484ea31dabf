from __future__ import annotations

import os

import torch.nn.functional as F
from torch import nn

from harness.models._sam_vit import VIT_B, SamImageEncoder, SamViTConfig, load_sam_image_encoder
from harness.presets import require_known_preset
from harness.registry import MODELS

# As in the StealthMark code: SAM's image encoder, a 1x1 convolution to one logit channel,
# and a bilinear upsampling of the coarse (H/patch, W/patch) map back to the input size.
#
# paper: the official ViT-B dims *and* parameter shapes (img_size 1024, so pos_embed is
#   1x64x64x768 and the global blocks' rel_pos tables 127x64), so sam_vit_b_01ec64.pth loads
#   as is. It runs on the paper's 256x256 images: the encoder resizes pos_embed (bicubic,
#   64x64 -> 16x16) and the relative tables (linear) to the actual token grid at forward time,
#   so no weights are rewritten at load time. The 16x16 grid is zero-padded to 28x28 for
#   14x14 windows, exactly what SAM does for any grid that is not a window multiple.
# tiny: the same architecture narrowed to train on a CPU with the tiny recipe (Adam at 3e-3, 665
#   steps, 300 images of 48px), measured by test Dice on 100 synthetic polyps (seeds 0 / 1):
#     patch 8 (6x6 tokens), embed 96, 3 heads:  0.18 / 0.14 (0.46 / 0.40 at lr 5e-4)
#     patch 4 (12x12 tokens), embed 64, 2 heads: 0.46 / 0.57 (0.67 at lr 1e-3)
#   (basic-unet: 0.74). A pure ViT from scratch on 300 images underfits, and the wider one is
#   unstable at 3e-3; the 12x12 grid with a narrower embedding learns, so tiny uses patch 4:
#   its logit map is 1/4 of the input side (the paper's is 1/16) and patch 16 would leave 3x3
#   tokens. Window 4 tiles the 12x12 grid into 9 local windows; blocks 1 and 3 attend globally,
#   the paper model's alternation (three windowed blocks per global one) scaled to depth 4.
#   SAM remains the weakest learner at tiny: a per-model learning rate would help it most.
# smoke: the same at 32px (patch 8, 4x4 tokens), only to exercise code paths.
# Measured, one thread, batch 16 at 48x48, forward + backward + Adam step: tiny (0.26M) 0.08 s
# on the shared 2-core CPU; paper (89.7M encoder) at batch 48, 256x256: 113 ms, 16.5 GiB (fp32, H200).
CONFIGS = {
    "smoke": SamViTConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, out_chans=32,
                          window_size=2, global_attn_indexes=(1,)),
    "tiny": SamViTConfig(img_size=48, patch_size=4, embed_dim=64, depth=4, num_heads=2, out_chans=64,
                         window_size=4, global_attn_indexes=(1, 3)),
    "paper": VIT_B,
}


class SamSegmentation(nn.Module):
    """SAM image encoder + 1x1 conv head; logits bilinearly upsampled to the input size."""

    def __init__(self, config: SamViTConfig):
        super().__init__()
        # Named like the official checkpoint's prefix, so net.image_encoder.* == image_encoder.*.
        self.image_encoder = SamImageEncoder(config)
        self.head = nn.Conv2d(config.out_chans, 1, kernel_size=1)

    def forward(self, x):
        logits = self.head(self.image_encoder(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@MODELS.register("sam")
def sam(preset: str = "tiny", checkpoint: str | os.PathLike | None = None):
    """SAM ViT image encoder (paper: ViT-B) + 1x1 conv head, upsampled to the input (tiny: 0.26M parameters)."""
    require_known_preset(preset, CONFIGS)
    net = SamSegmentation(CONFIGS[preset])
    if checkpoint is not None:
        # Only the image_encoder.* entries are used (official sam_vit_b_01ec64.pth at paper);
        # the head stays randomly initialised. Read with weights_only=True; nothing is downloaded.
        load_sam_image_encoder(net, checkpoint)
    return net
