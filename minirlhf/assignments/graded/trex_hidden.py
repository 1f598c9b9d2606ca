"""Assignment 6 (hidden tests). Reference: the plain-numpy loop below."""

import numpy as np


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_snippet_loss(ra, rb, ma, mb, p=1.0):
    B = len(ra)
    p = np.broadcast_to(np.asarray(p, float), (B,))
    total = 0.0
    for i in range(B):
        gap = sum(ra[i, t] for t in range(ra.shape[1]) if ma[i, t]) - \
            sum(rb[i, t] for t in range(rb.shape[1]) if mb[i, t])
        total += -(p[i] * np_log_sigmoid(gap) + (1 - p[i]) * np_log_sigmoid(-gap))
    return total / B


def _snippets(seed, B=5, Ta=7, Tb=7):
    rng = np.random.default_rng(seed)
    ra, rb = rng.normal(size=(B, Ta)) + 0.5, rng.normal(size=(B, Tb)) - 0.5
    ma = np.arange(Ta)[None, :] < rng.integers(1, Ta + 1, size=B)[:, None]
    mb = np.arange(Tb)[None, :] < rng.integers(1, Tb + 1, size=B)[:, None]
    return ra, rb, ma, mb


def test_snippet_loss__masks_and_soft_labels_against_numpy(sub):
    ra, rb, ma, mb = _snippets(0)
    for p in (1.0, 0.8, 0.0):
        sub.assert_close(sub.losses.trajectory_preference_loss(ra, rb, ma, mb, p),
                                   np_snippet_loss(ra, rb, ma, mb, p), rtol=1e-5)
    p = np.random.default_rng(1).random(5)  # one label per pair
    sub.assert_close(sub.losses.trajectory_preference_loss(ra, rb, ma, mb, p),
                               np_snippet_loss(ra, rb, ma, mb, p), rtol=1e-5)


def test_snippet_loss__snippets_of_different_lengths_and_an_empty_one(sub):
    ra, rb, ma, mb = _snippets(2, Ta=4, Tb=9)
    mb[0] = False  # an empty snippet sums to 0
    sub.assert_close(sub.losses.trajectory_preference_loss(ra, rb, ma, mb),
                               np_snippet_loss(ra, rb, ma, mb), rtol=1e-5)


def _snippet_grad(ra, rb, ma, mb):
    import jax

    from minirlhf.losses import trajectory_preference_loss

    return jax.grad(lambda a, b: trajectory_preference_loss(a, b, ma, mb), argnums=(0, 1))(
        ra, rb)


def test_snippet_loss__gradient_is_zero_off_the_masks(sub):
    ra, rb, ma, mb = _snippets(3)
    ga, gb = sub.run(_snippet_grad, ra, rb, ma, mb)
    assert np.all(ga[~ma] == 0.0) and np.all(gb[~mb] == 0.0)
    gap = (ra * ma).sum(1) - (rb * mb).sum(1)
    dgap = -(1 - 1 / (1 + np.exp(-gap))) / len(gap)  # d loss / d gap, per pair
    sub.assert_close(ga, np.where(ma, dgap[:, None], 0.0), rtol=1e-4, atol=1e-7)
    sub.assert_close(gb, np.where(mb, -dgap[:, None], 0.0), rtol=1e-4, atol=1e-7)
