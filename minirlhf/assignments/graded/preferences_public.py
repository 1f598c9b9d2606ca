"""Assignment 3 (public tests): Bradley-Terry, the ranking loss, the reward model's score.

Every call into your code goes through the `sub` fixture: `sub.losses.ranking_loss(r)` calls
`minirlhf.losses.ranking_loss` with JAX arrays, and `sub.run(f, ...)` runs the function `f`
(which imports what it uses) where your code runs. Results come back as numpy arrays.
"""

import numpy as np
import pytest


def test_bradley_terry__by_hand(sub):
    # Rewards 1.23 (chosen) and 4.59 -> -log sigma(1.23 - 4.59) = 3.394;
    # the other way round, -log sigma(4.59 - 1.23) = 0.0341.
    loss = sub.losses.bradley_terry_loss(np.asarray([1.23]), np.asarray([4.59]))
    assert float(loss) == pytest.approx(3.3941, abs=1e-3)
    loss = sub.losses.bradley_terry_loss(np.asarray([4.59]), np.asarray([1.23]))
    assert float(loss) == pytest.approx(0.0341, abs=1e-3)


def test_ranking__two_items_is_the_pair_loss(sub):
    r = np.asarray([[2.0, 0.5], [-1.0, 1.0]], np.float32)
    # -mean(log sigma(1.5), log sigma(-2)) = (0.2014 + 2.1269) / 2
    assert float(sub.losses.ranking_loss(r)) == pytest.approx((0.201413 + 2.126928) / 2,
                                                              rel=1e-5)


def _padded_and_short_scores():
    import jax
    import jax.numpy as jnp

    from minirlhf.model import ModelConfig, forward, init_model

    cfg = ModelConfig(vocab_size=10, max_len=8, d_model=16, n_heads=2, n_layers=1,
                      scalar_head=True)
    graphdef, params = init_model(cfg, jax.random.key(0))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape),
                          params)  # the score head starts at zero: make it say something
    tokens = jnp.asarray([[1, 4, 5, 0, 0]])
    run = jax.jit(forward, static_argnums=0)  # one compile per shape, not one per op
    padded = run(graphdef, params, tokens, jnp.asarray([[True, True, True, False, False]]))
    short = run(graphdef, params, tokens[:, :3], jnp.ones((1, 3), bool))
    return padded.scalar, short.scalar


def test_last_token_score__right_padding_does_not_change_the_score(sub):
    padded, short = sub.run(_padded_and_short_scores)
    assert padded.shape == (1,)
    sub.assert_close(padded, short, rtol=1e-5, atol=1e-6)
