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
    # BEGIN SOLUTION
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
    # END SOLUTION


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


# --- group-relative advantages (GRPO and its relatives) ----------------------------------
#
# No critic: each prompt gets a group of G responses, and a response's advantage is its
# reward compared with its group's (deck "Large Language Models and RL from Human Feedback",
# slide "Group Relative Policy Optimization (GRPO)", step 3: "compute relative advantage").

GROUP_ADVANTAGES = ("grpo", "dr_grpo", "rloo")


def flat_groups(rewards: jax.Array, std_floor: float) -> jax.Array:
    """Which groups carry no signal: their rewards' standard deviation is below `std_floor`.

    A group whose G responses all scored the same (all right, or all wrong) gives every
    response advantage 0, hence no gradient; so does one whose rewards differ only by float
    rounding (e.g. a reward model's scores of near-identical responses), which a std
    division would otherwise inflate into advantages of +-1.

    Args:
        rewards: (B, G) the rewards of G responses to each of B prompts.
        std_floor: the smallest standard deviation that counts as a difference, >= 0.
    Returns:
        (B,) bool.
    """
    chex.assert_rank(rewards, 2)
    rewards = jnp.asarray(rewards, jnp.float32)
    spread = jnp.max(rewards, axis=1) - jnp.min(rewards, axis=1)
    return (spread == 0) | (jnp.std(rewards, axis=1, ddof=1) < std_floor)


def group_advantages(rewards: jax.Array, kind: str = "grpo",
                     std_floor: float = 1e-3) -> jax.Array:
    """Advantages of G responses per prompt from their rewards alone.

        grpo     A_i = (r_i - mean(r)) / std(r)       (Shao et al. 2024, sec. 4.1.2)
        dr_grpo  A_i =  r_i - mean(r)                 (Liu et al. 2025: the std division
                                                       favours easy and hard prompts, whose
                                                       groups vary little)
        rloo     A_i =  r_i - mean_{j != i} r_j       (Ahmadian et al. 2024; Kool et al.
                                                       2019) = G / (G - 1) (r_i - mean(r))

    mean and std are over the group; std is the sample standard deviation (divisor G - 1,
    as torch.std and TRL compute it). The leave-one-out baseline of RLOO does not depend on
    r_i, so the policy gradient it gives is unbiased; the plain group mean contains r_i and
    shrinks the gradient by (G - 1) / G. A group in `flat_groups` gets advantage 0 exactly.

    Args:
        rewards: (B, G) rewards; G >= 2.
        kind: "grpo", "dr_grpo" or "rloo".
        std_floor: groups whose reward std is below this count as flat (`flat_groups`).
    Returns:
        (B, G) float32 advantages.
    """
    chex.assert_rank(rewards, 2)
    G = rewards.shape[1]
    if G < 2:
        raise ValueError(f"group advantages need G >= 2 responses per prompt, got G={G}")
    if kind not in GROUP_ADVANTAGES:
        raise ValueError(f"unknown group advantage {kind!r}; expected one of {GROUP_ADVANTAGES}")
    # BEGIN SOLUTION
    r = jnp.asarray(rewards, jnp.float32)
    centred = r - jnp.mean(r, axis=1, keepdims=True)
    if kind == "grpo":
        std = jnp.std(r, axis=1, keepdims=True, ddof=1)
        adv = centred / jnp.maximum(std, std_floor)
    elif kind == "dr_grpo":
        adv = centred
    else:
        adv = centred * G / (G - 1)
    return jnp.where(flat_groups(r, std_floor)[:, None], 0.0, adv)
    # END SOLUTION
