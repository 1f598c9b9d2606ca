"""Assignment 6 (hidden tests). Reference: the plain-numpy function below."""

import jax.numpy as jnp
import numpy as np

from minirlhf.losses import trajectory_preference_loss


def np_snippet_loss(ra, rb, ma, mb, p):
    gap = (ra * ma).sum(1) - (rb * mb).sum(1)
    ls = lambda x: -np.logaddexp(0.0, -x)
    return np.mean(-(p * ls(gap) + (1 - p) * ls(-gap)))


def test_snippet_loss__masks_and_soft_labels_against_numpy():
    rng = np.random.default_rng(0)
    ra, rb = rng.normal(size=(2, 5, 7))
    ma = np.arange(7)[None, :] < rng.integers(1, 8, size=5)[:, None]
    mb = np.arange(7)[None, :] < rng.integers(1, 8, size=5)[:, None]
    for p in (1.0, 0.8):
        got = trajectory_preference_loss(jnp.asarray(ra), jnp.asarray(rb), jnp.asarray(ma),
                                         jnp.asarray(mb), p)
        np.testing.assert_allclose(got, np_snippet_loss(ra, rb, ma, mb, p), rtol=1e-5)
