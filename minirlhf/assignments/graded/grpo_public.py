"""Assignment 5 (public tests): group advantages, the GRPO loss.

Every call into your code goes through the `sub` fixture: `sub.losses.grpo_loss(...)` calls
`minirlhf.losses.grpo_loss` with JAX arrays, and `sub.run(f, ...)` runs the function `f`
(which imports what it uses) where your code runs. Results come back as numpy arrays.
"""

import numpy as np


def test_group_advantages__by_hand(sub):
    r = np.asarray([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    # mean 0.5, sample std sqrt(1/3): +-0.866; the flat group gets 0.
    sub.assert_close(sub.advantages.group_advantages(r, "grpo"),
                               [[0.8660254, -0.8660254, -0.8660254, 0.8660254], [0, 0, 0, 0]],
                               rtol=1e-5)


def test_grpo_loss__ratio_one_no_kl_is_minus_the_mean_advantage(sub):
    logp = np.zeros((2, 3), np.float32)
    mask = np.asarray([[True, True, False], [True, True, True]])
    loss = sub.losses.grpo_loss(logp, logp, logp, np.asarray([1.0, -3.0], np.float32), mask,
                                0.2)
    sub.assert_close(loss, -(1.0 - 3.0) / 2, rtol=1e-6)
