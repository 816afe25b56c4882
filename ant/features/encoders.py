"""The frozen encoders: which model, loaded how, and what exactly it is (where it runs: ant.device).

- `add_encoder_arguments`: the flags every encoder command shares.
- `load_text_encoder` / `load_image_encoder`: AutoTokenizer or AutoImageProcessor + AutoModel from a hub name
  or a local folder, in eval mode on the device. Offline mode (HF_HUB_OFFLINE) is respected; a model that
  cannot be found is a UserError saying how to provide it.
- `encoder_identity(model, revision)`: what the vectors depend on, for the feature store's fingerprint and
  manifest: a hub name with its resolved commit hash, or a local folder's name with a sha256 of its files.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import torch

from ant.errors import UserError

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def add_encoder_arguments(parser: argparse.ArgumentParser, *, model: str, batch_size: int) -> None:
    """The flags every encoder command shares: which model, where and how it runs."""
    parser.add_argument("--model", default=model, help="hub name or local folder")
    parser.add_argument("--revision", default=None, help="hub branch, tag or commit (ignored for a folder)")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision", "--dtype", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")


def is_local(model: str) -> bool:
    """A model given as a folder rather than a hub name ("org/name" has at most one slash, no leading dot)."""
    return Path(model).expanduser().is_dir() or model.startswith(("/", ".", "~")) or model.count("/") > 1


def _model_error(kind: str, model: str, err: Exception | None) -> UserError:
    where = f"features.{kind}.model"
    if is_local(model) and not Path(model).expanduser().is_dir():
        return UserError(
            f"{kind} model folder {model!r} does not exist: set {where} to a folder holding a saved model "
            "(config.json, weights, tokenizer or preprocessor files); the demo's tiny models are built by the "
            "tiny_models rule (snakemake resources/models/tiny-bert resources/models/tiny-swin)"
        )
    reason = str(err).strip().splitlines()[0] if err else "not found"
    return UserError(
        f"cannot load the {kind} model {model!r} ({reason}). Either set {where} to a local folder with the saved "
        "model, or allow access to the Hugging Face Hub (unset HF_HUB_OFFLINE), or fill the cache under HF_HOME "
        f"beforehand on a machine with internet (hf download {model})"
    )


def _load(kind: str, model: str, revision: str | None, loader: Any, **kwargs: Any) -> Any:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar, with items/s, is the one the log should show
    source = str(Path(model).expanduser()) if is_local(model) else model
    if is_local(model) and not Path(source).is_dir():
        raise _model_error(kind, model, None)
    try:
        return loader.from_pretrained(source, revision=None if is_local(model) else revision, **kwargs)
    except (OSError, ValueError, KeyError) as err:  # what transformers raises for a missing/invalid model
        raise _model_error(kind, model, err) from err


def model_config(kind: str, model: str, revision: str | None) -> Any:
    """The model's config (its output dimension is `hidden_size`), without loading the weights."""
    from transformers import AutoConfig

    return _load(kind, model, revision, AutoConfig)


def _float32_model(kind: str, model: str, revision: str | None, device: torch.device) -> torch.nn.Module:
    from transformers import AutoModel

    module = _load(kind, model, revision, AutoModel, dtype=torch.float32)
    return module.to(device).eval()


def load_text_encoder(model: str, revision: str | None, device: torch.device) -> tuple[Any, torch.nn.Module]:
    from transformers import AutoTokenizer

    tokenizer = _load("text", model, revision, AutoTokenizer)
    return tokenizer, _float32_model("text", model, revision, device)


def load_image_encoder(model: str, revision: str | None, device: torch.device) -> tuple[Any, torch.nn.Module]:
    from transformers import AutoImageProcessor

    processor = _load("image", model, revision, AutoImageProcessor, **pil_backend())
    return processor, _float32_model("image", model, revision, device)


def pil_backend() -> dict[str, Any]:
    """AutoImageProcessor options for the PIL backend on every machine: torchvision's, picked where it is
    installed, gives slightly different pixels; and the processor runs per image in loader workers anyway."""
    import transformers

    return {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}


def encoder_identity(kind: str, model: str, revision: str | None) -> dict[str, Any]:
    """Name + revision of the encoder: the hub commit hash, or a hash of a local folder's files."""
    if is_local(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise _model_error(kind, model, None)
        return {"name": folder.resolve().name, "files_sha256": folder_digest(folder)}
    if revision and _COMMIT.match(revision):
        return {"name": model, "revision": revision}
    from transformers.utils import cached_file
    from transformers.utils.hub import extract_commit_hash

    try:
        resolved = cached_file(model, "config.json", revision=revision)
    except (OSError, ValueError) as err:
        raise _model_error(kind, model, err) from err
    commit = extract_commit_hash(resolved, None)
    return {"name": model, "revision": commit or revision or "main"}


def folder_digest(folder: Path) -> str:
    """sha256 over the name and bytes of every model file (config, weights, tokenizer/preprocessor files)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and _is_model_file(p.name)):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _is_model_file(name: str) -> bool:
    # documentation and hidden files (editor swaps, .gitattributes) do not change any vector
    return not name.startswith(".") and not name.lower().endswith((".md", ".lock"))
