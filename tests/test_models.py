"""The registered segmentation networks, and our SAM ViT image encoder against the official layout."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.errors import HarnessError
from harness.models._sam_vit import (VIT_B, Attention, Block, SamImageEncoder, SamViTConfig,
                                     load_sam_image_encoder, window_partition, window_unpartition)
from harness.models.sam import CONFIGS as SAM_CONFIGS
from harness.models.swin_unetr import PadToMultiple
from harness.registry import MODELS

PAPER_MODELS = ["attention-unet", "segresnet", "swin-unetr", "unetr", "sam"]

# Tiny parameter counts, counted when the presets were chosen (see each plugin's comments).
TINY_PARAMS = {
    "attention-unet": (0.4e6, 0.6e6),  # 0.50M
    "segresnet": (0.3e6, 0.5e6),  # 0.40M
    "swin-unetr": (1.4e6, 1.7e6),  # 1.58M: MONAI's feature_size floor of 12
    "unetr": (0.6e6, 0.8e6),  # 0.70M
    "sam": (0.2e6, 0.35e6),  # 0.26M: a wider encoder trained worse (harness/models/sam.py)
}


# Parameters that exist but never enter the forward pass, so get no gradient by design:
# MONAI's TransformerBlock (UNETR's ViT) always builds a ``norm_cross_attn`` LayerNorm, used
# only when with_cross_attention=True, which UNETR never sets.
UNUSED = {"unetr": ".norm_cross_attn."}


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_the_papers_five_models_are_registered():
    assert set(PAPER_MODELS) <= set(MODELS.names())


# -- every parameter learns --------------------------------------------------------------------
#
# One training step's backward pass must reach every parameter, except biases a normalisation cancels:
# their gradient is zero in exact arithmetic, and in floating point a rounding residue whose size, even
# whether it is exactly 0, depends on the summation order and so on thread scheduling. They are found from
# the network's structure (cancelled_biases), never listed by name; every other parameter needs a clearly
# non-zero gradient, never merely `!= 0`.
#
# Both checks run on a float64 copy: the graph, hence which parameters learn, is the float32 one, while
# rounding residues drop to ~1e-16, about ten orders of magnitude below any live gradient, so the cut-offs
# below are far from both sides whatever the summation order.

# A gradient is live when its norm exceeds LIVE_GRADIENT x the largest parameter-gradient norm of the same
# pass. Measured over every registered model at both presets (seed 0, float64): cancelled biases <= 5.3e-16
# of the largest, live gradients >= 2.4e-5 of it (attention-unet's psi.1.weight; Swin-UNETR's deepest
# relative-position tables are next). In float32 the residues reach 3.1e-7: a cut-off there would sit within
# a factor of 10 of one side or the other.
LIVE_GRADIENT = 1e-9
# The invariance probe moves biases by SHIFT x a standard normal vector each (biases are ~0.1, activations
# ~1: a bias that matters, moved this far, changes the output by >= 3e-2 of its largest value, measured over
# the registered models' biases), and counts a bias as cancelled when the output moves by at most INVARIANT
# of its largest value; cancelled biases move it by <= 5e-13 in float64 (measured, same models).
SHIFT = 10.0
INVARIANT = 1e-9


def per_channel_normalisation(module: torch.nn.Module) -> bool:
    """Normalises each channel by statistics of that channel alone (batch norm in training mode, instance
    norm, group norm with one channel per group), so a per-channel constant added to its input cancels."""
    return isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)) \
        or (isinstance(module, torch.nn.GroupNorm) and module.num_groups == module.num_channels)


def cancelled_biases(net: torch.nn.Module, x: torch.Tensor) -> tuple[set[str], int]:
    """Biases of a float64 ``net`` in training mode whose gradient is zero in exact arithmetic, found from
    its structure, and the number of per-channel normalisation calls that could cancel one.

    A bias b added per channel right before a per-channel normalisation cancels: norm(z + b) = norm(z), so
    dL/db = 0. Two steps: (1) forward hooks find the modules whose output is, as computed, the input of such
    a normalisation (the same autograd node); (2) since that output may also feed something else (a skip
    connection), the candidate biases are moved by large random vectors on the same input: only biases that
    leave the output unchanged to float64 rounding are returned. A parameter cut off some other way
    (detached, multiplied by zero, behind a dead activation) is not a bias whose output only a normalisation
    reads, so it is never returned. ``net``'s parameters are restored exactly.
    """
    assert all(p.dtype == torch.float64 for p in net.parameters()) and x.dtype == torch.float64 and net.training
    produced: dict[torch.nn.Module, list] = {}
    normalised = []

    def record_output(module, args, output):  # hooks return None: they must not replace anything
        produced.setdefault(module, []).append(getattr(output, "grad_fn", None))

    def record_input(module, args):
        normalised.append(getattr(args[0], "grad_fn", None))

    hooks = [m.register_forward_pre_hook(record_input) for m in net.modules() if per_channel_normalisation(m)]
    hooks += [m.register_forward_hook(record_output) for m in net.modules()
              if isinstance(getattr(m, "bias", None), torch.nn.Parameter) and m.bias.requires_grad]
    try:
        with torch.random.fork_rng(devices=[]):
            net(x)
    finally:
        for hook in hooks:
            hook.remove()
    feeds_norm = {id(m.bias) for m, nodes in produced.items()
                  if all(node is not None and any(node is n for n in normalised) for node in nodes)}
    params = dict(net.named_parameters())
    candidates = [name for name, p in params.items() if id(p) in feeds_norm]
    if not candidates:
        return set(), len(normalised)
    generator = torch.Generator().manual_seed(1)

    def output():
        torch.manual_seed(2)  # the same dropout draws, if any, in every pass
        return net(x)

    def invariant_to(names) -> bool:
        saved = {n: params[n].clone() for n in names}
        for n in names:
            params[n].add_(SHIFT * torch.randn(params[n].shape, generator=generator, dtype=torch.float64))
        moved = (output() - reference).abs().max()
        for n in names:
            params[n].copy_(saved[n])
        return bool(moved <= INVARIANT * reference.abs().max())

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        reference = output()
        # All candidates at once first (one pass): independent random moves of biases that do matter
        # cancel each other's effect with probability zero, so an unchanged output clears them all.
        # Otherwise each is judged alone.
        if invariant_to(candidates):
            return set(candidates), len(normalised)
        return {n for n in candidates if invariant_to([n])}, len(normalised)


def parameters_that_do_not_learn(net: torch.nn.Module, x: torch.Tensor, unused: str | None = None):
    """One training step's backward pass on a float64 copy of ``net``: (names without a live gradient, the
    cancelled biases that were excused, the number of per-channel normalisation calls).

    ``unused`` marks parameters that never enter the forward pass (see UNUSED): they must have no gradient
    at all, not a small one.
    """
    net, x = copy.deepcopy(net).double().train(), x.double()
    cancelled, norms = cancelled_biases(net, x)
    net.zero_grad(set_to_none=True)
    net(x).square().mean().backward()
    grads = {n: (None if p.grad is None else p.grad.norm().item()) for n, p in net.named_parameters()
             if p.requires_grad}
    largest = max(g for g in grads.values() if g is not None)
    assert largest > 0
    dead = []
    for name, norm in grads.items():
        if unused is not None and unused in name:
            assert norm is None, f"{name} is listed as unused but has a gradient"
        elif name in cancelled:
            # autograd agrees: what it returns is rounding residue, orders of magnitude below any live gradient
            assert norm is None or norm <= LIVE_GRADIENT * largest, f"{name} is cancelled but its gradient is {norm}"
        elif norm is None or norm <= LIVE_GRADIENT * largest:
            dead.append(name)
    return dead, cancelled, norms


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("preset,size", [("smoke", 32), ("tiny", 48)])
def test_logits_match_the_input_size_and_every_parameter_learns(name, preset, size):
    torch.manual_seed(0)
    net = MODELS.get(name)(preset).train()
    x = torch.rand(2, 3, size, size)
    assert net(x).shape == (2, 1, size, size)
    dead, cancelled, norms = parameters_that_do_not_learn(net, x, UNUSED.get(name))
    assert not dead, f"{name} parameters without a live gradient: {dead[:5]}"
    # The excused set is computed, so it must stay what it claims to be: biases, at most one per
    # per-channel normalisation call, never the bulk of the network.
    params = dict(net.named_parameters())
    assert all(n.rsplit(".", 1)[-1] == "bias" and params[n].ndim == 1 for n in cancelled), sorted(cancelled)
    assert len(cancelled) <= norms and len(cancelled) < len(params) / 2


class _ToyNet(torch.nn.Module):
    """One bias a batch norm cancels, one it does not (a skip bypasses the norm), one dead branch."""

    def __init__(self):
        super().__init__()
        self.cancelled = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm_a = torch.nn.BatchNorm2d(4)
        self.skipped = torch.nn.Conv2d(4, 4, 1)
        self.norm_b = torch.nn.BatchNorm2d(4)
        self.dead = torch.nn.Conv2d(4, 1, 1)
        self.head = torch.nn.Conv2d(4, 1, 1)

    def forward(self, x):
        h = self.norm_a(self.cancelled(x)).relu()
        s = self.skipped(h)
        h = self.norm_b(s) + s
        return self.head(h) + 0.0 * self.dead(h)


def test_the_gradient_check_excuses_only_biases_a_normalisation_cancels():
    torch.manual_seed(0)
    net = _ToyNet().train()
    dead, cancelled, norms = parameters_that_do_not_learn(net, torch.rand(2, 3, 8, 8))
    assert cancelled == {"cancelled.bias"} and norms == 2
    # skipped.bias feeds a batch norm too, but also the skip: it learns, and is not excused.
    assert dead == ["dead.weight", "dead.bias"]


@pytest.mark.parametrize("name", sorted(TINY_PARAMS))
def test_tiny_parameter_count(name):
    low, high = TINY_PARAMS[name]
    assert low <= count(MODELS.get(name)("tiny")) <= high


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_unknown_preset_is_a_one_line_error(name):
    with pytest.raises(HarnessError, match="did you mean 'tiny'"):
        MODELS.get(name)("tinny")


def test_unetr_names_its_fixed_input_size():
    net = MODELS.get("unetr")("tiny")
    with pytest.raises(HarnessError, match="48x48.*got 32x32"):
        net(torch.rand(1, 3, 32, 32))


def test_pad_wrapper_crops_back_exactly():
    identity = PadToMultiple(torch.nn.Identity(), 32, min_size=64)
    for size in (32, 48, 64, 70):
        x = torch.rand(1, 3, size, size + 2)
        assert torch.equal(identity(x), x)


# -- SAM ----------------------------------------------------------------------------------------

def official_layout(c: int, depth: int, heads: int, window: int, global_blocks, grid: int, patch: int,
                    out: int) -> dict[str, tuple[int, ...]]:
    """Segment Anything's image_encoder.* keys and shapes, written out from the published layout."""
    hd = c // heads
    shapes = {"patch_embed.proj.weight": (c, 3, patch, patch), "patch_embed.proj.bias": (c,),
              "pos_embed": (1, grid, grid, c)}
    for i in range(depth):
        rel = 2 * (grid if i in global_blocks else window) - 1
        p = f"blocks.{i}."
        shapes.update({p + "norm1.weight": (c,), p + "norm1.bias": (c,),
                       p + "attn.qkv.weight": (3 * c, c), p + "attn.qkv.bias": (3 * c,),
                       p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,),
                       p + "attn.rel_pos_h": (rel, hd), p + "attn.rel_pos_w": (rel, hd),
                       p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                       p + "mlp.lin1.weight": (4 * c, c), p + "mlp.lin1.bias": (4 * c,),
                       p + "mlp.lin2.weight": (c, 4 * c), p + "mlp.lin2.bias": (c,)})
    shapes.update({"neck.0.weight": (out, c, 1, 1), "neck.1.weight": (out,), "neck.1.bias": (out,),
                   "neck.2.weight": (out, out, 3, 3), "neck.3.weight": (out,), "neck.3.bias": (out,)})
    return shapes


