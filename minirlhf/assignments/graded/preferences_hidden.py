"""Assignment 3 (hidden tests). References: the plain-numpy functions below."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import minirlhf.losses as losses
from minirlhf.losses import bradley_terry_loss, ranking_loss
from minirlhf.model import ModelConfig, forward, init_model


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_bt(r_a, r_b, p=1.0, mask=None):
    gap = np.asarray(r_a, float) - np.asarray(r_b, float)
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


def _bt_reference(r_a, r_b, prob_a=1.0, mask=None):
    """A jnp Bradley-Terry loss, so that the ranking part is graded on its own."""
    gap = r_a - r_b
    nll = -(prob_a * jax.nn.log_sigmoid(gap) + (1 - prob_a) * jax.nn.log_sigmoid(-gap))
    m = jnp.ones(gap.shape, bool) if mask is None else mask
    return jnp.sum(jnp.where(m, nll, 0.0)) / jnp.maximum(jnp.sum(m), 1)


def test_bradley_terry__soft_labels_and_mask_against_numpy():
    rng = np.random.default_rng(0)
    r_a, r_b = rng.normal(size=(2, 9)) * 3
    p = rng.random(9)
    mask = rng.random(9) < 0.6
    got = bradley_terry_loss(jnp.asarray(r_a), jnp.asarray(r_b), jnp.asarray(p),
                             jnp.asarray(mask))
    np.testing.assert_allclose(got, np_bt(r_a, r_b, p, mask), rtol=1e-5)
    np.testing.assert_allclose(bradley_terry_loss(jnp.asarray(r_a), jnp.asarray(r_b)),
                               np_bt(r_a, r_b), rtol=1e-5)


def test_bradley_terry__large_gaps_stay_finite_and_shift_invariant():
    r_a, r_b = jnp.asarray([1000.0, -1000.0]), jnp.asarray([-1000.0, 1000.0])
    loss, grad = jax.value_and_grad(bradley_terry_loss)(r_a, r_b)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_allclose(loss, 1000.0, rtol=1e-4)
    a, b = jnp.asarray([0.3, 2.0]), jnp.asarray([1.0, -0.5])
    np.testing.assert_allclose(bradley_terry_loss(a + 7.0, b + 7.0), bradley_terry_loss(a, b),
                               rtol=1e-5)


def test_ranking__all_pairs_and_mask_against_numpy(monkeypatch):
    monkeypatch.setattr(losses, "bradley_terry_loss", _bt_reference)
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(5, 4))
    mask = np.array([True, False, True, True, False])
    np.testing.assert_allclose(ranking_loss(jnp.asarray(rewards)), np_ranking(rewards),
                               rtol=1e-5)
    np.testing.assert_allclose(ranking_loss(jnp.asarray(rewards), jnp.asarray(mask)),
                               np_ranking(rewards, mask), rtol=1e-5)


def test_ranking__order_matters(monkeypatch):
    monkeypatch.setattr(losses, "bradley_terry_loss", _bt_reference)
    r = jnp.asarray([[3.0, 2.0, 1.0]])
    assert float(ranking_loss(r)) < float(ranking_loss(r[:, ::-1]))
    np.testing.assert_allclose(ranking_loss(r), np_ranking(np.asarray(r)), rtol=1e-5)


def _scored_model():
    cfg = ModelConfig(vocab_size=10, max_len=8, d_model=16, n_heads=2, n_layers=2,
                      scalar_head=True)
    graphdef, params = init_model(cfg, jax.random.key(2))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    params = jax.tree.unflatten(tree, [x + 0.3 * jax.random.normal(k, x.shape, x.dtype)
                                       for x, k in zip(leaves, keys)])
    return graphdef, params


def test_last_token_score__left_and_right_padding_against_the_head():
    graphdef, params = _scored_model()
    tokens = jnp.asarray([[0, 0, 3, 4, 5, 6], [3, 4, 5, 6, 0, 0], [1, 2, 3, 4, 5, 6]])
    mask = tokens != 0
    out = forward(graphdef, params, tokens, mask)
    assert out.scalar.shape == (3,)
    head = nnx.merge(graphdef, params).score
    last = np.array([5, 3, 5])
    expected = head(out.hidden[jnp.arange(3), last])[:, 0]
    np.testing.assert_allclose(out.scalar, expected, rtol=1e-5, atol=1e-6)
    unpadded = forward(graphdef, params, jnp.asarray([[3, 4, 5, 6]]), jnp.ones((1, 4), bool))
    np.testing.assert_allclose(out.scalar[:2], [unpadded.scalar[0]] * 2, rtol=1e-4, atol=1e-5)


def test_last_token_score__differs_between_prefixes():
    graphdef, params = _scored_model()
    tokens = jnp.asarray([[3, 4, 5, 6], [3, 4, 5, 6]])
    mask = jnp.asarray([[True, True, True, True], [True, True, False, False]])
    out = forward(graphdef, params, tokens, mask)
    prefix = forward(graphdef, params, tokens[1:, :2], jnp.ones((1, 2), bool))
    np.testing.assert_allclose(out.scalar[1], prefix.scalar[0], rtol=1e-4, atol=1e-5)
    assert abs(float(out.scalar[0] - out.scalar[1])) > 1e-4
