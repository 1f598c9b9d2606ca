"""Assignment 1 (hidden tests). Reference values: plain-numpy loops below, and for the KV
cache the reference package's full forward pass on the same parameters (computed here, in
the grader's process)."""

import numpy as np
import pytest


def np_causal_mask(mask):
    B, T = mask.shape
    out = np.zeros((B, T, T), bool)
    for b in range(B):
        for t in range(T):
            for s in range(t + 1):
                out[b, t, s] = mask[b, s]
    return out


def np_filter(logits, temperature=1.0, top_k=0, top_p=1.0):
    """filter_logits by a loop: scale, keep the top k (ties kept), then the smallest set of
    the remaining tokens, most likely first, whose mass reaches top_p."""
    x = logits.astype(np.float64) / (temperature if temperature > 0 else 1.0)
    out = np.full_like(x, -np.inf)
    for b, row in enumerate(x):
        keep = np.isfinite(row)
        if 0 < top_k < len(row):
            keep &= row >= np.sort(row)[::-1][top_k - 1]
        if top_p < 1.0:
            z = np.where(keep, row, -np.inf)
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            order = sorted(range(len(row)), key=lambda j: -z[j])
            nucleus, mass = np.zeros(len(row), bool), 0.0
            for j in order:
                if mass >= top_p or not keep[j]:
                    break
                nucleus[j] = True
                mass += probs[j]
            cutoff = min(z[j] for j in range(len(row)) if nucleus[j])
            keep &= z >= cutoff
        out[b, keep] = row[keep]
    return out


def assert_filtered(got, want, msg=""):
    """Same support, the kept logits equal, and -inf (not any other value) elsewhere."""
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want), err_msg=msg)
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-5,
                               err_msg=msg)
    assert np.all(got[~np.isfinite(want)] == -np.inf), msg


def _filter(logits, temperature=1.0, top_k=0, top_p=1.0):
    from minirlhf.generate import SamplingConfig, filter_logits

    return filter_logits(logits, SamplingConfig(temperature=temperature, top_k=top_k,
                                                top_p=top_p))


def _jit_causal_mask(mask):
    import jax

    from minirlhf.model import causal_attention_mask

    return jax.jit(causal_attention_mask)(mask)


def test_causal_mask__left_and_right_padding_against_numpy(sub):
    rng = np.random.default_rng(0)
    mask = rng.random((4, 7)) < 0.7
    mask[0, :3] = False  # left padding
    mask[1, 5:] = False  # right padding
    mask[2] = True
    got = sub.model.causal_attention_mask(mask)
    assert got.shape == (4, 7, 7) and got.dtype == np.bool_
    np.testing.assert_array_equal(got, np_causal_mask(mask))


def test_causal_mask__one_token_and_under_jit(sub):
    np.testing.assert_array_equal(sub.model.causal_attention_mask(np.asarray([[True]])),
                                  [[[True]]])
    np.testing.assert_array_equal(sub.model.causal_attention_mask(np.asarray([[False]])),
                                  [[[False]]])
    mask = np.asarray([[False, True, True, True], [True, True, False, True]])
    np.testing.assert_array_equal(sub.run(_jit_causal_mask, mask), np_causal_mask(mask))


def _model_params(positions, seed):
    """A small model's parameters from the reference package (here, in the grader)."""
    import jax

    from minirlhf.model import ModelConfig, init_model

    cfg = ModelConfig(vocab_size=13, max_len=16, d_model=16, n_heads=2, n_layers=2,
                      positions=positions)
    graphdef, params = init_model(cfg, jax.random.key(seed))
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [np.asarray(x + 0.2 * jax.random.normal(k, x.shape, x.dtype))
              for x, k in zip(leaves, keys)]
    return graphdef, jax.tree.unflatten(jax.tree.structure(params), leaves), leaves


def _reference_logits(positions, seed, tokens, mask):
    """The reference package's full forward pass (no cache) on the same parameters."""
    import jax
    import jax.numpy as jnp

    from minirlhf.model import forward

    graphdef, params, _ = _model_params(positions, seed)
    full = jax.jit(forward, static_argnums=0)(graphdef, params, jnp.asarray(tokens),
                                               jnp.asarray(mask))
    return np.asarray(full.logits)