def test_paper_sam_encoder_has_the_official_vit_b_layout():
    with torch.device("meta"):  # 90M parameters, none allocated
        net = MODELS.get("sam")("paper")
    got = {k: tuple(v.shape) for k, v in net.image_encoder.state_dict().items()}
    expected = official_layout(768, 12, 12, 14, (2, 5, 8, 11), 64, 16, 256)
    assert got == expected
    # The literal facts, so a typo in official_layout cannot hide one here.
    assert got["blocks.0.attn.rel_pos_h"] == (27, 64) and got["blocks.2.attn.rel_pos_w"] == (127, 64)
    assert got["blocks.11.attn.qkv.weight"] == (2304, 768) and got["blocks.5.mlp.lin1.weight"] == (3072, 768)
    assert got["pos_embed"] == (1, 64, 64, 768) and got["neck.2.weight"] == (256, 256, 3, 3)
    assert set(net.state_dict()) == {f"image_encoder.{k}" for k in expected} | {"head.weight", "head.bias"}
    assert 89e6 < count(net.image_encoder) < 90e6  # ViT-B's image encoder: 89.7M


def tiny_layout() -> dict[str, tuple[int, ...]]:
    cfg = SAM_CONFIGS["tiny"]
    return official_layout(cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.window_size, cfg.global_attn_indexes,
                           cfg.grid, cfg.patch_size, cfg.out_chans)


