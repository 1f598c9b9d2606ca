"""Assignment 6 (public tests): T-REX's snippet loss."""

import jax.numpy as jnp
import numpy as np

from minirlhf.losses import bradley_terry_loss, trajectory_preference_loss


def test_snippet_loss__is_bradley_terry_on_the_sums():
    a = jnp.asarray([[1.0, 2.0, 3.0]])
    b = jnp.asarray([[0.5, 0.5, 0.5]])
    full = jnp.ones((1, 3), bool)
    np.testing.assert_allclose(trajectory_preference_loss(a, b, full, full),
                               bradley_terry_loss(jnp.asarray([6.0]), jnp.asarray([1.5])),
                               rtol=1e-6)
