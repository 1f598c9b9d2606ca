"""Running statistics for observation normalisation and reward scaling."""

import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.normalize import (init_reward_scaler, init_stats, normalize, scale_rewards,
                                update_stats)


def test_running_stats_equal_statistics_of_everything_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (5, 17, 1, 40)]
    stats = init_stats((3,))
    for b in batches:
        stats = update_stats(stats, jnp.asarray(b))
    everything = np.concatenate(batches)
    # The initial pseudo-count of 1e-4 (mean 0, var 1) barely moves the result.
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-4, atol=1e-4)
    z = normalize(stats, jnp.asarray(everything))
    np.testing.assert_allclose(np.asarray(z).mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.asarray(z).std(0), 1.0, atol=1e-3)
    assert float(jnp.max(normalize(stats, jnp.full((1, 3), 1e6), clip=5.0))) == 5.0


def test_reward_scaling_divides_by_the_std_of_the_discounted_return():
    # Constant reward 1 in one environment, gamma 0.5: the running return is 1, 1.5, 1.75, ...
    scaler = init_reward_scaler(1)
    returns = []
    for _ in range(6):
        scaled, scaler = scale_rewards(scaler, jnp.ones(1), jnp.zeros(1, bool), 0.5)
        returns.append(float(scaler.ret[0]))
    np.testing.assert_allclose(returns, [2 - 0.5 ** k for k in range(6)], rtol=1e-6)
    expected_std = np.sqrt(np.var(returns))
    assert float(scaled[0]) == pytest.approx(1.0 / expected_std, rel=1e-2)
    # The return restarts after an episode end.
    _, scaler = scale_rewards(scaler, jnp.ones(1), jnp.ones(1, bool), 0.5)
    assert float(scaler.ret[0]) == 0.0
