"""The functional interface of the JAX-native gym tasks, and the auto-reset wrapper.

A task is an object with pure methods, vmappable over many environments:

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

`params` is a pytree of the task's physical constants and its time limit (so a sweep over,
say, pole lengths is a vmap); `state` is a pytree dataclass that carries a step counter `t`.
Termination (the task ended: pole fell, goal reached) and truncation (the time limit ran
out) are kept apart everywhere, because they differ for learning: after termination the
future is worth 0, after truncation it is worth V(s') and must be bootstrapped (Pardo et
al. 2018, "Time Limits in Reinforcement Learning").

`AutoReset` turns a task into an endless stream for vectorised rollouts: when an episode
ends it resets in the same step, returns the first observation of the new episode, and
keeps the last observation of the old one in ``info["final_obs"]`` for bootstrapping.
It also tracks each episode's return and length for logging.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
from flax import struct


class JaxEnv:
    """Base class of the JAX-native tasks. Subclasses set the class attributes and implement
    `default_params`, `reset`, `step` (pure, jittable, vmappable) and `render` (host side).

    Attributes:
        name: the task's id without namespace, e.g. "CartPole-v1".
        observation_space: a gymnasium Box describing one observation (float32).
        action_space: gymnasium Discrete(n) or Box (continuous) describing one action.
    """

    name: str = ""
    observation_space: gymnasium.spaces.Box
    action_space: gymnasium.spaces.Space

    def default_params(self) -> Any:
        """The task's constants as a pytree (including `max_steps`, the time limit)."""
        raise NotImplementedError

    def reset(self, key: jax.Array, params) -> tuple[jax.Array, Any]:
        """(obs (O,) float32, state) at the start of an episode."""
        raise NotImplementedError

    def step(self, key: jax.Array, state, action: jax.Array, params):
        """One transition.

        Returns:
            obs (O,) float32, state, reward () float32, terminated () bool,
            truncated () bool (time limit reached and not terminated), info dict.
        """
        raise NotImplementedError

    def render(self, state, params):
        """An RGB frame of `state`: (H, W, 3) uint8 numpy array (host side, not jittable)."""
        raise NotImplementedError

    @property
    def discrete(self) -> bool:
        """True if actions are integers in [0, n)."""
        return isinstance(self.action_space, gymnasium.spaces.Discrete)


def check_action(action, space: gymnasium.spaces.Space, task: str) -> jax.Array:
    """`action` as an array, after checking its shape and dtype against `space`.

    Shapes and dtypes are static under `jit` and `vmap` (inside `vmap`, those of one
    example), so a wrong action fails here, when the step is traced, with a message that
    names what was expected -- instead of broadcasting silently (a (2,) torque would give a
    (2,)-shaped pendulum). Values are traced and cannot be checked here; the tasks clip
    discrete actions into [0, n) and the gymnasium adapter checks values on the host.

    Args:
        action: Discrete(n): an integer scalar, shape (); Box: a float array of the box's shape.
        space: the task's action space.
        task: the task's name, for the message.
    Returns:
        the action as a jax array (dtype unchanged).
    Raises:
        ValueError: wrong shape or dtype.
    """
    action = jnp.asarray(action)
    if isinstance(space, gymnasium.spaces.Discrete):
        if action.shape != () or not jnp.issubdtype(action.dtype, jnp.integer):
            raise ValueError(
                f"{task} takes a discrete action: an integer scalar of shape () in "
                f"[0, {int(space.n)}), got shape {action.shape} dtype {action.dtype} "
                "(one action per environment; vmap over a batch)")
    elif isinstance(space, gymnasium.spaces.Box):
        if action.shape != space.shape or not jnp.issubdtype(action.dtype, jnp.floating):
            raise ValueError(
                f"{task} takes a continuous action: a float array of shape {space.shape} in "
                f"[{space.low.tolist()}, {space.high.tolist()}], got shape {action.shape} "
                f"dtype {action.dtype} (one action per environment; vmap over a batch)")
    else:
        raise TypeError(f"{task}: unsupported action space {space}")
    return action


@struct.dataclass
class AutoResetState:
    """The wrapped task's state plus the running statistics of the current episode."""

    env_state: Any
    episode_return: jax.Array  # () float32, undiscounted return so far
    episode_length: jax.Array  # () int32, steps so far


class AutoReset:
    """Reset a task in the same step its episode ends; keep the final observation.

    `step` returns the *next* observation to act on (the reset observation after an episode
    end) and, in `info`:

    * ``final_obs``: the observation the transition really led to (equal to obs unless the
      episode ended) -- bootstrap V(final_obs) on truncation;
    * ``episode_return``, ``episode_length``: the finished episode's return and length,
      valid where ``done`` (terminated or truncated) is True, 0 elsewhere.
    """

    def __init__(self, env: JaxEnv):
        self.env = env

    def __getattr__(self, name):  # name, spaces, default_params, render, discrete
        # Only reached for attributes AutoReset lacks. `env` itself must not be forwarded:
        # copy and pickle look attributes up on an instance whose __init__ never ran, and
        # forwarding `env` would recurse forever.
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key: jax.Array, params) -> tuple[jax.Array, AutoResetState]:
        obs, state = self.env.reset(key, params)
        return obs, AutoResetState(state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: AutoResetState, action: jax.Array, params):
        step_key, reset_key = jax.random.split(key)
        obs, env_state, reward, terminated, truncated, info = self.env.step(
            step_key, state.env_state, action, params)
        ret = state.episode_return + reward
        length = state.episode_length + 1
        done = terminated | truncated
        reset_obs, reset_state = self.env.reset(reset_key, params)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(done, a, b), new, old)
        next_state = AutoResetState(
            env_state=pick(reset_state, env_state),
            episode_return=jnp.where(done, 0.0, ret),
            episode_length=jnp.where(done, 0, length))
        info = dict(info, final_obs=obs,
                    episode_return=jnp.where(done, ret, 0.0),
                    episode_length=jnp.where(done, length, 0))
        return pick(reset_obs, obs), next_state, reward, terminated, truncated, info
