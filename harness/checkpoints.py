"""Loading a suspect's checkpoint safely: ``weights_only=True``, and one clear line when it fails."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.segmenter import Segmenter, build_model

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "net.", "model.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _unpickler_reason(exc: BaseException) -> str:
    text = str(exc)
    start = text.find("WeightsUnpickler error:")
    reason = text[start + len("WeightsUnpickler error:"):] if start >= 0 else text
    return " ".join(reason.split())[:160]


def load_state_dict(path: str | Path, expected: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict, unwrapped from ``{"state_dict": ...}`` and the like.

    ``expected``: the architecture's own state dict. Wrapper prefixes (``module.``, ``net.``, ``model.``,
    possibly stacked) are stripped only to reach a key set that fits it: MONAI's UNet keys themselves
    start with ``model.`` and UNETR's with ``net.``, so stripping blindly breaks them. Without
    ``expected`` the keys are returned as saved.
    """
    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing; one line is ours
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "Unsupported global" in reason:
            raise HarnessError(f"checkpoint {path} refused: it references code or objects beyond weights, "
                               f"and nothing in it was run ({reason})") from None
        raise HarnessError(f"checkpoint {path} is corrupt or not a PyTorch file ({reason})") from None
    except Exception as exc:  # noqa: BLE001 - garbage bytes surface as any of a dozen error types
        # Safe to catch broadly: weights_only=True means nothing in the file was executed.
        raise HarnessError(f"checkpoint {path} is corrupt or not a PyTorch file: "
                           f"{type(exc).__name__}: {_first_line(exc)}") from None
    for wrapper in _WRAPPER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise HarnessError(f"checkpoint {path} is not a state dict (a mapping of parameter names to tensors)")
    return obj if expected is None else _best_layout(obj, expected)


def _prefix_strippings(state: dict[str, torch.Tensor]):
    """``state`` as saved, then with each further shared wrapper prefix removed (``module.net.x`` ->
    ``net.x`` -> ``x``), one at a time, so that a prefix which belongs to the architecture can be kept."""
    yield state
    while True:
        prefix = next((p for p in _PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            return
        state = {k[len(prefix):]: v for k, v in state.items()}
        yield state


def _best_layout(state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The least-stripped layout whose keys are exactly the architecture's; when none is, the one sharing
    the most keys with it, so that the mismatch reported is the real one and not a prefix artefact."""
    wanted = set(expected)
    best, best_common = state, -1
    for candidate in _prefix_strippings(state):
        if set(candidate) == wanted:
            return candidate
        common = len(wanted.intersection(candidate))
        if common > best_common:
            best, best_common = candidate, common
    return best


def load_model(model_name: str, preset: str, path: str | Path) -> Segmenter:
    """A registered architecture with the checkpoint's weights; mismatches are named."""
    model = build_model(model_name, preset)
    expected = model.net.state_dict()
    state = load_state_dict(path, expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        details = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if names:
                details.append(f"{len(names)} {label} (e.g. {names[0]})")
        raise HarnessError(f"checkpoint {path} does not fit model {model_name!r} (preset {preset}): "
                           + "; ".join(details))
    model.net.load_state_dict(state)
    return model.eval()


def export_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """The network's plain state dict, the format ``harness verify --checkpoint`` takes (written atomically,
    through a temporary file of its own, so concurrent writers never share one)."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.net.state_dict().items()}
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))
    return path
