"""Model files: a state dict in safetensors with string metadata (the format, and what rebuilds the model)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ant.errors import UserError
from ant.io import atomic_path


def save_weights(model: nn.Module, path: str | Path, file_format: str, metadata: dict[str, str]) -> None:
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": file_format, **metadata})


def read_metadata(path: str | Path, file_format: str, kind: str) -> dict[str, str]:
    """The metadata of a model file, which must exist, be readable and have `file_format` (`kind`: "an ANT model")."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"model file not found: {path} (run the pre-training rule first)")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise UserError(f"{path}: not a readable safetensors file ({err}); delete it and rerun its rule") from err
    if meta.get("format") != file_format:
        raise UserError(f"{path}: format {meta.get('format')!r}, expected {file_format!r}: not {kind}")
    return meta


def load_weights(path: str | Path) -> dict:
    return load_file(str(path))
