"""Advantage estimation: generalised advantage estimation (GAE) as a reverse `lax.scan`.

Notation: T time steps (tokens for a language model), E parallel environments (or B
sequences). Arrays are time-major, (T, E); the scan runs over the leading axis.

Convention: r_t is the reward received for the action a_t taken in s_t (the papers' r_{t+1}
in Sutton & Barto's notation), and s'_t is the state that action led to. After an episode
end, s'_t is the *final* state of the old episode, not the first state of the next one --
the auto-reset wrappers keep it for exactly this purpose.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class GAECarry:
    """What flows backwards through time: the advantage of the following step."""

    advantage: jax.Array  # (E,)


def gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array,
        terminated: jax.Array, done: jax.Array, gamma: float,
        lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16), with time limits.

        delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    Two flags, because the two ways an episode ends differ (Pardo et al. 2018):

    * terminated_t (the task ended: the pole fell, the response emitted EOS): the future
      after s'_t is worth 0, so V(s'_t) is not bootstrapped;
    * truncated (the time limit ran out): the future is worth V(s'_t), which *is*
      bootstrapped -- treating truncation as termination teaches the critic that states
      near the time limit are worthless.

    Either way done_t = terminated_t or truncated_t cuts the sum: A_{t+1} belongs to the next
    episode. The last step (t = T-1) bootstraps from next_values[T-1] and has A_T = 0.
    lam = 1 gives the Monte-Carlo advantage with a bootstrapped tail, lam = 0 the one-step
    TD error.

    Args:
        rewards: (T, ...) r_t.
        values: (T, ...) V(s_t) under the policy that collected the data.
        next_values: (T, ...) V(s'_t), the value of the state each action led to (for a
            language model: the value at the next token, 0 after the last).
        terminated: (T, ...) bool, the episode ended at s'_t by the task's own rule.
        done: (T, ...) bool, the episode ended at s'_t for any reason (terminated or
            truncated); must be True wherever terminated is.
        gamma: discount factor. lam: the GAE lambda.
    Returns:
        (advantages, returns), each (T, ...) float32, with returns = advantages + values
        (the critic's regression target, the "lambda-return").
    """
    chex.assert_equal_shape([rewards, values, next_values, terminated, done])
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    not_term, not_done = 1.0 - f32(terminated), 1.0 - f32(done)
    deltas = f32(rewards) + gamma * not_term * f32(next_values) - f32(values)  # (T, ...)

    def step(carry: GAECarry, xs):
        delta, nd = xs
        advantage = delta + gamma * lam * nd * carry.advantage
        return GAECarry(advantage), advantage

    init = GAECarry(jnp.zeros(rewards.shape[1:], jnp.float32))
    _, advantages = jax.lax.scan(step, init, (deltas, not_done), reverse=True)
    return advantages, advantages + f32(values)


def discounted_returns(rewards: jax.Array, done: jax.Array, gamma: float,
                       bootstrap: jax.Array | None = None) -> jax.Array:
    """G_t = r_t + gamma * (1 - done_t) * G_{t+1}, with G_T = bootstrap (0 by default).

    The Monte-Carlo return of REINFORCE; equals `gae` with lam = 1 and zero values.

    Args:
        rewards: (T, ...). done: (T, ...) bool, an episode ended after step t.
        bootstrap: (...) value of the state after the last step, or None for 0.
    Returns:
        (T, ...) float32 returns.
    """
    chex.assert_equal_shape([rewards, done])
    init = jnp.zeros(rewards.shape[1:], jnp.float32) if bootstrap is None else \
        jnp.asarray(bootstrap, jnp.float32)

    def step(following, xs):
        r, d = xs
        ret = r + gamma * (1.0 - d) * following
        return ret, ret

    _, returns = jax.lax.scan(step, init, (jnp.asarray(rewards, jnp.float32),
                                           jnp.asarray(done, jnp.float32)), reverse=True)
    return returns
