"""UniSRec (Hou et al., KDD'22), UniSRec 05aa5cb `unisrec.py` + `data/transform.py` (spec baselines.md section 8).

    X   the frozen BERT [CLS] table (N + 1) x 768 in id order, row 0 zero;  X' its word-dropped twin (pre-training)
    v_i = MoE(X[i]) [+ E_id[i] for UniSRec+ID]                                    [n, 768] -> [n, d]
          MoE(x) = sum_k g_k(x) W_k (Dropout_k(x) - b_k),  W_k: d x 768 without bias, b_k: 768
          g(x)   = softmax(x W_g + eps * (softplus(x W_n) + 0.01)),  eps ~ N(0, I) in training only, all 8 experts
    h   = RecBole Transformer, causal (ant.model.transformer), input Dropout(LN(v(x_t) [+ E_id[x_t]] + P[t]))
    u   = h at the last real position;  score(i) = cos(u, v_i) / tau over the N real items
    fine-tuning: next-item cross-entropy of those scores (inherited `loss`, exact with train.rows = all_positions)
    pre-training (`pretrain_loss`, prefix rows, no id table), u_b, t_b = v_{target_b}, u'_b all L2-normalised:
      L_SI = CE_b( u_b . t_j / tau ),   L_SS = CE_b( u_b . u'_j / tau ),   label j = b,
        where an entry j != b whose target id equals b's gets logit 0 (`same_target_logits`);
      u'   = the encoding of ONE augmented view of the batch: with p item_drop_coefficient item drop (`item_drop`),
             otherwise word drop (`word_drop_vectors`);  loss = L_SI + lambda L_SS

The adaptor is ant.model.item_encoder.MoEAdaptor with whitening heads, which is UniSRec's MoEAdaptorLayer of
PWLayers term by term: one dropout mask per expert (each PWLayer owns an nn.Dropout), W_k(x - b_k) with the shift
after the dropout and no output bias, W_k ~ N(0, 0.02) and b_k = 0, gates read the raw x, noise std softplus + 0.01
(`noise_epsilon`), only in training, W_g = W_n = 0 at the start, a plain softmax (no top-k). It is applied per
occurrence, as upstream applies it to the [B, T, 768] history: every history token, target and candidate draws
its own dropout and routing noise. Initialisation: RecBole's N(0, 0.02) for the Transformer, positions and id table
(upstream's SASRec `_init_weights` runs before the adaptor exists), the MoE its own, all from torch's generator.

The text tables are non-persistent buffers: the state dict holds no task-sized tensor but the +ID table, so a
checkpoint pre-trained on the auxiliary tasks (their concatenated table; item_idx are its rows) loads into a model
of any target task. `PARTS` names the parameter groups the adaptation variants (ant/methods.py) load, freeze and
re-initialise. Upstream also scores the padding row 0 in training; here it is never a candidate (spec section 2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ant.baselines.base import Baseline, TaskShape, ids, recbole_encoder, text_table
from ant.data.split import PAD
from ant.model.ant import cosine_logits
from ant.model.item_encoder import MoEAdaptor
from ant.model.transformer import last_position, recbole_init, right_padded, run_layers
from ant.train.batches import Batch

# parameter name prefix -> part; every parameter belongs to exactly one part (the variants in ant/methods.py)
PARTS: dict[str, str] = {
    "adaptor.": "adaptor",  # the MoE: weight (W_k), shift (b_k), gate (W_g), noise (W_n)
    "item_ids.": "id_embedding",  # E_id, UniSRec+ID only
    "encoder.position.": "position",  # P
    "encoder.input_norm.": "input_norm",  # the input LayerNorm
    "encoder.layers.": "transformer",  # the Transformer layers
}


@dataclass(frozen=True)
class Settings:
    hidden_size: int = 300  # d: the adaptor's output, the Transformer width (UniSRec's props, its checkpoint)
    layers: int = 2  # Transformer layers
    attention_heads: int = 2
    inner_size: int = 256  # feed-forward width, independent of d (RecBole)
    dropout: float = 0.5  # on the input and hidden states (hidden_dropout_prob)
    attn_dropout: float = 0.5  # on the attention probabilities (attn_dropout_prob)
    adaptor_dropout: float = 0.2  # on the text vector before each expert (adaptor_dropout_prob)
    experts: int = 8  # MoE experts (n_exps)
    temperature: float = 0.07  # tau of cos(u, v) / tau, in fine-tuning and both pre-training losses
    sequence_loss_weight: float = 1e-3  # lambda of L_SI + lambda L_SS (upstream `lambda`)
    item_drop_ratio: float = 0.2  # item drop: each item dropped with this p; word drop: each position replaced
    item_drop_coefficient: float = 0.9  # p that a batch's augmented view is item drop (else word drop)
    word_drop: bool = True  # word drop may be drawn (needs the text_worddrop feature); False: always item drop
    word_drop_rate: float = 0.15  # p of dropping a word in the text pass behind text_worddrop (the feature rule)
    pretrain_epochs: int = 300  # the pre-training stage's fixed budget, last epoch kept
    pretrain_lr: float | None = None  # the pre-training stage's lr; None: the method's lr
    pretrain_batch_size: int = 8192  # rows per pre-training batch (the in-batch negatives); upstream 8,192

    def pretrain_modalities(self) -> tuple[str, ...]:
        """The feature stores pre-training reads: the text, and the word-dropped text when word drop is on (so a
        missing store is an error of the command, never a silent switch to item drop only)."""
        return ("text", "text_worddrop") if self.word_drop else ("text",)

    def problems(self) -> list[str]:
        """What is wrong with these values (ant.train.hparams prefixes "model.")."""
        out = []
        for name in ("dropout", "attn_dropout", "adaptor_dropout", "word_drop_rate"):
            if not 0 <= getattr(self, name) < 1:
                out.append(f"{name} must be in [0, 1)")
        for name in ("item_drop_ratio", "item_drop_coefficient"):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"{name} must be in [0, 1]")
        for name in ("experts", "pretrain_epochs", "pretrain_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name} must be a positive integer")
        if not self.temperature > 0:
            out.append("temperature must be > 0")
        if not self.sequence_loss_weight >= 0:
            out.append("sequence_loss_weight must be >= 0")
        if not isinstance(self.word_drop, bool):
            out.append("word_drop must be true or false")
        if self.pretrain_lr is not None and not self.pretrain_lr > 0:
            out.append("pretrain_lr must be null or > 0")
        return out


def item_drop(history: torch.Tensor, length: torch.Tensor, keep_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Item drop of right-padded item_idx rows [B, T] (PAD = -1), lengths [B] >= 1: each real item kept with p
    keep_prob (torch's generator), the first always; the kept items moved to the front in order, PAD after.
    Returns (history' [B, T], length' [B] = the number kept). Upstream scatters every item, dropped ones too, to
    the slot of the last kept one, which leaves undefined which of them lands there (spec section 8)."""
    batch, steps = history.shape
    keep = right_padded(length, steps) & (torch.rand(batch, steps, device=history.device) < keep_prob)  # [B, T]
    keep[:, 0] = True  # the oldest item (length >= 1)
    slot = keep.cumsum(1) - 1  # [B, T]: the column a kept item moves to
    rows = torch.arange(batch, device=history.device).unsqueeze(1).expand(batch, steps)
    out = torch.full_like(history, PAD).index_put((rows[keep], slot[keep]), history[keep])
    return out, keep.sum(1)


