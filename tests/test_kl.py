"""KL estimators k1/k2/k3 against the exact KL, and the two KL controllers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.distributions import categorical_kl, kl_estimate
from minirlhf.rlhf import (AdaptiveKLController, FixedKLController, RLHFConfig, along_path,
                           best_of_n_curve, best_of_n_kl, best_of_n_sizes, kl_controller)

P = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
Q = jnp.log(jnp.array([0.25, 0.25, 0.25, 0.25]))


def test_categorical_kl_by_hand():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    want = float(np.sum(p * np.log(p / 0.25)))
    assert float(categorical_kl(P, Q)) == pytest.approx(want, rel=1e-6)
    assert float(categorical_kl(P, P)) == pytest.approx(0.0, abs=1e-7)


def test_k3_and_k2_are_never_negative_k1_can_be():
    log_ratio = jnp.linspace(-8.0, 8.0, 1001)
    zero = jnp.zeros_like(log_ratio)
    assert float(kl_estimate(zero, log_ratio, "k3").min()) >= 0.0
    assert float(kl_estimate(zero, log_ratio, "k2").min()) >= 0.0
    assert float(kl_estimate(zero, log_ratio, "k1").min()) < 0.0


@pytest.mark.parametrize("kind", ["k1", "k3"])
def test_k1_and_k3_are_unbiased_on_a_categorical(kind):
    n = 400_000
    a = jax.random.categorical(jax.random.key(0), P, shape=(n,))  # samples of pi = P
    est = kl_estimate(P[a], Q[a], kind)  # estimates KL(P || Q)
    exact = float(categorical_kl(P, Q))
    stderr = float(jnp.std(est)) / np.sqrt(n)
    assert abs(float(est.mean()) - exact) < 4 * stderr, (float(est.mean()), exact, stderr)


def test_k3_has_lower_variance_than_k1_and_k2_is_biased():
    a = jax.random.categorical(jax.random.key(1), P, shape=(200_000,))
    k1, k2, k3 = (kl_estimate(P[a], Q[a], k) for k in ("k1", "k2", "k3"))
    assert float(jnp.var(k3)) < float(jnp.var(k1))
    exact = float(categorical_kl(P, Q))
    # k2's bias here is far beyond its sampling error.
    assert abs(float(k2.mean()) - exact) > 10 * float(jnp.std(k2)) / np.sqrt(k2.size)


def test_unknown_estimator_is_a_clear_error():
    with pytest.raises(ValueError, match="'k4'"):
        kl_estimate(jnp.zeros(2), jnp.zeros(2), "k4")


def test_fixed_controller_keeps_beta():
    ctl = FixedKLController()
    assert float(ctl.update(jnp.float32(0.05), jnp.float32(100.0), 64)) == pytest.approx(0.05)


@pytest.mark.parametrize("kl,factor", [
    (12.0, 1 + 0.2 * 64 / 1000),   # KL 4x the target: error clipped at +0.2, beta rises
    (3.3, 1 + 0.1 * 64 / 1000),    # 10 % above: proportional, beta rises
    (3.0, 1.0),                    # on target: unchanged
    (2.7, 1 - 0.1 * 64 / 1000),    # 10 % below: beta falls
    (0.0, 1 - 0.2 * 64 / 1000),    # far below: error clipped at -0.2, beta falls
])
def test_adaptive_controller_direction_and_clipped_amount(kl, factor):
    ctl = AdaptiveKLController(target=3.0, horizon=1000)
    new = float(ctl.update(jnp.float32(0.1), jnp.float32(kl), 64))
    assert new == pytest.approx(0.1 * factor, rel=1e-6)


def test_adaptive_controller_converges_towards_the_target_kl():
    """A toy world where the KL falls as beta rises: KL = 1 / beta."""
    ctl = AdaptiveKLController(target=4.0, horizon=200)
    beta = jnp.float32(1.0)
    for _ in range(300):
        beta = ctl.update(beta, 1.0 / beta, 64)
    assert float(1.0 / beta) == pytest.approx(4.0, rel=0.05)


def test_kl_controller_follows_the_config():
    assert isinstance(kl_controller(RLHFConfig()), FixedKLController)
    ctl = kl_controller(RLHFConfig(kl_control="adaptive", kl_target=2.0, kl_horizon=500))
    assert ctl == AdaptiveKLController(2.0, 500)


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(np.log(2) - 0.5)
    assert best_of_n_kl(16) == pytest.approx(np.log(16) - 15 / 16)


def test_best_of_n_curve_by_hand():
    assert best_of_n_sizes(16) == [1, 2, 4, 8, 16] and best_of_n_sizes(6) == [1, 2, 4, 6]
    assert best_of_n_sizes(1) == [1]
    score = np.array([[0.0, 5.0], [2.0, 1.0], [1.0, 9.0]])  # (3 draws, 2 prompts)
    gold = np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    curve = best_of_n_curve(score, gold, [1, 2, 3])
    assert curve[1] == {"kl": 0.0, "score": 2.5, "gold": 15.0}  # the first draw
    assert curve[2]["score"] == 3.5 and curve[2]["gold"] == 25.0  # draw 1 for p0, draw 0 for p1
    assert curve[3]["score"] == 5.5 and curve[3]["gold"] == 45.0  # draw 1 and draw 2
    assert curve[3]["kl"] == pytest.approx(best_of_n_kl(3))
    with pytest.raises(ValueError, match="must lie in 1..3"):
        best_of_n_curve(score, gold, [4])
    with pytest.raises(ValueError, match="must both be"):
        best_of_n_curve(score, gold[:2], [1])


def test_along_path_reads_a_path_at_a_kl():
    path = [(0.0, -1.0), (2.0, 1.0), (1.0, 5.0), (4.0, 2.0)]  # KL need not grow monotonically
    assert along_path(path, 1.0) == pytest.approx(0.0)  # first crossing, linear in between
    assert along_path(path, 3.0) == pytest.approx(3.0)  # on the segment (1, 5) -> (4, 2)
    assert along_path(path, -0.01) == -1.0  # a sampled KL just below zero: the start
    assert along_path(path, 5.0) is None  # never got that far


def test_best_of_n_kl_matches_the_exact_kl_without_ties():
    """For a distribution over many distinct outcomes ranked by a score, best-of-n's exact
    KL is close to log n - (n - 1) / n (it is exact in the continuous limit)."""
    m, n = 20_000, 8
    p = np.full(m, 1.0 / m)  # outcomes sorted by score, lowest first
    cdf = np.arange(1, m + 1) / m
    q = cdf ** n - (cdf - 1.0 / m) ** n  # P(best of n samples is outcome i)
    exact = float(np.sum(q * np.log(q / p)))
    assert exact == pytest.approx(best_of_n_kl(n), abs=1e-3)
