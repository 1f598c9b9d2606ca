"""Assignment 1 (hidden tests). Reference values come from the plain-numpy functions below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import minirlhf.model as model_module
from minirlhf.generate import SamplingConfig, filter_logits
from minirlhf.model import (ModelConfig, causal_attention_mask, forward, forward_cached,
                            init_cache, init_model, positions_from_mask)


def np_causal_mask(mask):
    B, T = mask.shape
    out = np.zeros((B, T, T), bool)
    for b in range(B):
        for t in range(T):
            for s in range(t + 1):
                out[b, t, s] = mask[b, s]
    return out


def np_top_p_support(logits, p):
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep, mass = np.zeros(len(probs), bool), 0.0
    for j in order:
        if mass >= p:
            break
        keep[j] = True
        mass += probs[j]
    return keep


def test_causal_mask__left_and_right_padding_against_numpy():
    rng = np.random.default_rng(0)
    mask = rng.random((4, 7)) < 0.7
    mask[0, :3] = False  # left padding
    mask[1, 5:] = False  # right padding
    np.testing.assert_array_equal(causal_attention_mask(jnp.asarray(mask)), np_causal_mask(mask))


def test_causal_mask__works_under_jit():
    mask = jnp.asarray([[False, True, True, True]])
    np.testing.assert_array_equal(jax.jit(causal_attention_mask)(mask),
                                  np_causal_mask(np.asarray(mask)))


@pytest.fixture
def reference_mask(monkeypatch):
    """`forward` with a reference causal mask, so the KV-cache part is graded on its own."""
    def mask_fn(mask):
        T = mask.shape[-1]
        return jnp.tril(jnp.ones((T, T), bool))[None] & mask[:, None, :]
    monkeypatch.setattr(model_module, "causal_attention_mask", mask_fn)


def _model(**kw):
    cfg = ModelConfig(vocab_size=13, max_len=16, d_model=16, n_heads=2, n_layers=2, **kw)
    return cfg, *init_model(cfg, jax.random.key(3))


def test_kv_cache__left_padded_prefill_then_decode_equals_forward(reference_mask):
    cfg, graphdef, params = _model()
    tokens = jax.random.randint(jax.random.key(4), (2, 7), 0, 13)
    mask = jnp.asarray([[False, False, True, True, True, True, True],
                        [True, True, True, True, True, True, True]])
    full = forward(graphdef, params, tokens, mask).logits  # (B, T, V)
    positions = positions_from_mask(mask)
    P = 4  # prefill the first 4 slots, then one token per step
    out = forward_cached(graphdef, params, tokens[:, :P], mask[:, :P], positions[:, :P],
                         init_cache(cfg, 2, 7), jnp.asarray(0))
    np.testing.assert_allclose(out.logits[1], full[1, :P], atol=1e-5)
    np.testing.assert_allclose(out.logits[0, 2:], full[0, 2:P], atol=1e-5)
    cache = out.cache
    for t in range(P, 7):
        out = forward_cached(graphdef, params, tokens[:, t:t + 1], mask[:, t:t + 1],
                             positions[:, t:t + 1], cache, jnp.asarray(t))
        cache = out.cache
        np.testing.assert_allclose(out.logits[:, 0], full[:, t], atol=1e-5)


def test_kv_cache__rope_decode_equals_forward(reference_mask):
    cfg, graphdef, params = _model(positions="rope")
    tokens = jax.random.randint(jax.random.key(5), (1, 5), 0, 13)
    mask = jnp.ones((1, 5), bool)
    full = forward(graphdef, params, tokens, mask).logits
    cache = init_cache(cfg, 1, 5)
    for t in range(5):
        out = forward_cached(graphdef, params, tokens[:, t:t + 1], mask[:, t:t + 1],
                             jnp.full((1, 1), t), cache, jnp.asarray(t))
        cache = out.cache
        np.testing.assert_allclose(out.logits[:, 0], full[:, t], atol=1e-5)


def test_top_p__random_logits_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 9)).astype(np.float32) * 2
    for p in (0.3, 0.6, 0.9):
        x = np.asarray(filter_logits(jnp.asarray(logits), SamplingConfig(temperature=1.0,
                                                                          top_p=p)))
        for row, lg in zip(x, logits):
            np.testing.assert_array_equal(np.isfinite(row), np_top_p_support(lg, p))
            kept = np.isfinite(row)
            np.testing.assert_allclose(row[kept], lg[kept], rtol=1e-6)


def test_top_p__tiny_p_keeps_the_most_likely_and_temperature_applies_first():
    logits = jnp.asarray([[1.0, 3.0, 2.0]])
    x = filter_logits(logits, SamplingConfig(temperature=1.0, top_p=0.01))
    np.testing.assert_array_equal(np.isfinite(np.asarray(x)), [[False, True, False]])
    # At temperature 0.5 the top token's mass is 0.867 (it is 0.665 at temperature 1).
    x = filter_logits(logits, SamplingConfig(temperature=0.5, top_p=0.8))
    np.testing.assert_array_equal(np.isfinite(np.asarray(x)), [[False, True, False]])
    np.testing.assert_allclose(np.asarray(x)[0, 1], 6.0)
