"""Assignment 3 (hidden tests). References: the plain-numpy loops below, and for the score
the reference package's forward pass on the same parameters (computed here, in the
grader's process)."""

import itertools

import numpy as np
import pytest


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_bt(r_a, r_b, p=1.0, mask=None):
    gap = np.asarray(r_a, float) - np.asarray(r_b, float)
    p = np.broadcast_to(np.asarray(p, float), gap.shape)
    nll = -(p * np_log_sigmoid(gap) + (1 - p) * np_log_sigmoid(-gap))
    mask = np.ones(gap.shape, bool) if mask is None else mask
    return (nll * mask).sum() / max(mask.sum(), 1)


def np_ranking(rewards, mask=None):
    B, K = rewards.shape
    mask = np.ones(B, bool) if mask is None else mask
    total, n = 0.0, 0
    for b in range(B):
        if mask[b]:
            for i, j in itertools.combinations(range(K), 2):
                total += -np_log_sigmoid(rewards[b, i] - rewards[b, j])
                n += 1
    return total / max(n, 1)


def test_bradley_terry__soft_labels_and_mask_against_numpy(sub):
    rng = np.random.default_rng(0)
    r_a, r_b = rng.normal(size=(2, 9)) * 3
    p = rng.random(9)
    mask = rng.random(9) < 0.6
    sub.assert_close(sub.losses.bradley_terry_loss(r_a, r_b, p, mask),
                               np_bt(r_a, r_b, p, mask), rtol=1e-5)
    sub.assert_close(sub.losses.bradley_terry_loss(r_a, r_b), np_bt(r_a, r_b),
                               rtol=1e-5)
    sub.assert_close(sub.losses.bradley_terry_loss(r_a, r_b, 0.8),
                               np_bt(r_a, r_b, 0.8), rtol=1e-5)  # one scalar label
    sub.assert_close(sub.losses.bradley_terry_loss(r_a, r_b, 0.5), np_bt(r_a, r_b, 0.5),
                               rtol=1e-5)  # p = 1/2: symmetric in a and b


def test_bradley_terry__two_dimensional_and_fully_masked(sub):
    rng = np.random.default_rng(5)
    r_a, r_b = rng.normal(size=(2, 3, 4))
    mask = rng.random((3, 4)) < 0.5
    sub.assert_close(sub.losses.bradley_terry_loss(r_a, r_b, 1.0, mask),
                               np_bt(r_a, r_b, 1.0, mask), rtol=1e-5)
    # Nothing counts: the loss is 0 (not nan), and so is its gradient.
    none = np.zeros(4, bool)
    loss, grad = sub.run(_bt_value_and_grad, r_a[0], r_b[0], none)
    assert float(loss) == 0.0 and np.all(grad == 0.0)


def _bt_value_and_grad(r_a, r_b, mask):
    import jax

    from minirlhf.losses import bradley_terry_loss

    return jax.value_and_grad(lambda a: bradley_terry_loss(a, r_b, 1.0, mask))(r_a)


def test_bradley_terry__gradient_and_large_gaps(sub):
    r_a = np.asarray([1000.0, -1000.0, 0.3], np.float32)
    r_b = np.asarray([-1000.0, 1000.0, 1.0], np.float32)
    loss, grad = sub.run(_bt_value_and_grad, r_a, r_b, np.ones(3, bool))
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))
    sub.assert_close(loss, (0.0 + 2000.0 - np_log_sigmoid(-0.7)) / 3, rtol=1e-4)
    # dL/dr_a = -(1 - sigma(gap)) / n per pair.
    gap = r_a.astype(float) - r_b
    sub.assert_close(grad, -(1 - 1 / (1 + np.exp(-gap))) / 3, rtol=1e-4, atol=1e-7)
    a, b = np.asarray([0.3, 2.0]), np.asarray([1.0, -0.5])
    sub.assert_close(sub.losses.bradley_terry_loss(a + 7.0, b + 7.0),
                               sub.losses.bradley_terry_loss(a, b), rtol=1e-5)


