"""Assignment 6 (public tests): T-REX's snippet loss.

Every call into your code goes through the `sub` fixture: `sub.losses.trajectory_preference_loss(...)`
calls `minirlhf.losses.trajectory_preference_loss` with JAX arrays. Results come back as
numpy arrays.
"""

import numpy as np
import pytest


def test_snippet_loss__is_bradley_terry_on_the_sums(sub):
    a = np.asarray([[1.0, 2.0, 3.0]], np.float32)
    b = np.asarray([[0.5, 0.5, 0.5]], np.float32)
    full = np.ones((1, 3), bool)
    # sums 6 and 1.5: -log sigma(4.5) = 0.01105
    assert float(sub.losses.trajectory_preference_loss(a, b, full, full)) == \
        pytest.approx(0.011048, rel=1e-4)
