"""Assignment 4 (public tests): KL-shaped rewards, the adaptive KL controller, token GAE.

Every call into your code goes through the `sub` fixture: `sub.rollout.token_gae(...)` calls
`minirlhf.rollout.token_gae` with JAX arrays, and `sub.run(f, ...)` runs the function `f`
(which imports what it uses) where your code runs. Results come back as numpy arrays.
"""

import numpy as np
import pytest


def test_kl_rewards__by_hand(sub):
    logp = np.asarray([[-1.0, -2.0, -0.5]], np.float32)
    ref = np.asarray([[-1.5, -1.0, -0.5]], np.float32)
    mask = np.asarray([[True, True, False]])
    rewards, kl = sub.rollout.kl_shaped_rewards(logp, ref, np.asarray([3.0], np.float32),
                                                mask, 0.1)
    sub.assert_close(kl, [[0.5, -1.0, 0.0]], rtol=1e-6)
    sub.assert_close(rewards, [[-0.05, 0.1 + 3.0, 0.0]], rtol=1e-6)


def _controller_update(target, horizon, clip, beta, kl, n_steps):
    import jax.numpy as jnp

    from minirlhf.rlhf import AdaptiveKLController

    ctl = AdaptiveKLController(target=target, horizon=horizon, clip=clip)
    return ctl.update(jnp.asarray(beta, jnp.float32), jnp.asarray(kl, jnp.float32), n_steps)


def test_kl_controller__raises_beta_when_kl_is_above_target(sub):
    beta = sub.run(_controller_update, 6.0, 10_000, 0.2, 0.1, 9.0, 256)
    # error = clip(9 / 6 - 1, -0.2, 0.2) = 0.2; beta * (1 + 0.2 * 256 / 10000)
    assert float(beta) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000), rel=1e-6)


def test_token_gae__one_response_by_hand(sub):
    rewards = np.asarray([[0.0, 1.0, 0.0]], np.float32)
    values = np.asarray([[0.5, 0.25, 9.0]], np.float32)
    mask = np.asarray([[True, True, False]])
    adv, ret = sub.rollout.token_gae(rewards, values, mask, 1.0, 1.0)
    # gamma = lam = 1: A_t = (sum of rewards from t) - V(s_t); the end is after token 1.
    sub.assert_close(adv, [[0.5, 0.75, 0.0]], rtol=1e-6)
    sub.assert_close(ret, [[1.0, 1.0, 0.0]], rtol=1e-6)
