#!/usr/bin/env python
"""Cross-check our SASRec, BERT4Rec and FDSA against the real RecBole (benchmarks/README.md).

    python benchmarks/recbole_crosscheck.py all            # everything below, in order (project venv)
    python benchmarks/recbole_crosscheck.py setup          # RecBole in benchmarks/.venv-recbole (1.1.1, else 1.2.1)
    python benchmarks/recbole_crosscheck.py data           # the demo target, exported by the workflow
    python benchmarks/recbole_crosscheck.py train          # both sides x models x seeds; metrics and epoch times
    python benchmarks/recbole_crosscheck.py exact          # RecBole's weights copied into ours: same logits, loss?
    python benchmarks/recbole_crosscheck.py timing         # per-epoch time alone: fixed-length rounds, alternating
    python benchmarks/recbole_crosscheck.py report         # the tables, from what train and exact left

One script, two interpreters. The commands above run under the project's venv (`ant` importable); the RecBole
side runs as `recbole-train` and `recbole-dump`, subprocesses of this same file under the RecBole venv, which
never imports `ant` (RecBole 1.x pins numpy < 2, pandas < 3, setuptools < 81). They talk through files in
--work (default benchmarks/runs/, git-ignored): RecBole's atomic files, JSON results and torch files.

- data: a scratch copy of HEAD (`git archive`) runs the workflow: `snakemake --cores 2 results/recbole/<task>`
  (our export-recbole: UniSRec-style pre-split .train/.valid/.test.inter with item_id_list histories) plus the
  task's sequences/items and its text feature store, which FDSA reads on both sides.
- train: the same configuration both sides (hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5 / 0.5, Adam
  lr 1e-3, no decay, CE over all items, full ranking, R/N@{10,50}, validation NDCG@10, patience 10, <= 300
  epochs, the same batch size and torch threads); our side with `eval.exclude_history: false`, RecBole's rule
  (only padding excluded; compared as metrics.json's `test_history_kept`).
- exact: RecBole's model built on the same dataset, every parameter re-drawn so that no tensor sits at its
  trivial initial value (a LayerNorm left at (1, 0) would hide a wrong mapping), copied into ours (RecBole ids
  permuted to ours, q/k/v packed into `qkv`), both in eval mode: logits over the real items on a test batch and
  the CE loss on a training batch (BERT4Rec: RecBole's own masks fed to our loss).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv-recbole"
DEFAULT_WORK = HERE / "runs"
TASK = "DemoScientific"
MODELS = ("sasrec", "bert4rec", "fdsa")
# RecBole first, fall back; the spec's reference is v1.1.1 (its BERT4Rec differs from 1.2's: spec section 5)
RECBOLE_VERSIONS = ("1.1.1", "1.2.1")
# RecBole 1.x needs these; torch 2.13.0 is the local CPU wheel (an unpinned torch pulls a CUDA build)
RECBOLE_PINS = ("torch==2.13.0", "setuptools<81", "pandas<3")
# 1.1.1's evaluator still uses np.float (removed in numpy 1.24); 1.2.1 runs on numpy 1.x
NUMPY_PINS = {"1.1.1": "numpy<1.24", "1.2.1": "numpy<2"}
RECBOLE_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # RecBole 1.x torch.loads its own pickled checkpoints
METRICS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50")
TOLERANCE = 1e-4  # max |delta| of float32 logits / losses that counts as "the same"


# --------------------------------------------------------------------------- the one configuration, both sides
def shared(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "hidden_size": args.hidden_size,
        "layers": 2,
        "heads": 2,
        "inner_size": 256,
        "dropout": 0.5,
        "attn_dropout": 0.5,
        "mask_ratio": 0.2,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "patience": 10,
        "ks": [10, 50],
        "max_history": 50,
        "threads": args.threads,
    }


def ant_settings(model: str, s: dict[str, Any]) -> dict[str, Any]:
    """Our model settings for the shared configuration `s` (RecBole's key names)."""
    settings = {
        "hidden_size": s["hidden_size"],
        "layers": s["layers"],
        "attention_heads": s["heads"],
        "inner_size": s["inner_size"],
        "dropout": s["dropout"],
        "attn_dropout": s["attn_dropout"],
    }
    if model == "bert4rec":
        settings["mask_ratio"] = s["mask_ratio"]
    if model == "fdsa":
        settings["text_table"] = "features"  # the RecBole side reads the text; its upstream-init side does not
    return settings


def ant_hparams(model: str, s: dict[str, Any], rows: str) -> dict[str, Any]:
    return {
        "model": ant_settings(model, s),
        "optim": {
            "lr": s["lr"],
            "batch_size": s["batch_size"],
            "epochs": s["epochs"],
            "lr_decay": 1.0,
            "patience": s["patience"],
            "select": "ndcg@10",
        },
        "train": {"device": "cpu", "threads": s["threads"], "rows": rows},
        "eval": {"ks": s["ks"], "exclude_history": False},
        "max_history": s["max_history"],
    }


def recbole_config(model: str, s: dict[str, Any], data: Path, seed: int, out: Path, text: Path | None) -> dict:
    """RecBole's config: UniSRec's props/finetune.yaml (pre-split files, full ranking, NDCG@10, patience 10)
    and the RecBole model defaults, at the shared settings."""
    config = {
        "data_path": str(data.parent),
        "benchmark_filename": ["train", "valid", "test"],
        "alias_of_item_id": ["item_id_list"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "MAX_ITEM_LIST_LENGTH": s["max_history"],
        "train_neg_sample_args": None,
        "loss_type": "CE",
        "n_layers": s["layers"],
        "n_heads": s["heads"],
        "hidden_size": s["hidden_size"],
        "inner_size": s["inner_size"],
        "hidden_dropout_prob": s["dropout"],
        "attn_dropout_prob": s["attn_dropout"],
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        "learner": "adam",
        "learning_rate": s["lr"],
        "weight_decay": 0.0,
        "train_batch_size": s["batch_size"],
        "eval_batch_size": 2048,
        "epochs": s["epochs"],
        "stopping_step": s["patience"],
        "eval_step": 1,
        "topk": s["ks"],
        "metrics": ["Recall", "NDCG"],
        "valid_metric": "NDCG@10",
        "seed": seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "checkpoint_dir": str(out / "saved"),
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }
    if model == "bert4rec":
        config |= {"mask_ratio": s["mask_ratio"], "transform": "mask_itemseq"}
    if model == "fdsa":
        config |= {"text_features": str(text), "upstream_init": False}  # TextFDSA: the [N, dim] text table
    return config


# --------------------------------------------------------------------------- weight mapping (no RecBole needed)
def transformer_keys(rb: str, ours: str, layers: int) -> dict[str, tuple[str, ...]]:
    """Our key -> the RecBole key(s) it is made of, for one RecBole `TransformerEncoder` (prefix `rb`, e.g.
    "trm_encoder") and our ModuleList of `TransformerLayer`s (prefix `ours`, e.g. "encoder.layers").
    Our packed qkv Linear splits its output as [q | k | v] (ant/model/transformer.py: view(B, T, 3, heads, d_h)),
    so its weight and bias are RecBole's query, key and value concatenated in that order along the output dim."""
    out: dict[str, tuple[str, ...]] = {}
    for i in range(layers):
        a, f, o = f"{rb}.layer.{i}.multi_head_attention", f"{rb}.layer.{i}.feed_forward", f"{ours}.{i}"
        for p in ("weight", "bias"):
            out[f"{o}.qkv.{p}"] = (f"{a}.query.{p}", f"{a}.key.{p}", f"{a}.value.{p}")
            out[f"{o}.attn_out.{p}"] = (f"{a}.dense.{p}",)
            out[f"{o}.attn_norm.{p}"] = (f"{a}.LayerNorm.{p}",)
            out[f"{o}.ffn_in.{p}"] = (f"{f}.dense_1.{p}",)
            out[f"{o}.ffn_out.{p}"] = (f"{f}.dense_2.{p}",)
            out[f"{o}.ffn_norm.{p}"] = (f"{f}.LayerNorm.{p}",)
    return out


def key_map(model: str, layers: int) -> dict[str, tuple[str, ...]]:
    """Our state-dict key -> RecBole's key(s), per model (ours: ant/baselines/<model>.py; RecBole 1.1.1's
    SASRec / BERT4Rec and the UniSRec-style text FDSA below)."""
    if model in ("sasrec", "bert4rec"):
        return {
            "items.weight": ("item_embedding.weight",),
            "encoder.position.weight": ("position_embedding.weight",),
            "encoder.input_norm.weight": ("LayerNorm.weight",),
            "encoder.input_norm.bias": ("LayerNorm.bias",),
            **transformer_keys("trm_encoder", "encoder.layers", layers),
        }
    if model == "fdsa":
        return {
            "items.weight": ("item_embedding.weight",),
            "position.weight": ("position_embedding.weight",),
            "input_norm.weight": ("LayerNorm.weight",),
            "input_norm.bias": ("LayerNorm.bias",),
            "adapter.0.weight": ("adapter.mlp_layers.1.weight",),
            "adapter.0.bias": ("adapter.mlp_layers.1.bias",),
            "concat.weight": ("concat_layer.weight",),
            "concat.bias": ("concat_layer.bias",),
            **transformer_keys("item_trm_encoder", "item_layers", layers),
            **transformer_keys("feature_trm_encoder", "feature_layers", layers),
        }
    raise ValueError(f"no weight mapping for {model!r}")


ITEM_TABLES = {"items.weight"}  # rows indexed by item id: permuted from RecBole's ids to ours
RECBOLE_UNMAPPED = {"plm_embedding.weight"}  # frozen input (ours: a buffer rebuilt from the feature store)


def recbole_to_ant(model: str, state: dict[str, Any], layers: int, rows: Any) -> dict[str, Any]:
    """RecBole state dict -> ours. `rows`: LongTensor, for each row of our item table the RecBole row it is
    (0 -> 0 padding; our id item_idx + 1 -> RecBole's id of that token; BERT4Rec's mask row -> its mask row).
    Every RecBole parameter must be used once and every one of ours filled: a mismatch is an error."""
    import torch

    mapping = key_map(model, layers)
    used = {k for parts in mapping.values() for k in parts}
    if missing := sorted(k for parts in mapping.values() for k in parts if k not in state):
        raise KeyError(f"{model}: RecBole state lacks {missing}")
    if extra := sorted(set(state) - used - RECBOLE_UNMAPPED):
        raise KeyError(f"{model}: RecBole parameters without a place in ours: {extra}")
    out = {}
    for key, parts in mapping.items():
        value = torch.cat([state[p] for p in parts], dim=0) if len(parts) > 1 else state[parts[0]]
        out[key] = value[rows].clone() if key in ITEM_TABLES else value.clone()
    return out


def ant_rows(tokens: list[str], extra_rows: int = 0) -> tuple[Any, Any]:
    """RecBole's item tokens (index = RecBole id, 0 = '[PAD]', else our item_idx as written by export-recbole)
    -> (rows, item_idx_of): rows[our id] = RecBole id (extra rows after the items, BERT4Rec's mask, map to
    themselves), item_idx_of[RecBole id] = our item_idx (-1 for padding)."""
    import torch

    if tokens[0] != "[PAD]":
        raise ValueError(f"RecBole's id 0 should be [PAD], got {tokens[0]!r}")
    item_idx_of = torch.tensor([-1] + [int(t) for t in tokens[1:]])
    n = len(tokens) - 1
    if sorted(item_idx_of[1:].tolist()) != list(range(n)):
        raise ValueError("RecBole's item tokens are not exactly our item_idx 0..N-1")
    rows = torch.empty(n + 1 + extra_rows, dtype=torch.long)
    rows[0] = 0
    rows[item_idx_of[1:] + 1] = torch.arange(1, n + 1)
    rows[n + 1 :] = torch.arange(n + 1, n + 1 + extra_rows)
    return rows, item_idx_of


# --------------------------------------------------------------------------- RecBole side (its venv)
def text_fdsa_class():
    """UniSRec's text FDSA (spec section 6) on RecBole's own building blocks (TransformerEncoder, MLPLayers,
    SequentialRecommender), written from the spec, named as UniSRec names its parts. RecBole's own FDSA cannot
    take the feature: its FeatureSeqEmbLayer embeds a FLOAT_SEQ numerical field as the mean over the vector's
    entries of value * E[bucket] (no linear projection, no ReLU), and mixes fields by VanillaAttention.

    `upstream_init: true` reproduces UniSRec's order of construction: the frozen text table is an nn.Embedding
    assigned before `self.apply(self._init_weights)`, so the init re-draws it N(0, 0.02) and the model never sees
    the text (the `exact` command reports this). Default: the table keeps the features, as ours does."""
    import numpy as np
    import torch
    from recbole.model.abstract_recommender import SequentialRecommender
    from recbole.model.layers import MLPLayers, TransformerEncoder
    from torch import nn

    class TextFDSA(SequentialRecommender):
        def __init__(self, config, dataset):
            super().__init__(config, dataset)
            d = config["hidden_size"]
            table = np.load(config["text_features"]).astype(np.float32)  # [N, dim], row = our item_idx
            mapped = np.zeros((self.n_items, table.shape[1]), dtype=np.float32)
            for rid, token in enumerate(dataset.field2id_token["item_id"]):
                if token != "[PAD]":
                    mapped[rid] = table[int(token)]
            self.features = torch.from_numpy(mapped)
            self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
            self.position_embedding = nn.Embedding(self.max_seq_length, d)
            self.plm_embedding = nn.Embedding(self.n_items, table.shape[1], padding_idx=0)
            self.plm_embedding.weight.requires_grad = False
            self.plm_embedding.weight.data.copy_(self.features)
            self.adapter = MLPLayers([table.shape[1], d])
            encoder = {
                "n_layers": config["n_layers"],
                "n_heads": config["n_heads"],
                "hidden_size": d,
                "inner_size": config["inner_size"],
                "hidden_dropout_prob": config["hidden_dropout_prob"],
                "attn_dropout_prob": config["attn_dropout_prob"],
                "hidden_act": config["hidden_act"],
                "layer_norm_eps": config["layer_norm_eps"],
            }
            self.item_trm_encoder = TransformerEncoder(**encoder)
            self.feature_trm_encoder = TransformerEncoder(**encoder)
            self.LayerNorm = nn.LayerNorm(d, eps=config["layer_norm_eps"])
            self.dropout = nn.Dropout(config["hidden_dropout_prob"])
            self.concat_layer = nn.Linear(2 * d, d)
            self.loss_fct = nn.CrossEntropyLoss()
            self.apply(self._init_weights)  # upstream: this re-draws plm_embedding too
            if not config["upstream_init"]:
                self.plm_embedding.weight.data.copy_(self.features)

        def _init_weights(self, module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                module.bias.data.zero_()
                module.weight.data.fill_(1.0)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()

        def forward(self, item_seq, item_seq_len):
            positions = self.position_embedding(torch.arange(item_seq.size(1), device=item_seq.device))[None]
            item_in = self.dropout(self.LayerNorm(self.item_embedding(item_seq) + positions))
            feature_in = self.dropout(self.LayerNorm(self.adapter(self.plm_embedding(item_seq)) + positions))
            mask = self.get_attention_mask(item_seq)  # causal, padding keys masked
            h_id = self.item_trm_encoder(item_in, mask, output_all_encoded_layers=True)[-1]
            h_text = self.feature_trm_encoder(feature_in, mask, output_all_encoded_layers=True)[-1]
            h_id = self.gather_indexes(h_id, item_seq_len - 1)
            h_text = self.gather_indexes(h_text, item_seq_len - 1)
            return self.dropout(self.LayerNorm(self.concat_layer(torch.cat((h_id, h_text), -1))))

        def calculate_loss(self, interaction):
            u = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            return self.loss_fct(u @ self.item_embedding.weight.T, interaction[self.POS_ITEM_ID])

        def predict(self, interaction):
            u = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            return (u * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

        def full_sort_predict(self, interaction):
            u = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            return u @ self.item_embedding.weight.T

    # RecBole's checkpoint pickles the config, which holds the model class: make it a module-level name
    TextFDSA.__module__, TextFDSA.__qualname__ = __name__, "TextFDSA"
    globals()["TextFDSA"] = TextFDSA
    return TextFDSA


def recbole_setup(model: str, config_dict: dict[str, Any], threads: int):
    """(config, train, valid, test, model class) under RecBole, after its own seeding."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, init_seed

    torch.set_num_threads(threads)
    name = {"sasrec": "SASRec", "bert4rec": "BERT4Rec"}.get(model)
    cls = text_fdsa_class() if model == "fdsa" else get_model(name)
    config = Config(model=cls if model == "fdsa" else name, dataset=TASK, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])  # as run_recbole, again before the model
    return config, train, valid, test, cls


def cmd_recbole_train(args: argparse.Namespace) -> int:
    """Under the RecBole venv: train one model with RecBole's Trainer, time each epoch, write result.json."""
    import recbole
    import torch
    from recbole.trainer import Trainer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)  # RecBole writes log_tensorboard/ and saved/ under the working directory
    config_dict = json.loads(Path(args.config).read_text())
    config, train, valid, test, cls = recbole_setup(args.model, config_dict, args.threads)
    model = cls(config, train.dataset).to(config["device"])
    if args.no_anomaly:  # importing recbole.model.sequential_recommender (sine.py) switches it on for everyone
        torch.autograd.set_detect_anomaly(False)
    trainer = Trainer(config, model)
    seconds: list[float] = []
    train_epoch = trainer._train_epoch

    def timed(*a, **k):  # RecBole's own epoch, timed; nothing else changes
        start = time.perf_counter()
        result = train_epoch(*a, **k)
        seconds.append(time.perf_counter() - start)
        return result

    trainer._train_epoch = timed
    start = time.perf_counter()
    best_score, best_valid = trainer.fit(train, valid, saved=True, show_progress=False, verbose=False)
    test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    result = {
        "recbole": recbole.__version__,
        "model": args.model,
        "seed": config["seed"],
        "test": {k: float(v) for k, v in test_result.items()},
        "valid": {k: float(v) for k, v in best_valid.items()},
        "epochs_run": len(seconds),
        "train_seconds": seconds,
        "anomaly_detection": torch.is_anomaly_enabled(),
        "seconds": time.perf_counter() - start,
        "n_items": int(train.dataset.item_num),
        "train_rows": len(train.dataset),
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    shutil.rmtree(out / "saved", ignore_errors=True)
    return 0


def perturb(model, seed: int) -> None:
    """Re-draw every trainable parameter away from its trivial value: weights N(0, 0.1), biases N(0, 0.1),
    LayerNorm weights 1 + N(0, 0.1), so that a wrong mapping of any tensor shows in the logits."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1 + noise if "LayerNorm.weight" in name else noise)


def cmd_recbole_dump(args: argparse.Namespace) -> int:
    """Under the RecBole venv: build each model on the dataset, perturb, and save what `exact` compares."""
    import recbole
    import torch
    import torch.nn.functional as F

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)
    for model_name in args.models:
        config_dict = json.loads((out / f"{model_name}.config.json").read_text())
        config, train, _, test, cls = recbole_setup(model_name, config_dict, args.threads)
        model = cls(config, train.dataset)
        dump: dict[str, Any] = {"recbole": recbole.__version__, "model": model_name}
        if model_name == "fdsa":
            features = model.features
            dump["upstream_init_overwrites_text"] = upstream_fdsa_check(cls, config, train.dataset, features)
        perturb(model, args.seed)
        model.eval()
        tokens = [str(t) for t in train.dataset.field2id_token["item_id"]]
        test_batch = next(iter(test))[0]  # FullSortEvalDataLoader: (interaction, history, pos_u, pos_i)
        train_batch = next(iter(train))  # with RecBole's transform (BERT4Rec: MaskItemSequence)
        with torch.no_grad():
            scores = model.full_sort_predict(test_batch)  # [B, n_items], column 0 = padding
            loss_raw = model.calculate_loss(train_batch)  # RecBole's loss: softmax over rows 0..N
            loss_real = real_items_loss(model_name, model, train_batch, F)  # the same, padding column dropped
        seq, seq_len = model.ITEM_SEQ, model.ITEM_SEQ_LEN
        dump |= {
            "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "tokens": tokens,
            "layers": config["n_layers"],
            "test": {"seq": test_batch[seq], "len": test_batch[seq_len], "target": test_batch[model.POS_ITEM_ID]},
            "scores": scores,
            "train": {k: train_batch[k] for k in train_batch.interaction},
            "train_keys": {"seq": seq, "len": seq_len, "target": model.POS_ITEM_ID},
            "loss_raw": float(loss_raw),
            "loss_real": float(loss_real),
        }
        if model_name == "bert4rec":
            dump["bert4rec"] = {
                "mask_token": int(model.mask_token),
                "masked_seq": model.MASK_ITEM_SEQ,
                "mask_index": model.MASK_INDEX,
                "pos_items": model.POS_ITEMS,
                "recbole_1_2": hasattr(model, "output_ffn"),
            }
        torch.save(dump, out / f"{model_name}.recbole.pt")
    return 0


def real_items_loss(model_name: str, model, batch, F):
    """RecBole's calculate_loss with its softmax restricted to the real items 1..N (the project's rule, spec
    section 2.3), from RecBole's own forward outputs."""
    import torch

    table = model.item_embedding.weight[1 : model.n_items]  # [N, d]; BERT4Rec: the mask row (n_items) excluded
    if model_name == "bert4rec":
        masked, index, pos = batch[model.MASK_ITEM_SEQ], batch[model.MASK_INDEX], batch[model.POS_ITEMS]
        hidden = model.forward(masked)  # [B, T, d]
        states = torch.gather(hidden, 1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))  # [B, slots, d]
        valid = (index > 0).reshape(-1)
        logits = (states @ table.T).reshape(-1, table.shape[0])
        return F.cross_entropy(logits[valid], pos.reshape(-1)[valid] - 1)
    u = model.forward(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN])
    return F.cross_entropy(u @ table.T, batch[model.POS_ITEM_ID] - 1)


def upstream_fdsa_check(cls, config, dataset, features) -> dict[str, float]:
    """UniSRec's construction order (the text table assigned before _init_weights): is the table still the text?"""
    config["upstream_init"] = True
    upstream = cls(config, dataset)
    config["upstream_init"] = False
    table = upstream.plm_embedding.weight.detach()
    return {
        "max_abs_diff_from_text": float((table[1:] - features[1:]).abs().max()),
        "table_std": float(table.std()),
        "text_std": float(features[1:].std()),
    }


# --------------------------------------------------------------------------- project side (its venv)
def recbole_python(args: argparse.Namespace) -> Path:
    return args.venv / "bin" / "python"


def run(cmd: list[str], log: Path | None = None, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    full_env = os.environ | (env or {})
    if log is None:
        subprocess.run(cmd, check=True, env=full_env, cwd=cwd)
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        done = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    if done.returncode:
        tail = log.read_text().splitlines()[-30:]
        raise SystemExit(f"failed ({done.returncode}): {' '.join(map(str, cmd))}\n" + "\n".join(tail))


def cmd_setup(args: argparse.Namespace) -> int:
    """RecBole in its own venv: RECBOLE_VERSIONS in order, the first that installs and imports wins."""
    py = recbole_python(args)
    if not py.exists():
        run([args.python or sys.executable, "-m", "venv", str(args.venv)])
    pip = [str(py), "-m", "pip", "install"]
    for version in RECBOLE_VERSIONS:
        try:
            packages = [f"recbole=={version}", NUMPY_PINS[version], *RECBOLE_PINS]  # one resolver run
            run([*pip, *packages], log=args.work / "logs" / f"setup-recbole-{version}.log")
            probe = "import recbole, recbole.trainer, recbole.model.sequential_recommender; print(recbole.__version__)"
            run([str(py), "-c", probe], env=RECBOLE_ENV)
        except SystemExit as err:
            print(f"recbole {version} did not install or import: {str(err).splitlines()[0]}")
            continue
        print(f"RecBole {version} in {args.venv}")
        return 0
    raise SystemExit(f"none of recbole {', '.join(RECBOLE_VERSIONS)} installed")


def paths(work: Path) -> dict[str, Path]:
    copy = work / "workflow-copy"
    return {
        "copy": copy,
        "recbole": copy / "results" / "recbole" / TASK,
        "sequences": copy / "results" / "data" / TASK / "sequences.parquet",
        "items": copy / "results" / "data" / TASK / "items.parquet",
        "text": copy / "results" / "features" / TASK / "text",
        "text_npy": work / f"{TASK}.text.npy",
    }


def text_manifest(p: dict[str, Path]) -> Path:
    found = sorted(p["text"].glob("*/manifest.json"))
    if len(found) != 1:
        raise SystemExit(f"expected one text feature store under {p['text']}, found {found}")
    return found[0]


def cmd_data(args: argparse.Namespace) -> int:
    """The demo target through the workflow, in a scratch copy of HEAD: export-recbole, data and text features."""
    p = paths(args.work)
    if not (p["copy"] / "workflow" / "Snakefile").exists():
        p["copy"].mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], stdout=archive, check=True)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(p["copy"], filter="data")
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    import yaml

    model = yaml.safe_load((p["copy"] / "config" / "config.yaml").read_text())["features"]["text"]["model"]
    encoder = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(str(model).rstrip("/")).name)  # common.smk's encoder_slug
    targets = [f"results/recbole/{TASK}", f"results/features/{TASK}/text/{encoder}/manifest.json"]
    run(
        [str(bin_dir / "snakemake"), "--cores", "2", *targets],
        log=args.work / "logs" / "data.log",
        env=env,
        cwd=p["copy"],
    )
    import numpy as np

    from ant.features.store import load_features

    features = load_features(text_manifest(p), p["items"])
    np.save(p["text_npy"], features.values)
    print(f"data in {p['copy']}: {p['recbole']} and text {features.values.shape}")
    return 0


