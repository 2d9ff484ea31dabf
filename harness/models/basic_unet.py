from __future__ import annotations

from monai.networks.nets import BasicUNet

from harness.presets import require_known_preset
from harness.registry import MODELS

# tiny: the width at which a StealthMark background floor was learned on CPU in
# ~400 Adam steps at 48x48 (README, "Presets"); a narrower UNet trained as
# briefly did not learn it. smoke only checks that code paths run.
FEATURES = {"smoke": (8, 8, 16, 32, 64, 8), "tiny": (16, 16, 32, 64, 128, 16), "paper": (32, 32, 64, 128, 256, 32)}


@MODELS.register("basic-unet")
def basic_unet(preset: str = "tiny"):
    """MONAI BasicUNet, 2D, batch norm, 3 input channels, 1 logit channel (tiny: 0.5M parameters)."""
    require_known_preset(preset, FEATURES)
    # Batch norm, not MONAI's default affine instance norm: torch-pruning's dependency
    # graph cannot trace the latter, and structured pruning is a core attack.
    return BasicUNet(spatial_dims=2, in_channels=3, out_channels=1, features=FEATURES[preset], norm="batch")