def word_drop_vectors(
    history: torch.Tensor, length: torch.Tensor, table: torch.Tensor, table_dropped: torch.Tensor, p: float
) -> torch.Tensor:
    """Word drop: the text vectors [B, T, d_text] of item_idx rows [B, T] (PAD = -1) read from `table` [N + 1,
    d_text] (id order, row 0 padding), where each real position instead takes, with p `p` (torch's generator), its
    row of `table_dropped`. Upstream: torch.where(mask, emb, emb_aug), mask ~ Bernoulli(1 - item_drop_ratio)."""
    tokens = ids(history)  # [B, T], 0 at padding
    swap = right_padded(length, history.shape[1]) & (torch.rand(history.shape, device=history.device) < p)
    vectors = table[tokens]  # [B, T, d_text]; padding reads row 0
    vectors[swap] = table_dropped[tokens[swap]]
    return vectors


def same_target_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """UniSRec's rule for in-batch logits [B, B] (row b, label b): an entry j != b whose target id equals row b's
    gets logit 0, a constant exp(0) = 1 in the denominator (upstream's `same_pos_id`); the diagonal stays."""
    same = targets.unsqueeze(0) == targets.unsqueeze(1)  # [B, B]
    same &= ~torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    return logits.masked_fill(same, 0.0)