def code_digest(model: str) -> str:
    """Our code a result came from (the tree changes while colleagues work): the model file + the Transformer."""
    import hashlib

    h = hashlib.sha256()
    for rel in (f"ant/baselines/{model}.py", "ant/baselines/base.py", "ant/model/transformer.py"):
        h.update((REPO / rel).read_bytes())
    return h.hexdigest()[:12]


def ant_train(model: str, s: dict[str, Any], seed: int, rows: str, out: Path, p: dict[str, Path]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "ant",
        "train-baseline",
        "--method",
        model,
        "--sequences",
        f"{TASK}={p['sequences']}",
        "--items",
        f"{TASK}={p['items']}",
        "--hparams",
        json.dumps(ant_hparams(model, s, rows)),
        "--seed",
        str(seed),
        "--threads",
        str(s["threads"]),
        "--out-dir",
        str(out),
        "--no-progress",
    ]
    if model == "fdsa":
        cmd += ["--features", f"{TASK}.text={text_manifest(p)}"]
    shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resume
    run(cmd, log=out.parent / f"{out.name}.log", cwd=REPO)
    metrics = json.loads((out / "metrics.json").read_text())
    import csv

    with open(out / "history.csv") as fh:
        epochs = [float(r["train_seconds"]) for r in csv.DictReader(fh)]
    return {
        "test": metrics["test_history_kept"],
        "test_rule": metrics["history_rule"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "train_seconds": epochs,
        "code": code_digest(model),
    }


def recbole_train(
    model: str,
    s: dict[str, Any],
    seed: int,
    out: Path,
    p: dict[str, Path],
    args: argparse.Namespace,
    upstream: bool,
    anomaly: bool = True,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    config = recbole_config(model, s, p["recbole"], seed, out, p["text_npy"])
    if upstream:
        config["upstream_init"] = True  # FDSA as UniSRec builds it: the init re-draws the text table
    (out / "config.json").write_text(json.dumps(config, indent=1))
    cmd = [
        str(recbole_python(args)),
        str(Path(__file__).resolve()),
        "recbole-train",
        "--model",
        model,
        "--config",
        str(out / "config.json"),
        "--out",
        str(out),
        "--threads",
        str(s["threads"]),
    ]
    if not anomaly:
        cmd.append("--no-anomaly")
    run(cmd, log=out / "run.log", env=RECBOLE_ENV)
    return json.loads((out / "result.json").read_text())


def cmd_train(args: argparse.Namespace) -> int:
    p, s = paths(args.work), shared(args)
    results = load_results(args.work)
    for model in args.models:
        for seed in args.seeds:
            layouts = ["prefixes"] if model == "bert4rec" else args.rows  # bidirectional: prefixes only
            sides = [("recbole", None)] + [(f"ant/{rows}", rows) for rows in layouts]
            if model == "fdsa" and args.fdsa_upstream_init:
                sides.append(("recbole_upstream_init", None))
            for side, rows in sides:
                key = f"{model}/{side}/seed{seed}"
                out = args.work / "train" / model / side.replace("/", "-") / f"seed{seed}"
                if rows is None:
                    results[key] = recbole_train(model, s, seed, out, p, args, side == "recbole_upstream_init")
                else:
                    results[key] = ant_train(model, s, seed, rows, out, p)
                r = results[key]
                print(
                    f"{key}: {r['epochs_run']} epochs, {median(r['train_seconds']):.3f}s/epoch, "
                    + " ".join(f"{m} {r['test'][m]:.4f}" for m in METRICS)
                )
                (args.work / "train.json").write_text(json.dumps({"settings": s, "results": results}, indent=1))
    return cmd_report(args)


def cmd_timing(args: argparse.Namespace) -> int:
    """Per-epoch training time alone: rounds of a fixed number of epochs, RecBole and ours alternating."""
    p, s = paths(args.work), shared(args) | {"epochs": args.timing_epochs, "patience": None}
    timing: dict[str, list[float]] = {}
    for model in args.models:
        layouts = ["prefixes"] if model == "bert4rec" else args.rows
        for round_ in range(args.timing_rounds):
            for side in ["recbole", "recbole_no_anomaly"] + [f"ant/{rows}" for rows in layouts]:
                out = args.work / "timing" / model / side.replace("/", "-") / f"round{round_}"
                if side.startswith("recbole"):
                    rb = s | {"patience": args.timing_epochs}
                    r = recbole_train(model, rb, 0, out, p, args, False, anomaly=side == "recbole")
                else:
                    r = ant_train(model, s, 0, side.split("/", 1)[1], out, p)
                timing.setdefault(f"{model}/{side}", []).extend(r["train_seconds"])
                print(f"{model}/{side} round {round_}: median {median(r['train_seconds']):.3f} s / epoch")
        (args.work / "timing.json").write_text(json.dumps({"settings": s, "seconds": timing}, indent=1))
    return cmd_report(args)


def load_results(work: Path) -> dict[str, Any]:
    f = work / "train.json"
    return json.loads(f.read_text())["results"] if f.exists() else {}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def cmd_exact(args: argparse.Namespace) -> int:
    """RecBole's (perturbed) weights in ours; logits on a test batch and CE on a train batch, eval mode."""
    import torch

    p, s = paths(args.work), shared(args)
    out = args.work / "exact"
    out.mkdir(parents=True, exist_ok=True)
    for model in args.models:
        config = recbole_config(model, s, p["recbole"], args.seeds[0], out, p["text_npy"])
        (out / f"{model}.config.json").write_text(json.dumps(config, indent=1))
    cmd = [
        str(recbole_python(args)),
        str(Path(__file__).resolve()),
        "recbole-dump",
        "--out",
        str(out),
        "--threads",
        str(s["threads"]),
        "--seed",
        str(args.seeds[0]),
        "--models",
        *args.models,
    ]
    run(cmd, log=out / "dump.log", env=RECBOLE_ENV)
    report = {}
    for model in args.models:
        dump = torch.load(out / f"{model}.recbole.pt", weights_only=False)
        report[model] = compare_exact(model, dump, s, p)
        print(model, json.dumps(report[model]))
    (args.work / "exact.json").write_text(json.dumps(report, indent=1))
    return cmd_report(args)


def compare_exact(model_name: str, dump: dict[str, Any], s: dict[str, Any], p: dict[str, Path]) -> dict[str, Any]:
    import importlib
    from unittest import mock

    import numpy as np
    import torch

    from ant.baselines.base import TaskShape
    from ant.train.batches import Batch

    torch.set_num_threads(s["threads"])
    result: dict[str, Any] = {"recbole": dump["recbole"], "code": code_digest(model_name)}
    if model_name == "bert4rec" and dump["bert4rec"]["recbole_1_2"]:
        result["skipped"] = "RecBole 1.2's BERT4Rec has an output head and 50 positions: not the v1.1.1 model"
        return result
    module = importlib.import_module(f"ant.baselines.{model_name}")
    settings = ant_settings(model_name, s)
    tokens = dump["tokens"]
    n_items = len(tokens) - 1
    features = {"text": np.load(p["text_npy"])} if model_name == "fdsa" else {}
    shape = TaskShape(n_items=n_items, n_users=0, max_history=s["max_history"], features=features)
    ours = module.Model(module.Settings(**settings), shape)
    rows, item_idx_of = ant_rows(tokens, extra_rows=1 if model_name == "bert4rec" else 0)
    ours.load_state_dict(recbole_to_ant(model_name, dump["state"], dump["layers"], rows))
    ours.eval()
    if "upstream_init_overwrites_text" in dump:
        result["upstream_init_overwrites_text"] = dump["upstream_init_overwrites_text"]

    def history(seq: torch.Tensor) -> torch.Tensor:  # RecBole ids [B, T] -> our item_idx, PAD = -1
        return item_idx_of[seq]

    # logits over the real items on a test batch: RecBole's column r (r >= 1) is our column item_idx_of[r]
    t = dump["test"]
    length = t["len"].long()
    steps = int(length.max())
    with torch.no_grad():
        ant_scores = ours.scores(history(t["seq"][:, :steps]), length, torch.zeros_like(length))
    rb = dump["scores"][:, 1:]
    rb_aligned = torch.empty_like(rb)
    rb_aligned[:, item_idx_of[1:]] = rb
    result["test_rows"] = int(length.shape[0])
    result["logits_max_abs"] = float((ant_scores - rb_aligned).abs().max())
    result["logits_scale"] = float(rb_aligned.abs().max())
    result["top1_agree"] = float((ant_scores.argmax(1) == rb_aligned.argmax(1)).float().mean())

    # CE on a training batch (eval mode: no dropout)
    tr, keys = dump["train"], dump["train_keys"]
    seq, tlen = tr[keys["seq"]], tr[keys["len"]].long()
    steps = int(tlen.max())
    hist = history(seq[:, :steps])
    target = item_idx_of[tr[keys["target"]]]
    batch = Batch(history=hist, length=tlen, target=target, user=torch.zeros_like(tlen))
    with torch.no_grad():
        if model_name == "bert4rec":
            b = dump["bert4rec"]
            masked = tr[b["masked_seq"]][:, :steps] == b["mask_token"]
            # our loss draws its masks with torch.rand(...) < mask_ratio: hand it RecBole's masks instead
            draw = torch.where(masked, 0.0, 1.0)
            with mock.patch.object(torch, "rand", lambda *a, **k: draw.clone()):
                loss = ours.loss(batch)
            result["masked_positions"] = int(masked.sum())
            result["predicted_slots_recbole"] = int((tr[b["mask_index"]] > 0).sum())
        else:
            loss = ours.loss(batch)
    result["train_rows"] = int(tlen.shape[0])
    result["loss_ant"] = float(loss)
    result["loss_recbole_real_items"] = dump["loss_real"]
    result["loss_recbole_raw"] = dump["loss_raw"]
    result["loss_max_abs"] = abs(float(loss) - dump["loss_real"])
    result["loss_padding_column_effect"] = dump["loss_raw"] - dump["loss_real"]
    result["ok"] = result["logits_max_abs"] < TOLERANCE * max(1.0, result["logits_scale"]) and (
        result["loss_max_abs"] < TOLERANCE
    )
    return result


# --------------------------------------------------------------------------- report
def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def difference(a: list[float], b: list[float]) -> str:
    """mean(a) - mean(b) and z = that / sqrt(var_a / n_a + var_b / n_b) (Welch's statistic)."""
    delta = statistics.mean(a) - statistics.mean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return f"{delta:+.4f} (z {delta / se:+.1f})" if se > 0 else f"{delta:+.4f}"


def cmd_report(args: argparse.Namespace) -> int:
    """The tables of what `train` and `exact` wrote, as report.md in --work."""
    results = load_results(args.work)
    lines = []
    if results:
        version = next((r["recbole"] for k, r in results.items() if "/recbole/" in k), "?")
        lines += [f"## Test metrics, mean ± std over seeds (RecBole {version}; ours: test_history_kept)", ""]
        if not version.startswith("1.1") and any(k.startswith("bert4rec/") for k in results):
            lines += [
                f"BERT4Rec under RecBole {version} is not the v1.1.1 model ours reproduces (output head, 50 positions,"
                " ft_ratio; spec section 5): its row is not expected to agree; SASRec and FDSA are.",
                "",
            ]
        lines += ["| model | side | seeds | " + " | ".join(METRICS) + " | epochs run | s / epoch |"]
        lines += ["|---" * (len(METRICS) + 5) + "|"]
        timing: dict[tuple[str, str], tuple[float, float]] = {}
        for model in MODELS:
            sides = {k.split("/", 1)[1].rsplit("/", 1)[0] for k in results if k.startswith(model + "/")}
            for side in sorted(sides, key=lambda x: (x != "recbole", x)):
                runs = [r for k, r in results.items() if k.startswith(f"{model}/{side}/seed")]
                cells = [mean_std([r["test"][m] for r in runs]) for m in METRICS]
                timing[(model, side)] = (
                    statistics.mean(median(r["train_seconds"]) for r in runs),
                    min(min(r["train_seconds"]) for r in runs),
                )
                epochs = " ".join(str(r["epochs_run"]) for r in runs)
                row = f"| {model} | {side} | {len(runs)} | " + " | ".join(cells)
                lines.append(row + f" | {epochs} | {timing[(model, side)][0]:.3f} |")
        lines += ["", "## Ours - RecBole: difference of the seed means / its standard error (|z| < 2: seed noise)", ""]
        lines += ["| model | side | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for model in MODELS:
            base = [r for k, r in results.items() if k.startswith(f"{model}/recbole/seed")]
            sides = {k.split("/", 1)[1].rsplit("/", 1)[0] for k in results if k.startswith(model + "/")}
            for side in sorted(x for x in sides if x != "recbole"):
                runs = [r for k, r in results.items() if k.startswith(f"{model}/{side}/seed")]
                if len(base) > 1 and len(runs) > 1:
                    cells = [difference([r["test"][m] for r in runs], [r["test"][m] for r in base]) for m in METRICS]
                    lines.append(f"| {model} | {side} | " + " | ".join(cells) + " |")
        lines += ["", "## Training time per epoch (median epoch of a run, mean over seeds; fastest epoch of all)", ""]
        lines += [
            "| model | ours | ours median | RecBole median | RecBole / ours | ours fastest | RecBole fastest | ratio |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for (model, side), (med, fast) in timing.items():
            if not side.startswith("recbole") and (model, "recbole") in timing:
                rb_med, rb_fast = timing[(model, "recbole")]
                lines.append(
                    f"| {model} | {side} | {med:.3f} s | {rb_med:.3f} s | {rb_med / med:.1f}x | {fast:.3f} s "
                    f"| {rb_fast:.3f} s | {rb_fast / fast:.1f}x |"
                )
    timing_file = args.work / "timing.json"
    if timing_file.exists():
        t = json.loads(timing_file.read_text())
        rounds = t["settings"]["epochs"]
        lines += ["", f"## Timing runs: {rounds}-epoch rounds, RecBole and ours alternating (all epochs pooled)", ""]
        lines += [
            "RecBole as shipped runs with torch's autograd anomaly detection on (recbole/model/sequential_recommender/"
            "sine.py calls torch.autograd.set_detect_anomaly(True) at import); `recbole_no_anomaly` switches it off.",
            "",
            "| model | ours | ours median | RecBole side (anomaly detection) | RecBole median | RecBole / ours "
            "| ours fastest | RecBole fastest | ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, sec in t["seconds"].items():
            model, side = key.split("/", 1)
            if side.startswith("recbole"):
                continue
            for rb_side in ("recbole", "recbole_no_anomaly"):
                rb = t["seconds"].get(f"{model}/{rb_side}")
                if rb:
                    flag = args.work / "timing" / model / rb_side / "round0" / "result.json"
                    on = json.loads(flag.read_text()).get("anomaly_detection") if flag.exists() else None
                    lines.append(
                        f"| {model} | {side} | {median(sec):.3f} s | {rb_side} ({'on' if on else 'off'}) "
                        f"| {median(rb):.3f} s "
                        f"| {median(rb) / median(sec):.1f}x | {min(sec):.3f} s | {min(rb):.3f} s "
                        f"| {min(rb) / min(sec):.1f}x |"
                    )
    exact_file = args.work / "exact.json"
    if exact_file.exists():
        exact = json.loads(exact_file.read_text())
        lines += ["", "## Exact check: RecBole's weights in ours, eval mode", ""]
        lines += [
            "| model | RecBole | test rows | max abs d logits (scale) | top-1 agree | train rows | loss ours | "
            "loss RecBole 1..N | max abs d loss | RecBole raw loss (with padding column) | ok |",
            "|---" * 11 + "|",
        ]
        for model, r in exact.items():
            if "skipped" in r:
                lines.append(f"| {model} | {r['recbole']} | skipped: {r['skipped']} |" + " |" * 8)
                continue
            lines.append(
                f"| {model} | {r['recbole']} | {r['test_rows']} | {r['logits_max_abs']:.2e} ({r['logits_scale']:.1f}) "
                f"| {r['top1_agree']:.3f} | {r['train_rows']} | {r['loss_ant']:.6f} | "
                f"{r['loss_recbole_real_items']:.6f} | {r['loss_max_abs']:.2e} | {r['loss_recbole_raw']:.6f} | "
                f"{'yes' if r['ok'] else 'NO'} |"
            )
        if "upstream_init_overwrites_text" in exact.get("fdsa", {}):
            u = exact["fdsa"]["upstream_init_overwrites_text"]
            lines += [
                "",
                "UniSRec's FDSA construction order (text table before _init_weights): max |table - text| "
                f"{u['max_abs_diff_from_text']:.3f}, table std {u['table_std']:.4f} (text std {u['text_std']:.4f}).",
            ]
    text = "\n".join(lines) + "\n"
    (args.work / "report.md").write_text(text)
    print(text)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    if not recbole_python(args).exists() or args.reinstall:
        cmd_setup(args)
    if not paths(args.work)["text_npy"].exists():
        cmd_data(args)
    cmd_exact(args)
    cmd_train(args)
    cmd_timing(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--work", type=Path, default=DEFAULT_WORK, help="work folder (default benchmarks/runs)")
    common.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    common.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    common.add_argument(
        "--rows",
        nargs="+",
        choices=("prefixes", "all_positions"),
        default=["prefixes", "all_positions"],
        help="our row layouts (prefixes = RecBole's rows; BERT4Rec: prefixes only)",
    )
    common.add_argument(
        "--fdsa-upstream-init",
        action="store_true",
        help="`train`: also RecBole's FDSA built in UniSRec's order (its init re-draws the text table)",
    )
    common.add_argument("--timing-epochs", type=int, default=10, help="`timing`: epochs per round")
    common.add_argument("--timing-rounds", type=int, default=3, help="`timing`: rounds per side")
    common.add_argument("--hidden-size", type=int, default=64)
    common.add_argument("--lr", type=float, default=1e-3)
    common.add_argument("--batch-size", type=int, default=256, help="both sides (demo: ~1,800 training rows)")
    common.add_argument("--epochs", type=int, default=300)
    common.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    common.add_argument("--venv", type=Path, default=VENV, help="RecBole's venv (default benchmarks/.venv-recbole)")
    common.add_argument("--python", help="interpreter that creates the RecBole venv (default: this one)")
    common.add_argument("--reinstall", action="store_true", help="`all`: run setup even if the venv exists")
    for name, fn in (
        ("all", cmd_all),
        ("timing", cmd_timing),
        ("setup", cmd_setup),
        ("data", cmd_data),
        ("train", cmd_train),
        ("exact", cmd_exact),
        ("report", cmd_report),
    ):
        sub.add_parser(name, parents=[common], help=(fn.__doc__ or "").split("\n")[0]).set_defaults(fn=fn)
    rt = sub.add_parser("recbole-train", help="(internal, RecBole venv) train one model")
    rt.add_argument("--model", choices=MODELS, required=True)
    rt.add_argument("--config", required=True)
    rt.add_argument("--out", required=True)
    rt.add_argument("--threads", type=int, default=2)
    rt.add_argument("--no-anomaly", action="store_true", help="switch off the anomaly detection RecBole turns on")
    rt.set_defaults(fn=cmd_recbole_train)
    rd = sub.add_parser("recbole-dump", help="(internal, RecBole venv) models, batches, logits, losses")
    rd.add_argument("--out", required=True)
    rd.add_argument("--models", nargs="+", choices=MODELS, required=True)
    rd.add_argument("--seed", type=int, default=0)
    rd.add_argument("--threads", type=int, default=2)
    rd.set_defaults(fn=cmd_recbole_dump)
    args = parser.parse_args(argv)
    if hasattr(args, "work"):
        args.work = args.work.resolve()
        args.work.mkdir(parents=True, exist_ok=True)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
