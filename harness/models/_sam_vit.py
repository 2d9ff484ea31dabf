"""Our own implementation of Segment Anything's ViT image encoder, and a loader for its checkpoints.

Written from the published architecture (Kirillov et al., 2023), not copied. Its
parameter names and shapes are those of the ``image_encoder.*`` entries of the
official checkpoints with the prefix stripped, so ``load_sam_image_encoder``
can fill it from ``sam_vit_b_01ec64.pth`` without renaming anything:

* ``patch_embed.proj``: a patch-size convolution, stride = patch size;
* ``pos_embed`` (1, G, G, C): an absolute embedding on the token grid, G = img_size / patch;
* ``blocks.{i}``: pre-norm transformer blocks (LayerNorm eps 1e-6, GELU MLP ``lin1``/``lin2``),
  whose attention is windowed (``window_size``, the grid zero-padded to a window multiple)
  except in ``global_attn_indexes``, and adds *decomposed* relative positional embeddings
  ``rel_pos_h``/``rel_pos_w`` (2S-1, head_dim) to the attention logits, S = window size or G;
* ``neck``: 1x1 conv (no bias), LayerNorm2d, 3x3 conv (no bias), LayerNorm2d, to ``out_chans``.

Inputs need not be ``img_size``: at forward time the absolute embedding is resized to the
actual token grid (bicubic, over its G x G grid) and the relative tables to the actual
attention extent (linear, along their length, as the official code does). The parameters
therefore keep the shapes of the configured ``img_size`` (1024 for the official layout) and a
pretrained checkpoint loads unchanged; nothing is resized in the state dict.

Checked once on a GPU machine against segment_anything 1.0's ``ImageEncoderViT`` (vit_b, random
weights, pos_embed and rel_pos randomised): its state dict loaded through ``load_sam_image_encoder``
and both encoders gave identical outputs (max abs difference 0.0, fp32) at 1024x1024, and at
256x256 when the official model was given the same bicubic-resized pos_embed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError

PREFIX = "image_encoder."


@dataclass(frozen=True)
class SamViTConfig:
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


# The official ViT-B image encoder (sam_vit_b_01ec64.pth).
VIT_B = SamViTConfig()


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an (N, C, H, W) map; eps 1e-6 as in SAM's neck."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()  # statistics in float32 also under autocast
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return (x * self.weight[:, None, None] + self.bias[:, None, None]).to(dtype)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> (N, H/p, W/p, C) tokens (channels last, as the blocks expect)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """A (L, D) relative-position table linearly resampled to (length, D); unchanged if L == length."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t()[None], size=length, mode="linear", align_corners=False)[0].t()


def relative_embedding(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """(q_size, k_size, D): the table's row for every (query, key) offset along one axis.

    The table covers offsets -(S-1)..(S-1) for S = max(q_size, k_size); when query and key
    extents differ, the shorter axis' coordinates are stretched to the longer one's scale.
    """
    table = resize_rel_pos(table, 2 * max(q_size, k_size) - 1)
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=table.device)[:, None] * q_scale
    k_coords = torch.arange(k_size, device=table.device)[None, :] * k_scale
    offsets = (q_coords - k_coords) + (k_size - 1) * k_scale
    return table[offsets.long()]