class Model(Baseline):
    exact_all_positions = True  # causal, read at each position (spec section 2.6)

    def __init__(self, settings: Settings, task: TaskShape, item_ids: bool = False) -> None:
        super().__init__()
        self.settings = settings
        d = settings.hidden_size
        text = text_table(task, "features")  # [N + 1, 768] in id order, row 0 zero
        self.register_buffer("text", text, persistent=False)  # frozen input, not a weight: never in the state dict
        dropped = task.features.get("text_worddrop")  # only the pre-training tasks have it
        if dropped is not None:
            dropped = torch.cat([text[:1], torch.as_tensor(dropped, dtype=torch.float32)])  # [N + 1, 768]
            if dropped.shape != text.shape:
                raise ValueError(f"text_worddrop has shape {tuple(dropped.shape)}, text {tuple(text.shape)}")
        self.register_buffer("text_worddrop", dropped, persistent=False)
        self.encoder = recbole_encoder(settings, task.max_history, causal=True)
        self.item_ids = nn.Embedding(task.n_items + 1, d, padding_idx=0) if item_ids else None
        self.apply(recbole_init)  # N(0, 0.02) for the encoder and the id table (its padding row too, never read)
        # built after that init, as upstream: the MoE keeps its own (MoEAdaptor.reset_parameters)
        self.adaptor = MoEAdaptor(text.shape[1], d, settings.experts, settings.adaptor_dropout, whitening=True)

    def item_vectors(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """v of n item occurrences: text [n, d_text], tokens [n] their RecBole ids -> MoE(text) [+ E_id]: [n, d]."""
        v = self.adaptor(text)
        return v if self.item_ids is None else v + self.item_ids(tokens)

    def hidden(self, tokens: torch.Tensor, length: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states [B, T, d] of right-padded RecBole ids [B, T]; text [B, T, d_text] per position (word
        drop), or None: each token's row of the text table."""
        real = right_padded(length, tokens.shape[1])  # [B, T]
        where = real.nonzero(as_tuple=True)  # (row, column) of every real token
        real_tokens = tokens[where]  # [n]
        v = self.item_vectors(self.text[real_tokens] if text is None else text[where], real_tokens)  # [n, d]
        items = v.new_zeros(*tokens.shape, v.shape[1]).index_put(where, v)  # [B, T, d], zero padding
        x = self.encoder.embed(items, where)  # Dropout(LN(v + P[t])): [n, d]
        return run_layers(self.encoder.layers, x, real, True, where)

    def encode(self, history: torch.Tensor, length: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return self.hidden(ids(history), length)

    def candidates(self) -> torch.Tensor:
        """[N, d], recomputed on every training call: the adaptor (and the id table) train."""
        tokens = torch.arange(1, self.text.shape[0], device=self.text.device)
        return self.evaluation_cached(lambda: self.item_vectors(self.text[1:], tokens))

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """states [M, d] -> cos(u, v) / tau [M, N] against every real item (the MoE under the caller's autocast)."""
        return cosine_logits(states, self.candidates(), self.settings.temperature)

    # ------------------------------------------------------------------ pre-training
    def augmented_view(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The hidden states [B, T, d] and lengths [B] of ONE augmented view of the batch (torch's generator)."""
        s = self.settings
        words = s.word_drop and self.text_worddrop is not None
        if words and float(torch.rand(())) >= s.item_drop_coefficient:
            text = word_drop_vectors(batch.history, batch.length, self.text, self.text_worddrop, s.item_drop_ratio)
            return self.hidden(ids(batch.history), batch.length, text), batch.length
        history, length = item_drop(batch.history, batch.length, 1.0 - s.item_drop_ratio)
        return self.hidden(ids(history), length), length

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        """{"loss": L_SI + lambda L_SS, "si", "ss"} of a batch of prefix rows (1-D targets), fresh draws."""
        if batch.target.dim() != 1:
            raise ValueError("UniSRec pre-trains on prefix rows: its in-batch negatives are the other rows")
        s = self.settings
        user = last_position(self.hidden(ids(batch.history), batch.length), batch.length)  # [B, d]
        target = self.item_vectors(self.text[ids(batch.target)], ids(batch.target))  # [B, d], its own draws
        view, view_length = self.augmented_view(batch)
        other = last_position(view, view_length)  # [B, d]
        labels = torch.arange(len(batch), device=user.device)
        with torch.autocast(user.device.type, enabled=False):
            u = F.normalize(user.float(), dim=-1)
            t = F.normalize(target.float(), dim=-1)
            o = F.normalize(other.float(), dim=-1)
            tau = s.temperature
            si = F.cross_entropy(same_target_logits(u @ t.T / tau, batch.target), labels)
            ss = F.cross_entropy(same_target_logits(u @ o.T / tau, batch.target), labels)
        return {"loss": si + s.sequence_loss_weight * ss, "si": si, "ss": ss}