def official_style_checkpoint(path, drop=None, reshape=None):
    """A state dict laid out like sam_vit_*.pth for the tiny config: image encoder, prompt encoder, mask decoder."""
    gen = torch.Generator().manual_seed(1)
    state = {f"image_encoder.{k}": torch.randn(s, generator=gen) for k, s in tiny_layout().items()}
    state["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    state["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    state["mask_decoder.output_upscaling.0.weight"] = torch.randn(256, 64, 2, 2)
    if drop:
        del state[drop]
    if reshape:
        state[reshape] = torch.randn(3, 3)
    torch.save(state, path)
    return state


def test_sam_loads_the_image_encoder_entries_of_an_official_style_checkpoint(tmp_path):
    path = tmp_path / "sam_tiny.pth"
    state = official_style_checkpoint(path)
    net = MODELS.get("sam")("tiny")
    assert set(net.image_encoder.state_dict()) == set(tiny_layout())
    load_sam_image_encoder(net, path)
    for key, value in net.image_encoder.state_dict().items():
        assert torch.equal(value, state[f"image_encoder.{key}"]), key
    # The factory's checkpoint= does the same; the head stays freshly initialised.
    torch.manual_seed(0)
    loaded = MODELS.get("sam")("tiny", checkpoint=str(path))
    assert torch.equal(loaded.image_encoder.blocks[3].attn.rel_pos_w, state["image_encoder.blocks.3.attn.rel_pos_w"])
    assert loaded(torch.rand(1, 3, 48, 48)).shape == (1, 1, 48, 48)


@pytest.mark.parametrize("drop,reshape,match", [
    ("image_encoder.blocks.2.attn.rel_pos_h", None, r"lacks image_encoder\.blocks\.2\.attn\.rel_pos_h"),
    (None, "image_encoder.neck.0.weight", r"image_encoder\.neck\.0\.weight has shape \(3, 3\)"),
    (None, "image_encoder.blocks.9.attn.qkv.weight", r"unexpected image_encoder\.blocks\.9\.attn\.qkv\.weight"),
])
def test_a_mismatched_checkpoint_is_a_one_line_error_naming_the_key(tmp_path, drop, reshape, match):
    path = tmp_path / "bad.pth"
    official_style_checkpoint(path, drop=drop, reshape=reshape)
    with pytest.raises(HarnessError, match=match) as info:
        load_sam_image_encoder(MODELS.get("sam")("tiny"), path)
    assert "\n" not in str(info.value)


def test_a_non_checkpoint_file_is_a_one_line_error_naming_the_file(tmp_path):
    junk = tmp_path / "notes.pth"
    junk.write_text("not a checkpoint\n")
    for source, match in ((junk, "notes.pth"), (tmp_path / "missing.pth", "missing.pth")):
        with pytest.raises(HarnessError, match=match) as info:
            MODELS.get("sam")("tiny", checkpoint=source)
        assert "\n" not in str(info.value)
    other = tmp_path / "unet.pth"
    torch.save(MODELS.get("unet")("smoke").state_dict(), other)
    with pytest.raises(HarnessError, match="no 'image_encoder.*' entries"):
        load_sam_image_encoder(MODELS.get("sam")("tiny"), other)


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "hook": PadToMultiple}, path)
    with pytest.raises(HarnessError, match="pickled.pth"):
        load_sam_image_encoder(MODELS.get("sam")("tiny"), path)


