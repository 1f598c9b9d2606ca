"""CartPole-v1 as pure JAX: balance a pole on a cart by pushing the cart left or right.

The cart-pole problem of Barto, Sutton and Anderson (1983), "Neuronlike adaptive elements
that can solve difficult learning control problems", IEEE Trans. SMC 13(5), in the form of
gymnasium's `CartPoleEnv` (gymnasium/envs/classic_control/cartpole.py, itself a copy of
Sutton's pole.c): the same constants, the same explicit Euler step, the same reward (+1 for
every step, the terminating one included), the same termination test and reset
distribution. Gymnasium computes in float64, this port in float32; one step agrees to about
1e-6 (tests/test_gym_envs.py compares thousands of transitions).

Dynamics (Florian 2007, "Correct equations for the dynamics of the cart-pole system",
the note gymnasium cites), with F = +-force_mag, M = masscart + masspole, m = masspole,
l = half the pole's length:

    temp    = (F + m l θ̇² sin θ) / M
    θ̈      = (g sin θ - cos θ · temp) / (l (4/3 - m cos²θ / M))
    ẍ      = temp - m l θ̈ cos θ / M

then x += tau ẋ, ẋ += tau ẍ, θ += tau θ̇, θ̇ += tau θ̈ (positions updated with the old velocities).
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
class CartPoleParams:
    """Physical constants (gymnasium's values) and the time limit; every field is a pytree
    leaf, so a sweep over, say, pole lengths is a `vmap` over params."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length, as in gymnasium
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold_radians: float = 12 * 2 * math.pi / 360  # the episode fails beyond 12°
    x_threshold: float = 2.4  # ... or when the cart's centre leaves [-2.4, 2.4]
    max_steps: int = 500  # CartPole-v1's time limit

    @property
    def total_mass(self):
        return self.masspole + self.masscart

    @property
    def polemass_length(self):
        return self.masspole * self.length


@struct.dataclass
class CartPoleState:
    """Each field () float32, except `t` () int32: steps taken in this episode."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    t: jax.Array


class CartPole(JaxEnv):
    """CartPole-v1. Actions: 0 pushes the cart left, 1 right. Observation (4,) float32:
    (x, ẋ, θ, θ̇). Reward +1 per step. Terminated when |θ| > 12° or |x| > 2.4; truncated
    after `max_steps` (500) steps unless terminated on that step."""

    name = "CartPole-v1"
    render_fps = 50
    # Gymnasium's bounds: twice the failure thresholds, so that the failing observation is
    # still inside the box.
    _high = np.array([2.4 * 2, np.inf, 12 * 2 * math.pi / 360 * 2, np.inf], np.float32)
    observation_space = gymnasium.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def default_params(self) -> CartPoleParams:
        return CartPoleParams()

    def reset(self, key: jax.Array, params: CartPoleParams):
        """All four state variables uniform in [-0.05, 0.05), as in gymnasium."""
        x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
        state = CartPoleState(x, x_dot, theta, theta_dot, jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key: jax.Array, state: CartPoleState, action: jax.Array,
             params: CartPoleParams):
        """One Euler step of 0.02 s. `action` () int: 1 pushes right, 0 left (values outside
        [0, 2) are clipped; gymnasium would raise). `key` is unused: the task is
        deterministic."""
        action = check_action(action, self.action_space, self.name)
        p = params
        force = jnp.where(jnp.clip(action, 0, 1) == 1, p.force_mag, -p.force_mag)
        cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
        temp = (force + p.polemass_length * state.theta_dot ** 2 * sin) / p.total_mass
        theta_acc = (p.gravity * sin - cos * temp) / (
            p.length * (4.0 / 3.0 - p.masspole * cos ** 2 / p.total_mass))
        x_acc = temp - p.polemass_length * theta_acc * cos / p.total_mass
        # Gymnasium's default "euler" integrator: positions move with the *old* velocities.
        t = state.t + 1
        new = CartPoleState(
            x=state.x + p.tau * state.x_dot,
            x_dot=state.x_dot + p.tau * x_acc,
            theta=state.theta + p.tau * state.theta_dot,
            theta_dot=state.theta_dot + p.tau * theta_acc,
            t=t)
        terminated = ((new.x < -p.x_threshold) | (new.x > p.x_threshold)
                      | (new.theta < -p.theta_threshold_radians)
                      | (new.theta > p.theta_threshold_radians))
        # +1 on every step including the one on which the pole falls (gymnasium's default;
        # its `sutton_barto_reward=True` variant is not ported).
        reward = jnp.ones((), jnp.float32)
        truncated = (t >= p.max_steps) & ~terminated
        return self._obs(new), new, reward, terminated, truncated, {}

    @staticmethod
    def _obs(state: CartPoleState) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(
            jnp.float32)  # (4,)

    def render(self, state: CartPoleState, params: CartPoleParams) -> np.ndarray:
        """A (400, 600, 3) uint8 frame laid out like gymnasium's: track, cart, pole, axle."""
        width, height = 600, 400
        scale = width / (float(params.x_threshold) * 2)
        pole_len, pole_w, cart_w, cart_h = scale * 2 * float(params.length), 10.0, 50.0, 30.0
        cart_x, cart_top = float(state.x) * scale + width / 2, 100.0
        canvas = raster.blank(height, width)
        raster.draw_segment(canvas, (0, cart_top), (width, cart_top), 1, raster.BLACK)
        raster.fill_polygon(canvas, [(cart_x - cart_w / 2, cart_top - cart_h / 2),
                                     (cart_x + cart_w / 2, cart_top - cart_h / 2),
                                     (cart_x + cart_w / 2, cart_top + cart_h / 2),
                                     (cart_x - cart_w / 2, cart_top + cart_h / 2)], raster.BLACK)
        axle = (cart_x, cart_top + cart_h / 4)
        pole = [(-pole_w / 2, -pole_w / 2), (-pole_w / 2, pole_len - pole_w / 2),
                (pole_w / 2, pole_len - pole_w / 2), (pole_w / 2, -pole_w / 2)]
        # theta > 0 leans the pole to the right, i.e. a clockwise rotation in y-up pixels.
        raster.fill_polygon(canvas, raster.rotate(pole, -float(state.theta), axle),
                            (202, 152, 101))
        raster.fill_circle(canvas, axle, pole_w / 2, (129, 132, 203))
        return raster.to_image(canvas)
