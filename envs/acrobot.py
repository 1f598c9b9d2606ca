"""Acrobot-v1 as pure JAX: swing the tip of a two-link pendulum above a line.

Sutton (1996), "Generalization in reinforcement learning: successful examples using sparse
coarse coding", NIPS 8, with the dynamics of Sutton and Barto's book (the NIPS paper's
equations miss a term; gymnasium's default `book_or_nips = "book"` keeps it, and so does
this port). It follows gymnasium's `AcrobotEnv` (gymnasium/envs/classic_control/acrobot.py,
from RLPy): the same constants, one classic fourth-order Runge-Kutta step of dt = 0.2 s
with the torque held fixed (gymnasium's `rk4` over `t = [0, dt]`), then the angles wrapped
into [-π, π] and the velocities clipped to ±4π and ±9π. Reward -1 per step, 0 on the step
that reaches the goal: -cos θ1 - cos(θ1 + θ2) > 1 (the tip more than one link length above
the pivot).

θ1 is the first link's angle from pointing straight down, θ2 the second link's angle
relative to the first. Gymnasium integrates in float64, this port in float32; after one
step they typically agree to ~1e-6, but from states near the speed limits (28 rad/s) the
RK4 step of 0.2 s amplifies float32 rounding to up to ~3e-4. Run in float64
(`jax.enable_x64`), the port equals gymnasium to rounding (tests/test_gym_envs.py).
"""

from __future__ import annotations

import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from minirlhf.envs import raster
from minirlhf.envs.core import JaxEnv, check_action


@struct.dataclass
class AcrobotParams:
    """Gymnasium's constants (its class attributes, lower-cased) and the time limit."""

    dt: float = 0.2  # integration step [s]
    link_length_1: float = 1.0  # [m]
    link_length_2: float = 1.0  # [m]; enters only the rendering, as in gymnasium
    link_mass_1: float = 1.0  # [kg]
    link_mass_2: float = 1.0  # [kg]
    link_com_pos_1: float = 0.5  # [m] centre of mass of link 1 from its pivot
    link_com_pos_2: float = 0.5  # [m] centre of mass of link 2 from its pivot
    link_moi: float = 1.0  # moment of inertia of each link
    max_vel_1: float = 4 * math.pi
    max_vel_2: float = 9 * math.pi
    gravity: float = 9.8
    torque_noise_max: float = 0.0  # uniform noise on the torque; 0 in Acrobot-v1
    max_steps: int = 500  # Acrobot-v1's time limit


@struct.dataclass
class AcrobotState:
    """Each field () float32 (angles in [-π, π]), except `t` () int32: steps taken."""

    theta1: jax.Array
    theta2: jax.Array
    dtheta1: jax.Array
    dtheta2: jax.Array
    t: jax.Array


def dsdt(s: jax.Array, torque: jax.Array, p: AcrobotParams) -> jax.Array:
    """Time derivative of s = (θ1, θ2, θ̇1, θ̇2) (4,) under a fixed torque on joint 2.

    Gymnasium's `_dsdt` with the book's equation for θ̈2 (it has the extra
    -m2 l1 lc2 θ̇1² sin θ2 term that the NIPS paper lacks).
    """
    m1, m2 = p.link_mass_1, p.link_mass_2
    l1, lc1, lc2 = p.link_length_1, p.link_com_pos_1, p.link_com_pos_2
    i1 = i2 = p.link_moi
    g = p.gravity
    theta1, theta2, dtheta1, dtheta2 = s[0], s[1], s[2], s[3]
    d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * jnp.cos(theta2)) + i1 + i2
    d2 = m2 * (lc2 ** 2 + l1 * lc2 * jnp.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * dtheta2 ** 2 * jnp.sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2) + phi2)
    ddtheta2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1 ** 2 * jnp.sin(theta2) - phi2)
                / (m2 * lc2 ** 2 + i2 - d2 ** 2 / d1))
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


