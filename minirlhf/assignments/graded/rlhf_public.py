"""Assignment 4 (public tests): KL-shaped rewards, the adaptive KL controller, token GAE."""

import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.rlhf import AdaptiveKLController
from minirlhf.rollout import kl_shaped_rewards, token_gae


def test_kl_rewards__by_hand():
    logp = jnp.asarray([[-1.0, -2.0, -0.5]])
    ref = jnp.asarray([[-1.5, -1.0, -0.5]])
    mask = jnp.asarray([[True, True, False]])
    rewards, kl = kl_shaped_rewards(logp, ref, jnp.asarray([3.0]), mask, 0.1)
    np.testing.assert_allclose(kl, [[0.5, -1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(rewards, [[-0.05, 0.1 + 3.0, 0.0]], rtol=1e-6)


def test_kl_controller__raises_beta_when_kl_is_above_target():
    ctl = AdaptiveKLController(target=6.0, horizon=10_000)
    beta = ctl.update(jnp.asarray(0.1), jnp.asarray(9.0), 256)
    # error = clip(9 / 6 - 1, -0.2, 0.2) = 0.2; beta * (1 + 0.2 * 256 / 10000)
    assert float(beta) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000), rel=1e-6)


def test_token_gae__one_response_by_hand():
    rewards = jnp.asarray([[0.0, 1.0, 0.0]])
    values = jnp.asarray([[0.5, 0.25, 9.0]])
    mask = jnp.asarray([[True, True, False]])
    adv, ret = token_gae(rewards, values, mask, 1.0, 1.0)
    # gamma = lam = 1: A_t = (sum of rewards from t) - V(s_t); the end is after token 1.
    np.testing.assert_allclose(adv, [[0.5, 0.75, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(ret, [[1.0, 1.0, 0.0]], rtol=1e-6)
