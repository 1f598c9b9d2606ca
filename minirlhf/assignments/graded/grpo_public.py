"""Assignment 5 (public tests): group advantages, the GRPO loss."""

import jax.numpy as jnp
import numpy as np

from minirlhf.advantages import group_advantages
from minirlhf.losses import grpo_loss


def test_group_advantages__by_hand():
    r = jnp.asarray([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    # mean 0.5, sample std sqrt(1/3): +-0.866; the flat group gets 0.
    np.testing.assert_allclose(group_advantages(r, "grpo"),
                               [[0.8660254, -0.8660254, -0.8660254, 0.8660254], [0, 0, 0, 0]],
                               rtol=1e-5)


def test_grpo_loss__ratio_one_no_kl_is_minus_the_mean_advantage():
    logp = jnp.zeros((2, 3))
    mask = jnp.asarray([[True, True, False], [True, True, True]])
    loss = grpo_loss(logp, logp, logp, jnp.asarray([1.0, -3.0]), mask, 0.2)
    np.testing.assert_allclose(loss, -(1.0 - 3.0) / 2, rtol=1e-6)
