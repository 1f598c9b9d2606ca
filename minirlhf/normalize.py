"""Running mean/variance for observation normalisation and reward scaling, as pure functions.

Both are among the PPO implementation details that matter on continuous control (Engstrom
et al. 2020, "Implementation Matters in Deep Policy Gradients"; Huang et al. 2022, "The 37
Implementation Details of PPO"). The statistics are a pytree, so the pure-JAX trainer keeps
them in its scan carry, and the gymnasium bridge keeps the same pytree on the host and
calls the same functions; a checkpoint saves them next to the policy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """Mean and variance of everything seen so far, over the leading (batch) axis.

    Attributes:
        mean: (...) running mean. var: (...) running (population) variance.
        count: () float32 number of samples seen (starts at a tiny epsilon, like baselines).
    """

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init_stats(shape: tuple[int, ...]) -> RunningStats:
    """Statistics of nothing seen yet: mean 0, variance 1."""
    return RunningStats(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32),
                        jnp.asarray(1e-4, jnp.float32))


def update_stats(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge a batch (N, ...) into the statistics (Chan et al. 1979, parallel variance)."""
    batch = jnp.asarray(batch, jnp.float32)
    n = jnp.asarray(batch.shape[0], jnp.float32)
    b_mean, b_var = jnp.mean(batch, axis=0), jnp.var(batch, axis=0)
    delta = b_mean - stats.mean
    total = stats.count + n
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + b_var * n + delta ** 2 * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0) -> jax.Array:
    """clip((x - mean) / sqrt(var + 1e-8), -clip, clip)."""
    z = (jnp.asarray(x, jnp.float32) - stats.mean) * jax.lax.rsqrt(stats.var + 1e-8)
    return jnp.clip(z, -clip, clip)


@struct.dataclass
class RewardScaler:
    """Scale rewards by the standard deviation of the discounted return (not the reward).

    The "reward scaling" of Engstrom et al. 2020 (gymnasium's NormalizeReward): keep a
    running discounted return G <- gamma * G + r per environment, track its variance, and
    divide each reward by its standard deviation. The mean is not subtracted: a shift would
    change which behaviour is optimal in a task with episode ends.

    Attributes:
        ret: (E,) the running discounted return of each environment.
        stats: RunningStats of those returns (scalar mean/var).
    """

    ret: jax.Array
    stats: RunningStats


def init_reward_scaler(num_envs: int) -> RewardScaler:
    return RewardScaler(jnp.zeros((num_envs,), jnp.float32), init_stats(()))


def scale_rewards(scaler: RewardScaler, reward: jax.Array, done: jax.Array,
                  gamma: float, clip: float = 10.0) -> tuple[jax.Array, RewardScaler]:
    """Update the running return with one step's (E,) rewards and return them scaled.

    Returns:
        ((E,) scaled rewards, updated scaler). The return restarts after `done`.
    """
    ret = scaler.ret * gamma + jnp.asarray(reward, jnp.float32)
    stats = update_stats(scaler.stats, ret)
    scaled = jnp.clip(reward * jax.lax.rsqrt(stats.var + 1e-8), -clip, clip)
    return scaled, RewardScaler(jnp.where(done, 0.0, ret), stats)
