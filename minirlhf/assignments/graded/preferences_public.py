"""Assignment 3 (public tests): Bradley-Terry, ranking loss, the reward model's score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.losses import bradley_terry_loss, ranking_loss
from minirlhf.model import ModelConfig, forward, init_model


def test_bradley_terry__by_hand():
    # Rewards 1.23 (chosen) and 4.59 -> -log sigma(1.23 - 4.59) = 3.394;
    # the other way round, -log sigma(4.59 - 1.23) = 0.0341.
    assert float(bradley_terry_loss(jnp.asarray([1.23]), jnp.asarray([4.59]))) == \
        pytest.approx(3.3941, abs=1e-3)
    assert float(bradley_terry_loss(jnp.asarray([4.59]), jnp.asarray([1.23]))) == \
        pytest.approx(0.0341, abs=1e-3)


def test_ranking__two_items_is_the_pair_loss():
    r = jnp.asarray([[2.0, 0.5], [-1.0, 1.0]])
    assert float(ranking_loss(r)) == pytest.approx(float(bradley_terry_loss(r[:, 0], r[:, 1])),
                                                   rel=1e-6)


def test_last_token_score__right_padding_does_not_change_the_score():
    cfg = ModelConfig(vocab_size=10, max_len=8, d_model=16, n_heads=2, n_layers=1,
                      scalar_head=True)
    graphdef, params = init_model(cfg, jax.random.key(0))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape),
                          params)  # the score head starts at zero: make it say something
    tokens = jnp.asarray([[1, 4, 5, 0, 0]])
    padded = forward(graphdef, params, tokens, jnp.asarray([[True, True, True, False, False]]))
    short = forward(graphdef, params, tokens[:, :3], jnp.ones((1, 3), bool))
    assert padded.scalar.shape == (1,)
    np.testing.assert_allclose(padded.scalar, short.scalar, rtol=1e-5, atol=1e-6)
