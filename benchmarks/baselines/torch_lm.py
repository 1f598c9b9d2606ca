"""A plain PyTorch GPT of the same architecture as minirlhf.model, as a CPU speed baseline.

Only benchmarks/bench_lm.py imports this file; torch is an optional extra
(``pip install -e ".[bench]"``), never a dependency of the package.

The model matches `minirlhf.model.Transformer` with learned positions and tied embeddings:
token + learned position embeddings, L pre-LayerNorm blocks of causal multi-head
self-attention (one fused qkv linear, `F.scaled_dot_product_attention(is_causal=True)`) and
a GELU MLP of width mlp_ratio * D (the tanh approximation, as `jax.nn.gelu` and GPT-2 use;
torch's default `nn.GELU()` is the exact erf form), a final LayerNorm and an LM head tied to the token
embedding. Training is next-token cross-entropy averaged over target tokens, AdamW
(decay on matrices only) after global-norm clipping at 1.0 -- the same work per step as
`minirlhf.lm_training.make_train_step`. It runs eagerly (no torch.compile), as a student's
first PyTorch GPT would.

Notation: B batch, T tokens, D model width, H heads, V vocabulary.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class TorchLMConfig:
    """The benchmark's model and batch (same meaning as minirlhf.model.ModelConfig)."""

    vocab_size: int = 45
    max_len: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    mlp_ratio: int = 4


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: TorchLMConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x):  # (B, T, D) -> (B, T, D)
        B, T, D = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).split(D, dim=-1)
        q, k, v = (a.view(B, T, H, D // H).transpose(1, 2) for a in (q, k, v))  # (B, H, T, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x)) (GPT-2)."""

    def __init__(self, cfg: TorchLMConfig):
        super().__init__()
        D = cfg.d_model
        self.ln1 = nn.LayerNorm(D)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(D)
        self.mlp = nn.Sequential(nn.Linear(D, cfg.mlp_ratio * D), nn.GELU(approximate="tanh"),
                                 nn.Linear(cfg.mlp_ratio * D, D))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TorchGPT(nn.Module):
    def __init__(self, cfg: TorchLMConfig):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_len, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        for m in self.modules():  # GPT-2 style: N(0, 0.02) matrices, zero biases
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, tokens):  # (B, T) int64 -> (B, T, V) logits
        T = tokens.shape[1]
        x = self.embed(tokens) + self.pos_embed(torch.arange(T, device=tokens.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.embed.weight.T  # tied LM head: h @ E^T


def make_train_step(model: TorchGPT, lr: float = 3e-3, weight_decay: float = 0.01,
                    grad_clip: float = 1.0):
    """One AdamW update on the mean next-token NLL over the target tokens."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))

    def step(tokens, loss_mask):
        logits = model(tokens)  # (B, T, V)
        nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                              tokens[:, 1:].reshape(-1), reduction="none")
        targets = loss_mask[:, 1:].reshape(-1).float()
        loss = (nll * targets).sum() / targets.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        return loss.detach()

    return step


def make_timer(cfg: TorchLMConfig, batch: int, seq: int, seed: int = 0):
    """Build the model, optimiser and a fixed batch of random tokens; return `run`.

    `run(n)` takes n training steps and returns their wall-clock seconds, so a caller can
    interleave torch and JAX measurements (fairer on a machine whose load changes).
    """
    if seq > cfg.max_len:
        raise ValueError(f"seq={seq} exceeds TorchLMConfig.max_len={cfg.max_len}")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(seed)
    model = TorchGPT(cfg)
    step = make_train_step(model)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq))
    loss_mask = torch.ones(batch, seq, dtype=torch.bool)

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            loss = step(tokens, loss_mask)
        float(loss)  # eager CPU ops are synchronous; this only makes sure the last one ran
        return time.perf_counter() - start

    return run


def train_tokens_per_second(cfg: TorchLMConfig, batch: int, seq: int, steps: int = 20,
                            warmup: int = 3, seed: int = 0) -> dict:
    """Train the torch GPT on random tokens; returns throughput in tokens per second.

    Args:
        cfg: the architecture. batch, seq: B and T of each step (T <= cfg.max_len).
        steps: timed steps; warmup: untimed steps first (allocator, thread pool).
    Returns:
        {"tokens_per_s": B*T / mean step time, "step_s": mean step time,
         "threads": torch's intra-op threads, "torch_version": ...}.
    """
    run = make_timer(cfg, batch, seq, seed)
    run(warmup)
    step_s = run(steps) / steps
    return {"tokens_per_s": batch * seq / step_s, "step_s": step_s,
            "threads": torch.get_num_threads(), "torch_version": torch.__version__}


if __name__ == "__main__":
    print(train_tokens_per_second(TorchLMConfig(), batch=64, seq=64))
