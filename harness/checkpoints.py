"""Loading a suspect's checkpoint safely: ``weights_only=True``, and one clear line when it fails."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from harness.errors import HarnessError
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


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
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
    for prefix in _PREFIXES:  # DataParallel / wrapper prefixes from training outside the harness
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def load_model(model_name: str, preset: str, path: str | Path) -> Segmenter:
    """A registered architecture with the checkpoint's weights; mismatches are named."""
    model = build_model(model_name, preset)
    state = load_state_dict(path)
    expected = model.net.state_dict()
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
