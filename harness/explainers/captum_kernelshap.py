"""Kernel SHAP through Captum (``captum.attr.KernelShap``)."""

from __future__ import annotations

import torch
from captum.attr import KernelShap

from harness.explainer import Explainer, perturbed_images
from harness.explainers._captum import image_tensor
from harness.registry import EXPLAINERS


def _coalition_itself(coalition: torch.Tensor, original_inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    """Captum's "interpretable sample -> model input" step, left as the sample (1, P) itself."""
    return coalition


@EXPLAINERS.register("captum-kernelshap")
class CaptumKernelShapExplainer(Explainer):
    """Kernel SHAP (Captum): Shapley-kernel sampled coalitions of kept patches, linear fit.

    Off patches are black (``baselines=0``). Captum draws the coalition size
    from the Shapley kernel and fits an unweighted linear regression, with the
    all-on and all-off images (its first two samples) weighted 1e6 so the fit
    meets them. Captum would build each perturbed image on its own and
    concatenate them; here it hands over the batch of on/off vectors and the
    images are built a batch at a time (same samples, same images). Seeded
    through a forked torch RNG (the caller's stream is left alone).
    """

    name = "captum-kernelshap"

    def _attribute(self, forward, image, feature_mask, n_features, n_samples, batch_size, seed):
        def coalition_forward(coalitions: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(forward(perturbed_images(image, feature_mask, coalitions.numpy())))

        shap = KernelShap(coalition_forward)
        # KernelShap's similarity reads only the coalition, never the model input, so this is safe.
        shap.from_interp_rep_transform = _coalition_itself
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            coefs = shap.attribute(
                image_tensor(image),
                baselines=0.0,
                feature_mask=torch.from_numpy(feature_mask)[None, None],
                n_samples=n_samples,
                perturbations_per_eval=batch_size,
                return_input_shape=False,
            )
        return coefs.detach().double().flatten().numpy()
