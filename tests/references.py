"""Plain reference implementations the tests (and benchmarks) compare the fast code against."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from minirlhf.distributions import token_logprobs
from minirlhf.generate import Generation, SamplingConfig, pick_token, sampling_uniforms
from minirlhf.model import forward, last_real_index
from minirlhf.tokenizer import EOS_ID, PAD_ID


def _next_token(logits, mask, u, done, cfg: SamplingConfig):
    """One sampling step of both references: read the logits at each row's last real token,
    pick the next token with uniforms u, PAD it where the row is done.

    logits (B, T, V), mask (B, T), u (B,), done (B,) -> token, logprob, live: each (B,).
    """
    B = logits.shape[0]
    logits = logits[jnp.arange(B), last_real_index(mask)]  # (B, V) at the last real token
    live = ~done
    token = jnp.where(live, pick_token(u, logits, cfg), PAD_ID)
    return token, jnp.where(live, token_logprobs(logits, token), 0.0), live


@functools.lru_cache(maxsize=8)
def _jitted_forward(graphdef):
    """`forward`'s logits under one `jax.jit` per model, shared by every call (and test)."""
    return jax.jit(lambda p, t, m: forward(graphdef, p, t, m).logits)


def naive_generate(graphdef, params, prompt, prompt_mask, key, cfg: SamplingConfig,
                   forward_fn=None) -> Generation:
    """Generation without a KV cache: a full forward over the whole sequence for every new
    token, in a Python loop. Same random draws and sampling as `generate`.

    `forward_fn(params, tokens, mask) -> logits` is the full forward; by default `forward`
    under a plain `jax.jit` (compiled once per sequence length; run eagerly, every op of
    every step would compile anew for each new length, minutes for a test), one per model.
    """
    if forward_fn is None:
        forward_fn = _jitted_forward(graphdef)
    tokens, mask = jnp.asarray(prompt), jnp.asarray(prompt_mask, bool)
    B = tokens.shape[0]
    done = jnp.zeros((B,), bool)
    uniforms = sampling_uniforms(key, cfg.max_new_tokens, B)
    out_tokens, out_logprobs, out_mask = [], [], []
    for i in range(cfg.max_new_tokens):
        token, logprob, live = _next_token(forward_fn(params, tokens, mask), mask,
                                           uniforms[i], done, cfg)
        out_logprobs.append(logprob)
        out_tokens.append(token)
        out_mask.append(live)
        tokens = jnp.concatenate([tokens, token[:, None]], axis=1)
        mask = jnp.concatenate([mask, live[:, None]], axis=1)
        done = done | (token == EOS_ID)
    return Generation(tokens=jnp.stack(out_tokens, 1), logprobs=jnp.stack(out_logprobs, 1),
                      mask=jnp.stack(out_mask, 1), finished=done)


def naive_generate_scan(graphdef, params, prompt, prompt_mask, key,
                        cfg: SamplingConfig) -> Generation:
    """Generation without a KV cache, the whole loop in one jitted `lax.scan`.

    A jitted loop needs one shape for every step, so each step runs a full forward over a
    fixed (B, P + N) buffer: the prompt, the tokens sampled so far, and empty (masked) slots
    for those still to come -- what a cache-free sampler written like `generate` does. Same
    random draws and sampling as `generate`; token i is written at slot P + i. Meant to be
    jitted whole, with graphdef and cfg static.
    """
    B, P = prompt.shape
    N = cfg.max_new_tokens
    tokens = jnp.concatenate([prompt, jnp.full((B, N), PAD_ID, prompt.dtype)], axis=1)
    mask = jnp.concatenate([prompt_mask, jnp.zeros((B, N), bool)], axis=1)  # (B, P + N)

    def step(carry, xs):
        tokens, mask, done = carry
        i, u = xs
        logits = forward(graphdef, params, tokens, mask).logits  # (B, P + N, V)
        token, logprob, live = _next_token(logits, mask, u, done, cfg)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, P + i))
        mask = jax.lax.dynamic_update_slice(mask, live[:, None], (0, P + i))
        return (tokens, mask, done | (token == EOS_ID)), (token, logprob, live)

    (_, _, done), (tok, lp, live) = jax.lax.scan(
        step, (tokens, mask, jnp.zeros((B,), bool)),
        (jnp.arange(N), sampling_uniforms(key, N, B)))
    return Generation(tokens=tok.T, logprobs=lp.T, mask=live.T, finished=done)