class Attention(nn.Module):
    """Multi-head self-attention over an (B, H, W, C) token grid with decomposed relative positions."""

    def __init__(self, dim: int, num_heads: int, rel_pos_size: int):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        # Zero-initialised as in SAM: attention starts position-agnostic within a window.
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_pos_size - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).reshape(3, b * heads, h * w, -1)
        q, k, v = qkv.unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        # Decomposed relative positions: logit(q, k) += q . Rh[qy - ky] + q . Rw[qx - kx].
        rh = relative_embedding(h, h, self.rel_pos_h)
        rw = relative_embedding(w, w, self.rel_pos_w)
        grid_q = q.reshape(b * heads, h, w, -1)
        bias_h = torch.einsum("byxd,ykd->byxk", grid_q, rh)
        bias_w = torch.einsum("byxd,xkd->byxk", grid_q, rw)
        logits = logits.view(b * heads, h, w, h, w) + bias_h[:, :, :, :, None] + bias_w[:, :, :, None, :]
        attn = logits.view(b * heads, h * w, h * w).softmax(dim=-1)
        out = (attn @ v).view(b, heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, c)
        return self.proj(out)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window, window, C), zero-padding H and W up to a window multiple."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of ``window_partition``, dropping the padding."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous()


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size`` > 0, else global."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window_size: int, grid: int):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, rel_pos_size=window_size if window_size > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1:3]
            windows, padded = window_partition(x, self.window_size)
            x = window_unpartition(self.attn(windows), self.window_size, padded, (h, w))
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class SamImageEncoder(nn.Module):
    """SAM's ViT image encoder: (N, 3, H, W) -> (N, out_chans, H/patch, W/patch)."""

    def __init__(self, config: SamViTConfig = VIT_B):
        super().__init__()
        self.config = config
        self.patch_embed = PatchEmbed(config.patch_size, 3, config.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid, config.grid, config.embed_dim))
        # SAM's own code starts pos_embed at zero and always loads MAE weights over it; trained
        # from scratch here, a small random start (ViT's) lets positions differ from step one.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio,
                  0 if i in config.global_attn_indexes else config.window_size, config.grid)
            for i in range(config.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(config.embed_dim, config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """``pos_embed`` on an h x w token grid: itself at the configured size, else bicubic-resized."""
        if self.pos_embed.shape[1:3] == (h, w):
            return self.pos_embed
        resized = F.interpolate(self.pos_embed.permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


# -- loading official checkpoints ---------------------------------------------------------------

def read_checkpoint(path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """A SAM checkpoint's state dict, read with ``weights_only=True`` (no pickled code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise HarnessError(f"SAM checkpoint {os.fspath(path)!r} does not exist") from None
    except Exception as exc:  # unpickling / zip errors: not a torch checkpoint
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"{os.fspath(path)!r} is not a readable torch checkpoint: {first}") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise HarnessError(f"{os.fspath(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


def encoder_entries(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``image_encoder.*`` entries with the prefix stripped; prompt encoder and mask decoder are ignored."""
    entries = {k[len(PREFIX):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if not entries:
        raise HarnessError(f"{source} has no '{PREFIX}*' entries: not a Segment Anything checkpoint")
    return entries


@torch.no_grad()
def load_sam_image_encoder(module: nn.Module, source: str | os.PathLike | Mapping[str, torch.Tensor]) -> nn.Module:
    """Copy an official SAM checkpoint's ``image_encoder.*`` weights into ``module``.

    ``module`` is a ``SamImageEncoder`` or anything with one as ``.image_encoder`` (the
    harness's ``sam`` net). ``source`` is a checkpoint path (read with ``weights_only=True``)
    or an already loaded state dict. Every encoder parameter must be present with exactly
    its shape, and no ``image_encoder.*`` entry may be left over; otherwise a one-line
    ``HarnessError`` names the first offending key. Returns ``module``.
    """
    encoder = getattr(module, "image_encoder", module)
    if not isinstance(encoder, SamImageEncoder):
        raise HarnessError(f"cannot load SAM image-encoder weights into a {type(module).__name__}")
    if isinstance(source, Mapping):
        label, state = "state dict", source
    else:
        label, state = repr(os.fspath(source)), read_checkpoint(source)
    entries = encoder_entries(state, label)
    own = encoder.state_dict()
    for key, target in own.items():
        if key not in entries:
            raise HarnessError(f"{label} lacks {PREFIX}{key} (expected shape {tuple(target.shape)})")
        if not isinstance(entries[key], torch.Tensor) or entries[key].shape != target.shape:
            got = tuple(entries[key].shape) if isinstance(entries[key], torch.Tensor) else type(entries[key]).__name__
            raise HarnessError(f"{label}: {PREFIX}{key} has shape {got}, this encoder expects "
                               f"{tuple(target.shape)} (a different SAM size or preset?)")
    for key in entries:
        if key not in own:
            raise HarnessError(f"{label} has unexpected {PREFIX}{key}: not this encoder's layout")
    for key, target in own.items():
        target.copy_(entries[key].to(target.dtype))
    return module


__all__ = ["SamViTConfig", "VIT_B", "SamImageEncoder", "load_sam_image_encoder", "read_checkpoint"]
