"""Pendulum-v1 as pure JAX: swing a torque-limited pendulum up and hold it upright.

Gymnasium's `PendulumEnv` (gymnasium/envs/classic_control/pendulum.py), the classic
swing-up problem (e.g. Doya 2000, "Reinforcement learning in continuous time and space"),
with the same constants and semi-implicit Euler step:

    u  = clip(a, ±max_torque)
    θ̇ ← clip(θ̇ + (3g / 2l · sin θ + 3 / (m l²) · u) · dt, ±max_speed)
    θ ← θ + θ̇ · dt             (the *new* velocity; θ itself is never wrapped)

θ = 0 is upright. Reward -(norm(θ)² + 0.1 θ̇² + 0.001 u²) with norm(θ) the angle wrapped
into [-π, π), computed on the state *before* the step, as gymnasium does. The task never
terminates; only the time limit (200 steps) ends an episode.
"""

from __future__ import annotations

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from minirlhf.envs import raster
from minirlhf.envs.core import JaxEnv, check_action


@struct.dataclass
class PendulumParams:
    """Gymnasium's constants and the time limit."""

    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (gymnasium's name)
    max_steps: int = 200  # Pendulum-v1's time limit


@struct.dataclass
class PendulumState:
    """theta, theta_dot () float32; `t` () int32: steps taken in this episode."""

    theta: jax.Array
    theta_dot: jax.Array
    t: jax.Array


def angle_normalize(x: jax.Array) -> jax.Array:
    """x wrapped into [-π, π) (Python's %, which jnp.mod follows, keeps the divisor's sign)."""
    return jnp.mod(x + jnp.pi, 2 * jnp.pi) - jnp.pi


class Pendulum(JaxEnv):
    """Pendulum-v1. Action (1,) float32: the torque, clipped to [-2, 2]. Observation (3,)
    float32: (cos θ, sin θ, θ̇). Reward in [-16.27, 0]. Never terminated; truncated after
    200 steps."""

    name = "Pendulum-v1"
    render_fps = 30
    observation_space = gymnasium.spaces.Box(np.array([-1.0, -1.0, -8.0], np.float32),
                                             np.array([1.0, 1.0, 8.0], np.float32),
                                             dtype=np.float32)
    action_space = gymnasium.spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)

    def default_params(self) -> PendulumParams:
        return PendulumParams()

    def reset(self, key: jax.Array, params: PendulumParams):
        """θ uniform in [-π, π), θ̇ uniform in [-1, 1), as in gymnasium."""
        theta, theta_dot = jax.random.uniform(key, (2,), jnp.float32, jnp.array([-jnp.pi, -1.0]),
                                              jnp.array([jnp.pi, 1.0]))
        state = PendulumState(theta, theta_dot, jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key: jax.Array, state: PendulumState, action: jax.Array,
             params: PendulumParams):
        """`action` (1,) float: the torque (clipped to ±max_torque). `key` is unused."""
        action = check_action(action, self.action_space, self.name)
        p = params
        u = jnp.clip(action, -p.max_torque, p.max_torque)[0]
        th, thdot = state.theta, state.theta_dot
        costs = angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
        new_thdot = thdot + (3 * p.g / (2 * p.l) * jnp.sin(th) + 3.0 / (p.m * p.l ** 2) * u) * p.dt
        new_thdot = jnp.clip(new_thdot, -p.max_speed, p.max_speed)
        t = state.t + 1
        new = PendulumState(th + new_thdot * p.dt, new_thdot, t)
        terminated = jnp.zeros((), bool)
        truncated = t >= p.max_steps
        return self._obs(new), new, (-costs).astype(jnp.float32), terminated, truncated, {}

    @staticmethod
    def _obs(state: PendulumState) -> jax.Array:
        return jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]).astype(
            jnp.float32)  # (3,)

    def render(self, state: PendulumState, params: PendulumParams) -> np.ndarray:
        """A (500, 500, 3) uint8 frame like gymnasium's: the rod from the pivot, θ = 0 up.
        (Gymnasium's torque arrow is left out: the state does not keep the last action.)"""
        size = 500
        scale = size / (2.2 * 2)
        centre = np.array([size / 2, size / 2])
        th = float(state.theta)
        end = centre + scale * float(params.l) * np.array([-np.sin(th), np.cos(th)])
        canvas = raster.blank(size, size)
        raster.draw_segment(canvas, centre, end, 0.2 * scale, (204, 77, 77))
        raster.fill_circle(canvas, centre, 0.05 * scale, raster.BLACK)
        return raster.to_image(canvas)