def _ranking_with_reference_bt(rewards, mask=None):
    """Your ranking_loss with the reference Bradley-Terry loss, so that this part is graded
    on its own."""
    import jax
    import jax.numpy as jnp

    import minirlhf.losses as losses

    def bt(r_a, r_b, prob_a=1.0, mask=None):
        gap = r_a - r_b
        nll = -(prob_a * jax.nn.log_sigmoid(gap) + (1 - prob_a) * jax.nn.log_sigmoid(-gap))
        m = jnp.ones(gap.shape, bool) if mask is None else mask
        return jnp.sum(jnp.where(m, nll, 0.0)) / jnp.maximum(jnp.sum(m), 1)

    saved = losses.bradley_terry_loss
    losses.bradley_terry_loss = bt
    try:
        return losses.ranking_loss(rewards, mask)
    finally:
        losses.bradley_terry_loss = saved


@pytest.mark.parametrize("K", [2, 3, 5])
def test_ranking__all_pairs_and_mask_against_numpy(sub, K):
    rng = np.random.default_rng(K)
    rewards = rng.normal(size=(5, K)) * 2
    mask = np.array([True, False, True, True, False])
    sub.assert_close(sub.run(_ranking_with_reference_bt, rewards),
                               np_ranking(rewards), rtol=1e-5)
    sub.assert_close(sub.run(_ranking_with_reference_bt, rewards, mask),
                               np_ranking(rewards, mask), rtol=1e-5)
    assert float(sub.run(_ranking_with_reference_bt, rewards, np.zeros(5, bool))) == 0.0


def test_ranking__order_matters(sub):
    r = np.asarray([[3.0, 2.0, 1.0], [0.0, 0.5, -4.0]], np.float32)
    forward, backward = (float(sub.run(_ranking_with_reference_bt, x))
                         for x in (r, r[:, ::-1].copy()))
    assert forward < backward
    sub.assert_close(forward, np_ranking(r), rtol=1e-5)
    sub.assert_close(backward, np_ranking(r[:, ::-1]), rtol=1e-5)


def _params(seed):
    """A reward model's parameters from the reference package (here, in the grader)."""
    import jax

    from minirlhf.model import ModelConfig, init_model

    cfg = ModelConfig(vocab_size=10, max_len=8, d_model=16, n_heads=2, n_layers=2,
                      scalar_head=True)
    graphdef, params = init_model(cfg, jax.random.key(seed))
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [np.asarray(x + 0.3 * jax.random.normal(k, x.shape, x.dtype))
              for x, k in zip(leaves, keys)]
    return graphdef, jax.tree.unflatten(jax.tree.structure(params), leaves), leaves


def _reference_scores(seed, tokens, mask):
    import jax
    import jax.numpy as jnp

    from minirlhf.model import forward

    graphdef, params, _ = _params(seed)
    out = jax.jit(forward, static_argnums=0)(graphdef, params, jnp.asarray(tokens),
                                              jnp.asarray(mask))
    return np.asarray(out.scalar)


def _scores(leaves, tokens, mask):
    """Your forward's scalar (the score at each row's last real token), on the grader's
    parameters."""
    import jax

    from minirlhf.model import ModelConfig, forward, init_model

    cfg = ModelConfig(vocab_size=10, max_len=8, d_model=16, n_heads=2, n_layers=2,
                      scalar_head=True)
    graphdef, params = init_model(cfg, jax.random.key(0))
    params = jax.tree.unflatten(jax.tree.structure(params), list(leaves))
    return jax.jit(forward, static_argnums=0)(graphdef, params, tokens, mask).scalar


def test_last_token_score__left_right_and_no_padding_against_the_reference(sub):
    tokens = np.asarray([[0, 0, 3, 4, 5, 6], [3, 4, 5, 6, 0, 0], [1, 2, 3, 4, 5, 6],
                         [7, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 9]], np.int32)
    mask = tokens != 0
    _, _, leaves = _params(2)
    got = sub.run(_scores, leaves, tokens, mask)
    assert got.shape == (5,)
    sub.assert_close(got, _reference_scores(2, tokens, mask), rtol=1e-4, atol=1e-5)


def test_last_token_score__differs_between_prefixes(sub):
    tokens = np.asarray([[3, 4, 5, 6], [3, 4, 5, 6], [3, 4, 5, 6]], np.int32)
    mask = np.asarray([[True, True, True, True], [True, True, False, False],
                       [True, True, True, False]])
    _, _, leaves = _params(4)
    got = sub.run(_scores, leaves, tokens, mask)
    sub.assert_close(got, _reference_scores(4, tokens, mask), rtol=1e-4, atol=1e-5)
    assert len({round(float(x), 4) for x in got}) == 3
