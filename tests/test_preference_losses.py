"""The Bradley-Terry preference loss in its three forms: pairs, rankings, trajectory sums."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from minirlhf.losses import (bradley_terry_loss, ranking_loss, ranking_pairs,
                             trajectory_preference_loss)


def test_the_decks_worked_example_with_the_natural_log():
    # Deck "Large Language Models and RL from Human Feedback": chosen 1.23, rejected 4.59.
    # The slide's table prints softmax 0.0335 and loss 1.474: that is log10(1 / 0.0335).
    # Every library (and this one) uses the natural log: -ln sigma(1.23 - 4.59) = 3.394.
    loss = float(bradley_terry_loss(jnp.asarray([1.23]), jnp.asarray([4.59])))
    p_chosen = 1 / (1 + np.exp(4.59 - 1.23))
    assert p_chosen == pytest.approx(0.0335, abs=1e-4)  # 0.03357, printed truncated
    assert loss == pytest.approx(3.394, abs=5e-4)
    assert loss == pytest.approx(-np.log(p_chosen), rel=1e-6)
    assert -np.log10(p_chosen) == pytest.approx(1.474, abs=5e-4)  # the slide's number


def test_shift_invariance_and_symmetry():
    r_a = jax.random.normal(jax.random.key(0), (16,))
    r_b = jax.random.normal(jax.random.key(1), (16,))
    base = bradley_terry_loss(r_a, r_b)
    np.testing.assert_allclose(bradley_terry_loss(r_a + 7.5, r_b + 7.5), base, rtol=1e-6)
    # Swapping the alternatives and the label changes nothing.
    np.testing.assert_allclose(bradley_terry_loss(r_b, r_a, 0.0), base, rtol=1e-6)
    # p = 0.5 is symmetric in a and b.
    np.testing.assert_allclose(bradley_terry_loss(r_a, r_b, 0.5),
                               bradley_terry_loss(r_b, r_a, 0.5), rtol=1e-6)


def test_soft_labels_by_hand_and_gradient_check():
    # gap 1, p = 0.8: -(0.8 log sigma(1) + 0.2 log sigma(-1))
    expected = -(0.8 * np.log(1 / (1 + np.exp(-1))) + 0.2 * np.log(1 / (1 + np.exp(1))))
    got = float(bradley_terry_loss(jnp.asarray([1.0]), jnp.asarray([0.0]), 0.8))
    assert got == pytest.approx(expected, rel=1e-6)
    r = jax.random.normal(jax.random.key(2), (2, 8))
    check_grads(lambda a, b: bradley_terry_loss(a, b, 0.9), (r[0], r[1]), order=2,
                modes=["rev"], atol=1e-2, rtol=1e-2)
    # d/d r_a of -log sigma(r_a - r_b) is -(1 - sigma(gap)) / B.
    g = jax.grad(lambda a: bradley_terry_loss(a, jnp.zeros(2)))(jnp.asarray([0.0, 2.0]))
    np.testing.assert_allclose(g, -(1 - 1 / (1 + np.exp(-np.array([0.0, 2.0])))) / 2,
                               rtol=1e-6)


@pytest.mark.parametrize("gap", [1000.0, -1000.0])
def test_stable_at_huge_gaps(gap):
    a, b = jnp.asarray([gap]), jnp.asarray([0.0])
    loss = bradley_terry_loss(a, b)
    grad = jax.grad(lambda x: bradley_terry_loss(x, b))(a)
    assert np.isfinite(float(loss)) and np.isfinite(float(grad[0]))
    assert float(loss) == pytest.approx(max(0.0, -gap), abs=1e-3)  # softplus(-gap)
    assert abs(float(grad[0])) == pytest.approx(0.0 if gap > 0 else 1.0, abs=1e-6)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_ranking_expands_to_all_correctly_oriented_pairs(k):
    better, worse = map(np.asarray, ranking_pairs(k))
    assert len(better) == k * (k - 1) // 2
    assert set(zip(better.tolist(), worse.tolist())) == set(itertools.combinations(range(k), 2))
    assert np.all(better < worse)  # best first: a lower index is the better item


def test_ranking_loss_equals_mean_over_its_pairs_and_pair_form_for_k2():
    r = jax.random.normal(jax.random.key(3), (5, 4))
    pairs = [bradley_terry_loss(r[:, i], r[:, j]) for i, j in itertools.combinations(range(4), 2)]
    np.testing.assert_allclose(ranking_loss(r), np.mean(pairs), rtol=1e-6)
    np.testing.assert_allclose(ranking_loss(r[:, :2]), bradley_terry_loss(r[:, 0], r[:, 1]),
                               rtol=1e-6)
    mask = jnp.asarray([True, False, True, False, True])
    np.testing.assert_allclose(ranking_loss(r, mask), ranking_loss(r[np.asarray(mask)]),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2 items"):
        ranking_pairs(1)


def test_trajectory_sums_coincide_with_pairs():
    # Snippets whose per-step rewards sum to r_a and r_b give the pair loss of r_a, r_b.
    steps_a = jax.random.normal(jax.random.key(4), (6, 5))
    steps_b = jax.random.normal(jax.random.key(5), (6, 7))
    mask_a = jnp.arange(5)[None] < jnp.asarray([5, 4, 3, 5, 1, 2])[:, None]
    mask_b = jnp.ones((6, 7), bool)
    got = trajectory_preference_loss(steps_a, steps_b, mask_a, mask_b)
    sums_a = jnp.sum(jnp.where(mask_a, steps_a, 0.0), axis=1)
    np.testing.assert_allclose(got, bradley_terry_loss(sums_a, steps_b.sum(1)), rtol=1e-6)
    # Steps outside the mask change nothing.
    noisy = jnp.where(mask_a, steps_a, 99.0)
    np.testing.assert_allclose(trajectory_preference_loss(noisy, steps_b, mask_a, mask_b), got,
                               rtol=1e-6)