def _cached_logits(positions, leaves, tokens, mask, prefill):
    """Your forward_cached: `prefill` slots at once, then one token per step; the logits of
    every slot. The model's causal mask is the reference one here, so this part is graded on
    its own; the parameters are the grader's."""
    import jax
    import jax.numpy as jnp

    import minirlhf.model as model_module
    from minirlhf.model import (ModelConfig, forward_cached, init_cache, init_model,
                                positions_from_mask)

    def reference_mask(m):
        T = m.shape[-1]
        return jnp.tril(jnp.ones((T, T), bool))[None] & m[:, None, :]

    saved = model_module.causal_attention_mask
    model_module.causal_attention_mask = reference_mask
    try:
        cfg = ModelConfig(vocab_size=13, max_len=16, d_model=16, n_heads=2, n_layers=2,
                          positions=positions)
        graphdef, params = init_model(cfg, jax.random.key(0))
        params = jax.tree.unflatten(jax.tree.structure(params), list(leaves))
        B, T = tokens.shape
        pos = positions_from_mask(mask)
        cache = init_cache(cfg, B, T + 2)
        step = jax.jit(forward_cached, static_argnums=0)  # one compile per shape, not per op
        out = step(graphdef, params, tokens[:, :prefill], mask[:, :prefill],
                   pos[:, :prefill], cache, jnp.asarray(0))
        logits, cache = [out.logits], out.cache
        for t in range(prefill, T):
            out = step(graphdef, params, tokens[:, t:t + 1], mask[:, t:t + 1],
                       pos[:, t:t + 1], cache, jnp.asarray(t))
            logits.append(out.logits)
            cache = out.cache
        return jnp.concatenate(logits, axis=1), cache.valid
    finally:
        model_module.causal_attention_mask = saved


@pytest.mark.parametrize("positions,prefill", [("learned", 4), ("rope", 1), ("learned", 7)])
def test_kv_cache__padded_prefill_then_decode_equals_the_full_forward(sub, positions,
                                                                      prefill):
    rng = np.random.default_rng(4)
    tokens = rng.integers(0, 13, size=(3, 7)).astype(np.int32)
    mask = np.ones((3, 7), bool)
    mask[0, :2] = False  # left padding
    mask[2, 5:] = False  # right padding (after EOS)
    _, _, leaves = _model_params(positions, 3)
    got, valid = sub.run(_cached_logits, positions, leaves, tokens, mask, prefill)
    want = _reference_logits(positions, 3, tokens, mask)
    sub.assert_close(got[mask], want[mask], atol=2e-5)
    np.testing.assert_array_equal(valid[:, :7], mask)  # the cache knows which slots are real
    assert not valid[:, 7:].any()


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 0.999])
def test_top_p__random_logits_against_numpy(sub, p):
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(6, 9)) * 2).astype(np.float32)
    assert_filtered(sub.run(_filter, logits, top_p=p), np_filter(logits, top_p=p))


def test_top_p__with_top_k_and_temperature_against_numpy(sub):
    rng = np.random.default_rng(2)
    logits = (rng.normal(size=(8, 12)) * 1.5).astype(np.float32)
    for temperature, top_k, top_p in [(1.0, 5, 0.9), (0.5, 3, 0.6), (2.0, 8, 0.5),
                                      (0.7, 2, 0.999), (1.0, 12, 0.4)]:
        got = sub.run(_filter, logits, temperature=temperature, top_k=top_k, top_p=top_p)
        assert_filtered(got, np_filter(logits, temperature, top_k, top_p),
                        f"T={temperature} k={top_k} p={top_p}")


def test_top_p__by_hand_edges(sub):
    logits = np.asarray([[1.0, 3.0, 2.0]], np.float32)
    # A tiny p keeps only the most likely token.
    np.testing.assert_array_equal(np.isfinite(sub.run(_filter, logits, top_p=0.01)),
                                  [[False, True, False]])
    # Temperature comes first: at 0.5 the top token's mass is 0.867 (0.665 at 1).
    x = sub.run(_filter, logits, temperature=0.5, top_p=0.8)
    np.testing.assert_array_equal(np.isfinite(x), [[False, True, False]])
    sub.assert_close(x[0, 1], 6.0)
    # Mass exactly at p after the first token: the first alone reaches it.
    half = np.log(np.asarray([[0.5, 0.25, 0.25]], np.float32))
    np.testing.assert_array_equal(np.isfinite(sub.run(_filter, half, top_p=0.5)),
                                  [[True, False, False]])
    # Equal logits at the cut-off are all kept (ties), and one row does not affect another.
    tied = np.asarray([[2.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 5.0]], np.float32)
    np.testing.assert_array_equal(np.isfinite(sub.run(_filter, tied, top_p=0.75)),
                                  np.isfinite(np_filter(tied, top_p=0.75)))
    # top_k first, then top_p among the k kept: renormalised, the top 2 have 0.571 and
    # 0.429, so p = 0.5 keeps the first alone (on the raw probabilities 0.4 < 0.5 would not).
    four = np.log(np.asarray([[0.4, 0.3, 0.2, 0.1]], np.float32))
    np.testing.assert_array_equal(np.isfinite(sub.run(_filter, four, top_k=2, top_p=0.5)),
                                  [[True, False, False, False]])
