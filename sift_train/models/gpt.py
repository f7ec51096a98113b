"""GPT-style decoder (paper §5, Tables 13-14), built from ``nn.Linear`` layers so that every
projection can be transformed by :func:`sift_train.sparse_ift`.

Pre-norm blocks: ``x + attn(LN(x))``, ``x + mlp(LN(x))``; attention has separate ``q``/``k``/``v``
projections ``d_model -> n_head * d_head`` and ``proj`` back, causal
``F.scaled_dot_product_attention``; the MLP is ``fc`` (``d_model -> d_ff``), GELU, ``proj``; learned
position embeddings, a final LayerNorm and an ``lm_head`` tied to the token embedding (GPT-3 Small then
has 125M parameters, Table 13).

Sparse Wide widens ``d_model`` and ``d_ff`` by ``k`` (:func:`sift_train.widths.scaled_transformer_widths`)
while heads and head size stay 12 x 64 (Table 14), so ``gpt`` is a factory
``width_multiplier -> nn.Module``::

    model = sparse_ift(lambda k: gpt("gpt3-small", width_multiplier=k), "wide", 0.5, ids,
                       layers=["blocks.*"])        # d_model 1092, d_ff 4344
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..widths import scaled_transformer_widths


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 256
    block_size: int = 64  # context length
    n_layer: int = 2
    n_head: int = 4
    d_head: int = 16
    d_model: int = 64
    d_ff: int = 256


#: Paper Table 14 (dense row): 12 layers, d_model 768, d_ff 3072, 12 heads of 64; context 2048 (App. D.1);
#: GPT-2 BPE vocabulary (50,257).
CONFIGS = {
    "tiny": GPTConfig(),
    "gpt3-small": GPTConfig(vocab_size=50257, block_size=2048, n_layer=12, n_head=12, d_head=64,
                            d_model=768, d_ff=3072),
}


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_head: int):
        super().__init__()
        inner = n_head * d_head
        self.n_head = n_head
        self.q, self.k, self.v = (nn.Linear(d_model, inner) for _ in range(3))
        self.proj = nn.Linear(inner, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (m(x).view(b, t, self.n_head, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.fc, self.proj = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg.d_model, cfg.n_head, cfg.d_head)
        self.mlp = MLP(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """``(B, T)`` token ids -> ``(B, T, vocab_size)`` logits."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(f"gpt: sequence length {t} exceeds the context {self.config.block_size}")
        x = self.wte(idx) + self.wpe(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def gpt(config: str | GPTConfig = "tiny", width_multiplier: float = 1.0, *,
        device: torch.device | str | None = None, **overrides) -> GPT:
    """GPT of ``config`` (``"tiny"``, ``"gpt3-small"`` or a :class:`GPTConfig`; ``overrides`` replace
    fields) with ``d_model``/``d_ff`` widened by ``width_multiplier`` (heads and head size kept)."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown GPT config {config!r}; expected one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    cfg = replace(config, **overrides)
    d_model, d_ff = scaled_transformer_widths(cfg.d_model, cfg.n_head, cfg.d_ff, width_multiplier)
    with torch.device(device or "cpu"):
        return GPT(replace(cfg, d_model=d_model, d_ff=d_ff))
