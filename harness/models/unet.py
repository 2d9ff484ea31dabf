from __future__ import annotations

from monai.networks.nets import UNet

from harness.presets import require_known_preset
from harness.registry import MODELS

# A second architecture, so a distillation attack can train a student that shares
# nothing with the teacher's design. Widths were picked to match basic-unet's
# parameter count at each preset (counted: smoke 0.10M vs 0.12M, tiny 0.51M vs
# 0.50M, paper 2.06M vs 1.98M), so a utility gap is not just a capacity gap.
# paper adds a fifth level: at 256x256 four halvings still leave a 16x16 bottleneck.
CONFIGS = {
    "smoke": ((8, 16, 32, 64), (2, 2, 2)),
    "tiny": ((18, 36, 72, 144), (2, 2, 2)),
    "paper": ((18, 36, 72, 144, 288), (2, 2, 2, 2)),
}


@MODELS.register("unet")
def unet(preset: str = "tiny"):
    """MONAI residual UNet, 2D, instance norm, 3 input channels, 1 logit channel (tiny: 0.5M parameters)."""
    require_known_preset(preset, CONFIGS)
    channels, strides = CONFIGS[preset]
    # MONAI's default (non-affine) instance norm, not basic-unet's batch norm: trained on the owner's
    # data with the tiny recipe, it reached Dice 0.80 and the batch-norm variant 0.50. Batch norm would
    # buy nothing for structured pruning here: torch-pruning cannot trace this UNet's skip
    # concatenations with either norm.
    return UNet(spatial_dims=2, in_channels=3, out_channels=1, channels=channels, strides=strides,
                num_res_units=2)
