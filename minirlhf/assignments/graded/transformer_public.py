"""Assignment 1 (public tests): causal attention mask, KV-cached step, top-p.

Every call into your code goes through the `sub` fixture: `sub.model.causal_attention_mask(m)`
calls `minirlhf.model.causal_attention_mask` with JAX arrays, and `sub.run(f, ...)` runs the
function `f` (which imports what it uses) where your code runs. Results come back as numpy
arrays (a NamedTuple as a dict of its fields).
"""

import numpy as np


def test_causal_mask__by_hand(sub):
    mask = np.asarray([[True, True, False]])  # two real tokens, one PAD on the right
    expected = [[[1, 0, 0],
                 [1, 1, 0],
                 [1, 1, 0]]]
    got = sub.model.causal_attention_mask(mask)
    assert got.shape == (1, 3, 3) and got.dtype == np.bool_
    np.testing.assert_array_equal(got.astype(int), expected)


def _prefill_and_steps():
    """Logits of 5 tokens from one prefill, and from 5 one-token steps."""
    import jax
    import jax.numpy as jnp

    from minirlhf.model import ModelConfig, forward_cached, init_cache, init_model

    cfg = ModelConfig(vocab_size=11, max_len=16, d_model=16, n_heads=2, n_layers=1)
    graphdef, params = init_model(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 11)
    mask = jnp.ones((2, 5), bool)
    positions = jnp.broadcast_to(jnp.arange(5), (2, 5))
    step = jax.jit(forward_cached, static_argnums=0)
    prefill = step(graphdef, params, tokens, mask, positions, init_cache(cfg, 2, 8),
                   jnp.asarray(0)).logits
    cache, steps = init_cache(cfg, 2, 8), []
    for t in range(5):
        out = step(graphdef, params, tokens[:, t:t + 1], mask[:, t:t + 1],
                   positions[:, t:t + 1], cache, jnp.asarray(t))
        cache = out.cache
        steps.append(out.logits[:, 0])
    return prefill, jnp.stack(steps, axis=1)


def test_kv_cache__prefill_equals_one_token_at_a_time(sub):
    prefill, steps = sub.run(_prefill_and_steps)
    sub.assert_close(steps, prefill, atol=1e-5)


def _filter(logits, temperature=1.0, top_k=0, top_p=1.0):
    from minirlhf.generate import SamplingConfig, filter_logits

    return filter_logits(logits, SamplingConfig(temperature=temperature, top_k=top_k,
                                                top_p=top_p))


def test_top_p__keeps_the_token_that_crosses_the_threshold(sub):
    logits = np.log(np.asarray([[0.5, 0.3, 0.15, 0.05]], np.float32))
    x = sub.run(_filter, logits, top_p=0.7)
    # 0.5 < 0.7, so the nucleus needs the next token too: {0.5, 0.3}.
    np.testing.assert_array_equal(np.isfinite(x), [[True, True, False, False]])