def test_windowed_attention_equals_global_when_one_window_covers_the_grid():
    torch.manual_seed(0)
    dim, heads, grid = 16, 2, 6
    windowed = Block(dim, heads, 2.0, window_size=grid, grid=grid)
    full = Block(dim, heads, 2.0, window_size=0, grid=grid)
    with torch.no_grad():
        for p in windowed.parameters():  # non-zero relative tables too, so they are exercised
            p.normal_(0, 0.3)
    full.load_state_dict(windowed.state_dict())  # same (2*6-1, head_dim) tables either way
    x = torch.randn(2, grid, grid, dim)
    torch.testing.assert_close(windowed(x), full(x), rtol=1e-5, atol=1e-5)
    # Smaller windows really are local: the output differs.
    local = Block(dim, heads, 2.0, window_size=4, grid=grid)  # 6x6 padded to 8x8, four windows
    state = windowed.state_dict()
    state["attn.rel_pos_h"], state["attn.rel_pos_w"] = state["attn.rel_pos_h"][2:-2], state["attn.rel_pos_w"][2:-2]
    local.load_state_dict(state)
    assert local(x).shape == x.shape and not torch.allclose(local(x), full(x))


def test_window_partition_round_trips_with_padding():
    x = torch.randn(2, 6, 5, 3)
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 2, 4, 4, 3) and padded == (8, 8)
    assert torch.equal(window_unpartition(windows, 4, padded, (6, 5)), x)