def rk4_step(s: jax.Array, torque: jax.Array, p: AcrobotParams) -> jax.Array:
    """One classic Runge-Kutta step of length dt: gymnasium's `rk4(derivs, y0, [0, dt])`.

    (Gymnasium appends the torque to the state with derivative 0; holding it fixed is the same.)
    """
    dt = p.dt
    k1 = dsdt(s, torque, p)
    k2 = dsdt(s + dt / 2 * k1, torque, p)
    k3 = dsdt(s + dt / 2 * k2, torque, p)
    k4 = dsdt(s + dt * k3, torque, p)
    return s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def wrap(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """Gymnasium's `wrap` without its while loops: shift x by whole periods (hi - lo) into
    [lo, hi]. The loops subtract the period ceil((x - hi) / period) times while x > hi (and
    add it ceil((lo - x) / period) times while x < lo), so x = hi stays hi."""
    period = hi - lo
    x = jnp.where(x > hi, x - period * jnp.ceil((x - hi) / period), x)
    return jnp.where(x < lo, x + period * jnp.ceil((lo - x) / period), x)


class Acrobot(JaxEnv):
    """Acrobot-v1. Actions 0, 1, 2 apply torque -1, 0, +1 to the joint between the links.
    Observation (6,) float32: (cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2). Reward -1 per
    step, 0 when the goal is reached (terminated). Truncated after 500 steps."""

    name = "Acrobot-v1"
    render_fps = 15
    _high = np.array([1.0, 1.0, 1.0, 1.0, 4 * math.pi, 9 * math.pi], np.float32)
    observation_space = gymnasium.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gymnasium.spaces.Discrete(3)

    def default_params(self) -> AcrobotParams:
        return AcrobotParams()

    def reset(self, key: jax.Array, params: AcrobotParams):
        """θ1, θ2, θ̇1, θ̇2 each uniform in [-0.1, 0.1): both links hang down, nearly at rest."""
        theta1, theta2, dtheta1, dtheta2 = jax.random.uniform(
            key, (4,), jnp.float32, -0.1, 0.1)
        state = AcrobotState(theta1, theta2, dtheta1, dtheta2, jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key: jax.Array, state: AcrobotState, action: jax.Array,
             params: AcrobotParams):
        """One RK4 step. `action` () int in {0, 1, 2} (others are clipped into range).
        `key` draws the torque noise (none by default)."""
        action = check_action(action, self.action_space, self.name)
        p = params
        torque = jnp.clip(action, 0, 2).astype(jnp.float32) - 1.0  # AVAIL_TORQUE = [-1, 0, 1]
        torque = torque + jax.random.uniform(key, (), jnp.float32, -p.torque_noise_max,
                                             p.torque_noise_max)
        s = jnp.stack([state.theta1, state.theta2, state.dtheta1, state.dtheta2])  # (4,)
        ns = rk4_step(s, torque, p)
        t = state.t + 1
        new = AcrobotState(
            theta1=wrap(ns[0], -jnp.pi, jnp.pi),
            theta2=wrap(ns[1], -jnp.pi, jnp.pi),
            dtheta1=jnp.clip(ns[2], -p.max_vel_1, p.max_vel_1),
            dtheta2=jnp.clip(ns[3], -p.max_vel_2, p.max_vel_2),
            t=t)
        terminated = -jnp.cos(new.theta1) - jnp.cos(new.theta2 + new.theta1) > 1.0
        reward = jnp.where(terminated, 0.0, -1.0).astype(jnp.float32)
        truncated = (t >= p.max_steps) & ~terminated
        return self._obs(new), new, reward, terminated, truncated, {}

    @staticmethod
    def _obs(state: AcrobotState) -> jax.Array:
        return jnp.stack([jnp.cos(state.theta1), jnp.sin(state.theta1), jnp.cos(state.theta2),
                          jnp.sin(state.theta2), state.dtheta1, state.dtheta2]).astype(
            jnp.float32)  # (6,)

    def render(self, state: AcrobotState, params: AcrobotParams) -> np.ndarray:
        """A (500, 500, 3) uint8 frame like gymnasium's: goal line, two links, joints."""
        size = 500
        l1, l2 = float(params.link_length_1), float(params.link_length_2)
        scale = size / ((l1 + l2 + 0.2) * 2)
        centre = np.array([size / 2, size / 2])
        th1, th2 = float(state.theta1), float(state.theta2)
        # θ = 0 hangs straight down; the joint sits at (l1 sin θ1, -l1 cos θ1).
        joint = centre + scale * l1 * np.array([np.sin(th1), -np.cos(th1)])
        tip = joint + scale * l2 * np.array([np.sin(th1 + th2), -np.cos(th1 + th2)])
        canvas = raster.blank(size, size)
        raster.draw_segment(canvas, (centre[0] - 2.2 * scale, centre[1] + scale),
                            (centre[0] + 2.2 * scale, centre[1] + scale), 1, raster.BLACK)
        for a, b in ((centre, joint), (joint, tip)):
            raster.draw_segment(canvas, a, b, 0.2 * scale, (0, 204, 204))
            raster.fill_circle(canvas, a, 0.1 * scale, (204, 204, 0))
        return raster.to_image(canvas)
