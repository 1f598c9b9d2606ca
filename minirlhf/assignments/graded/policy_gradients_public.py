"""Assignment 2 (public tests): GAE, the clipped surrogate.

Every call into your code goes through the `sub` fixture: `sub.advantages.gae(...)` calls
`minirlhf.advantages.gae` with JAX arrays, and `sub.run(f, ...)` runs the function `f` (which
imports what it uses) where your code runs. Results come back as numpy arrays.
"""

import numpy as np
import pytest


def _one(x, dtype=np.float32):
    return np.asarray([[x]], dtype)


def test_gae__termination_does_not_bootstrap_truncation_does(sub):
    # One step, reward 1, V(s) = 0, V(s') = 10, gamma 0.5.
    term, _ = sub.advantages.gae(_one(1.0), _one(0.0), _one(10.0), _one(True, bool),
                                 _one(True, bool), 0.5, 0.9)
    trunc, _ = sub.advantages.gae(_one(1.0), _one(0.0), _one(10.0), _one(False, bool),
                                  _one(True, bool), 0.5, 0.9)
    assert float(term[0, 0]) == pytest.approx(1.0)
    assert float(trunc[0, 0]) == pytest.approx(6.0)


def test_clipped_surrogate__by_hand(sub):
    logp = np.log(np.asarray([1.5, 1.5, 0.5, 0.5], np.float32))
    adv = np.asarray([1.0, -1.0, 1.0, -1.0], np.float32)
    s = sub.losses.clipped_surrogate(logp, np.zeros(4, np.float32), adv, 0.2)
    # ratio 1.5, A > 0: clipped to 1.2; A < 0: min(-1.5, -1.2) = -1.5;
    # ratio 0.5, A > 0: min(0.5, 0.8) = 0.5; A < 0: min(-0.5, -0.8) = -0.8.
    sub.assert_close(s, [1.2, -1.5, 0.5, -0.8], rtol=1e-6)