def test_attention_resizes_its_relative_tables_to_the_grid():
    torch.manual_seed(0)
    attn = Attention(8, 2, rel_pos_size=4)  # tables for a 4x4 grid, run on 6x6
    with torch.no_grad():
        attn.rel_pos_h.normal_()
    assert attn(torch.randn(1, 6, 6, 8)).shape == (1, 6, 6, 8)


@pytest.mark.parametrize("size", [32, 64])
def test_sam_runs_at_sizes_other_than_its_configured_one(size):
    torch.manual_seed(0)
    net = MODELS.get("sam")("tiny")  # configured for 48px: pos_embed and global tables are resized
    assert net(torch.rand(1, 3, size, size)).shape == (1, 1, size, size)
    encoder = SamImageEncoder(SamViTConfig(img_size=48, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                                           out_chans=16, window_size=4, global_attn_indexes=(0,)))
    assert torch.equal(encoder.position_embedding(6, 6), encoder.pos_embed)
    assert encoder.position_embedding(4, 8).shape == (1, 4, 8, 32)
    assert VIT_B.grid == 64


def test_decomposed_relative_positions_match_a_brute_force_reference():
    # logit(i, j) = q_i.k_j * scale + q_i.Rh[y_i - y_j + S-1] + q_i.Rw[x_i - x_j + S-1], per head.
    torch.manual_seed(0)
    dim, heads, size = 8, 2, 3
    attn = Attention(dim, heads, rel_pos_size=size)
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(1, size, size, dim)
    hd = dim // heads
    qkv = attn.qkv(x).reshape(size * size, 3, heads, hd)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
    coords = [(y, xx) for y in range(size) for xx in range(size)]
    out = torch.zeros(size * size, heads, hd)
    for h in range(heads):
        logits = torch.zeros(size * size, size * size)
        for i, (yi, xi) in enumerate(coords):
            for j, (yj, xj) in enumerate(coords):
                logits[i, j] = (q[i, h] @ k[j, h]) * hd**-0.5 + q[i, h] @ attn.rel_pos_h[yi - yj + size - 1] \
                    + q[i, h] @ attn.rel_pos_w[xi - xj + size - 1]
        out[:, h] = logits.softmax(-1) @ v[:, h]
    expected = attn.proj(out.reshape(1, size, size, dim))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)
