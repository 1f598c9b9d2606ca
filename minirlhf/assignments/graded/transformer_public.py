"""Assignment 1 (public tests): causal attention mask, KV-cached step, top-p."""

import jax
import jax.numpy as jnp
import numpy as np

from minirlhf.generate import SamplingConfig, filter_logits
from minirlhf.model import ModelConfig, forward_cached, init_cache, init_model


def test_causal_mask__by_hand():
    from minirlhf.model import causal_attention_mask

    mask = jnp.asarray([[True, True, False]])  # two real tokens, one PAD on the right
    expected = [[[1, 0, 0],
                 [1, 1, 0],
                 [1, 1, 0]]]
    got = causal_attention_mask(mask)
    assert got.shape == (1, 3, 3) and got.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(got, int), expected)


def test_kv_cache__prefill_equals_one_token_at_a_time():
    cfg = ModelConfig(vocab_size=11, max_len=16, d_model=16, n_heads=2, n_layers=1)
    graphdef, params = init_model(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 5), 0, 11)
    mask = jnp.ones((2, 5), bool)
    positions = jnp.broadcast_to(jnp.arange(5), (2, 5))
    prefill = forward_cached(graphdef, params, tokens, mask, positions, init_cache(cfg, 2, 8),
                             jnp.asarray(0)).logits
    cache = init_cache(cfg, 2, 8)
    for t in range(5):
        out = forward_cached(graphdef, params, tokens[:, t:t + 1], mask[:, t:t + 1],
                             positions[:, t:t + 1], cache, jnp.asarray(t))
        cache = out.cache
        np.testing.assert_allclose(out.logits[:, 0], prefill[:, t], atol=1e-5)


def test_top_p__keeps_the_token_that_crosses_the_threshold():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
    x = filter_logits(logits, SamplingConfig(temperature=1.0, top_p=0.7))
    # 0.5 < 0.7, so the nucleus needs the next token too: {0.5, 0.3}.
    np.testing.assert_array_equal(np.isfinite(np.asarray(x)), [[True, True, False, False]])
