"""Assignment 2 (public tests): GAE, the clipped surrogate."""

import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.advantages import gae
from minirlhf.losses import clipped_surrogate


def _one(x, dtype=jnp.float32):
    return jnp.asarray([[x]], dtype)


def test_gae__termination_does_not_bootstrap_truncation_does():
    # One step, reward 1, V(s) = 0, V(s') = 10, gamma 0.5.
    term, _ = gae(_one(1.0), _one(0.0), _one(10.0), _one(True, bool), _one(True, bool), 0.5, 0.9)
    trunc, _ = gae(_one(1.0), _one(0.0), _one(10.0), _one(False, bool), _one(True, bool), 0.5,
                   0.9)
    assert float(term[0, 0]) == pytest.approx(1.0)
    assert float(trunc[0, 0]) == pytest.approx(6.0)


def test_clipped_surrogate__by_hand():
    logp = jnp.log(jnp.asarray([1.5, 1.5, 0.5, 0.5]))
    adv = jnp.asarray([1.0, -1.0, 1.0, -1.0])
    s = clipped_surrogate(logp, jnp.zeros(4), adv, 0.2)
    # ratio 1.5, A > 0: clipped to 1.2; A < 0: min(-1.5, -1.2) = -1.5;
    # ratio 0.5, A > 0: min(0.5, 0.8) = 0.5; A < 0: min(-0.5, -0.8) = -0.8.
    np.testing.assert_allclose(s, [1.2, -1.5, 0.5, -0.8], rtol=1e-6)
