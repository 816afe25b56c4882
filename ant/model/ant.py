"""ANT = the multi-modal item encoder + SASRec, scored by cosine similarity (spec sections 3-5), and ANT+ID.

    v_i = ItemEncoder(text_i, image_i, price_i) [+ E_id[i] for ANT+ID]
    u   = SASRec(v_{s_1} .. v_{s_n})[last real position]
    score(u, c) = cos(u, v_c) / temperature

The model holds no item features (they are per task and frozen): callers pass the raw features of the items they
need, so one model serves the mixed auxiliary tasks of pre-training and any target task. `PARTS` names the
parameter groups that the adaptation strategies freeze, keep or re-initialise; `save_model` / `load_model` write
and read `model.safetensors` with the config in its metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ant.model.files import load_weights, read_metadata, save_weights
from ant.model.item_encoder import MODALITIES, ItemEncoder, MoEAdaptor
from ant.model.parts import parameters_by_part as parts_by_prefix
from ant.model.parts import part_function
from ant.model.transformer import SequenceEncoder, recbole_init

FORMAT = "ant-model/1"
LAYER_NORM_EPS = 1e-8  # the authors' SASRec/UniSRec ports and NOVA (spec baselines.md section 2.2); RecBole: 1e-12

# parameter name prefix -> part; every parameter belongs to exactly one part
PARTS: dict[str, str] = {
    "items.": "item_encoder",
    "item_ids.": "id_embedding",
    "users.position.": "position",
    "users.input_norm.": "input_norm",
    "users.layers.": "transformer",
}


@dataclass(frozen=True)
class ANTSettings:
    """ANT's hyper-parameters: the config's `model` section (spec sections 3-4), with the paper's values."""

    hidden_size: int = 256  # d: item vectors, user vectors and the Transformer width
    experts: int = 8  # K projection heads per modality (1 = Table IV's "w/o MoE")
    layers: int = 2  # Transformer layers of the user encoder
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width of a Transformer layer (= d in the paper)
    dropout: float = 0.5  # on the user encoder's input, attention weights and hidden states
    adaptor_dropout: float = 0.2  # on the raw features before each projection head
    fusion_beta: float = 0.1  # weight of the text-image term beta * (e_image * e_text) (0 = "w/o fusion")
    temperature: float = 0.07  # tau of the cosine softmax
    modalities: tuple[str, ...] = MODALITIES  # the modalities read; a left-out one has e_m = 0 (Table IV)


@dataclass(frozen=True, kw_only=True)
class ANTConfig(ANTSettings):
    """Everything a model is built from: its settings plus what the data decides."""

    dims: dict[str, int]  # raw feature dimension per modality
    max_history: int = 50  # L: positions of the user encoder
    id_items: int = 0  # > 0: ANT+ID with an item-ID embedding for this many items

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "modalities": list(self.modalities)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ANTConfig:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        raw = {k: v for k, v in raw.items() if k in known}
        raw["modalities"] = tuple(raw.get("modalities", MODALITIES))
        return cls(**raw)


class ANT(nn.Module):
    def __init__(self, config: ANTConfig) -> None:
        super().__init__()
        missing = set(MODALITIES) - set(config.dims)
        if missing:
            raise ValueError(f"feature dimensions missing for {sorted(missing)}")
        self.config = config
        self.items = ItemEncoder(
            config.dims,
            config.hidden_size,
            config.experts,
            config.adaptor_dropout,
            config.fusion_beta,
            config.modalities,
        )
        self.users = SequenceEncoder(
            config.hidden_size,
            config.max_history,
            config.layers,
            config.attention_heads,
            config.inner_size,
            config.dropout,
            eps=LAYER_NORM_EPS,
        )
        self.item_ids = nn.Embedding(config.id_items, config.hidden_size) if config.id_items else None
        self.apply(init_weights)

    def item_vectors(
        self, features: dict[str, torch.Tensor], item_idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Representations v [n, d] of n items from their raw features (and, for ANT+ID, their item_idx)."""
        v, parts = self.items(features)
        if self.item_ids is not None:
            if item_idx is None:
                raise ValueError("ANT+ID needs the item_idx of the items it encodes")
            v = v + self.item_ids(item_idx)
        return v, parts

    def user_states(self, history_vectors: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, T, d] of histories given as item vectors [B, T, d] and lengths [B]."""
        return self.users(history_vectors, length)

    def user_vectors(self, history_vectors: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """u [B, d]: the hidden state at each history's last real position, user_states' there, with the last
        Transformer layer computed at those positions alone (SequenceEncoder.last)."""
        return self.users.last(history_vectors, length)

    def logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """cos(u, v) / temperature for every (user, item) pair, in float32 even under autocast."""
        return cosine_logits(users, items, self.config.temperature)


def cosine_logits(states: torch.Tensor, items: torch.Tensor, temperature: float) -> torch.Tensor:
    """cos(u, v) / temperature [M, N] of states [M, d] and items [N, d], in float32 even under autocast (the
    scores of ANT, UniSRec and NOVA)."""
    with torch.autocast(states.device.type, enabled=False):
        u = F.normalize(states.float(), dim=-1)
        v = F.normalize(items.float(), dim=-1) / temperature  # [N, d], not the [M, N] product
        return u @ v.T


def init_weights(module: nn.Module) -> None:
    """RecBole's initialisation (ant.model.transformer.recbole_init), adaptors as MoEAdaptor says."""
    if isinstance(module, MoEAdaptor):
        module.reset_parameters()
    else:
        recbole_init(module)


part_of = part_function(PARTS)


def parameters_by_part(model: nn.Module) -> dict[str, dict[str, nn.Parameter]]:
    return parts_by_prefix(model, part_of)


def save_model(model: ANT, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    save_weights(model, path, FORMAT, {"config": model.config.to_json(), **(metadata or {})})


def read_model_metadata(path: str | Path) -> dict[str, str]:
    return read_metadata(path, FORMAT, "an ANT model")


def load_model(path: str | Path) -> tuple[ANT, dict[str, str]]:
    """The model saved at `path` (on the CPU) and its metadata."""
    meta = read_model_metadata(path)
    model = ANT(ANTConfig.from_json(meta["config"]))
    model.load_state_dict(load_weights(path))
    return model, meta
