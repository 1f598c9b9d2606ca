"""GAE and discounted returns against plain-Python loops, and hand-worked cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.advantages import discounted_returns, gae


def gae_loop(rewards, values, next_values, terminated, done, gamma, lam):
    """The textbook recursion, one environment at a time, in plain Python."""
    T, E = rewards.shape
    adv = np.zeros((T, E))
    for e in range(E):
        following = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, e] else next_values[t, e]
            delta = rewards[t, e] + gamma * bootstrap - values[t, e]
            following = delta + gamma * lam * (0.0 if done[t, e] else following)
            adv[t, e] = following
    return adv


def random_episode_data(seed, T=64, E=5):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(T, E))
    values = rng.normal(size=(T, E))
    next_values = rng.normal(size=(T, E))
    terminated = rng.random((T, E)) < 0.05
    truncated = (rng.random((T, E)) < 0.05) & ~terminated
    return rewards, values, next_values, terminated, terminated | truncated


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (0.5, 0.0), (1.0, 1.0)])
def test_gae_scan_equals_loop(gamma, lam):
    data = random_episode_data(int(gamma * 100 + lam * 10))
    adv, ret = gae(*map(jnp.asarray, data), gamma, lam)
    expected = gae_loop(*data, gamma, lam)
    np.testing.assert_allclose(adv, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, expected + data[1], rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_and_termination_does_not():
    # One step, reward 1, V(s) = 0, V(s') = 10, gamma 0.5.
    one = lambda x: jnp.asarray([[x]], jnp.float32)
    term = gae(one(1.0), one(0.0), one(10.0), one(True).astype(bool), one(True).astype(bool),
               0.5, 0.95)[0]
    trunc = gae(one(1.0), one(0.0), one(10.0), one(False).astype(bool),
                one(True).astype(bool), 0.5, 0.95)[0]
    assert float(term[0, 0]) == pytest.approx(1.0)  # r only: the future is worth 0
    assert float(trunc[0, 0]) == pytest.approx(1.0 + 0.5 * 10.0)  # r + gamma V(s')


def test_episode_end_cuts_the_advantage_sum():
    # Two steps; the first ends an episode (truncated). Its advantage must not see step 2.
    rewards = jnp.asarray([[1.0], [100.0]])
    values = jnp.zeros((2, 1))
    next_values = jnp.asarray([[2.0], [0.0]])
    terminated = jnp.asarray([[False], [True]])
    done = jnp.asarray([[True], [True]])
    adv, _ = gae(rewards, values, next_values, terminated, done, 0.9, 1.0)
    np.testing.assert_allclose(adv[:, 0], [1.0 + 0.9 * 2.0, 100.0], rtol=1e-6)
    # Without the cut (same data, no done flag on step 1) step 2 would leak in.
    adv_leak, _ = gae(rewards, values, next_values, terminated,
                      jnp.asarray([[False], [True]]), 0.9, 1.0)
    assert float(adv_leak[0, 0]) != pytest.approx(float(adv[0, 0]))


def test_gae_hand_computed_two_steps():
    # r = (1, 2), V = (0.5, 1.0), V(s'_0) = V(s_1) = 1.0, V(s'_1) = 3 (time limit at the end).
    # delta_1 = 2 + 0.9*3 - 1 = 3.7; delta_0 = 1 + 0.9*1 - 0.5 = 1.4;
    # A_1 = 3.7; A_0 = 1.4 + 0.9*0.8*3.7 = 4.064.
    adv, ret = gae(jnp.asarray([[1.0], [2.0]]), jnp.asarray([[0.5], [1.0]]),
                   jnp.asarray([[1.0], [3.0]]), jnp.zeros((2, 1), bool),
                   jnp.asarray([[False], [True]]), 0.9, 0.8)
    np.testing.assert_allclose(adv[:, 0], [4.064, 3.7], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [4.564, 4.7], rtol=1e-6)


def test_lambda_one_zero_values_gives_discounted_returns():
    rewards, _, _, terminated, done = random_episode_data(7)
    zeros = np.zeros_like(rewards)
    adv, _ = gae(*map(jnp.asarray, (rewards, zeros, zeros, terminated, done)), 0.97, 1.0)
    np.testing.assert_allclose(adv, discounted_returns(jnp.asarray(rewards), jnp.asarray(done),
                                                       0.97), rtol=1e-5, atol=1e-5)


def test_gae_jit_equals_eager_and_rejects_mismatched_shapes():
    data = tuple(map(jnp.asarray, random_episode_data(3)))
    eager = gae(*data, 0.99, 0.95)
    jitted = jax.jit(gae, static_argnums=(5, 6))(*data, 0.99, 0.95)
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(AssertionError):
        gae(data[0], data[1][:-1], *data[2:], 0.99, 0.95)
