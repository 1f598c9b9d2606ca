"""MountainCar-v0 as pure JAX: an underpowered car must rock back and forth to climb a hill.

Moore (1990), "Efficient memory-based learning for robot control", PhD thesis, University
of Cambridge, in the form of gymnasium's `MountainCarEnv`
(gymnasium/envs/classic_control/mountain_car.py), same constants and update:

    v ← clip(v + (a - 1) · force - gravity · cos(3 p), ±max_speed)
    p ← clip(p + v, [min_position, max_position]);  v ← 0 if p hit the left wall moving left

on a track of height sin(3 p) · 0.45 + 0.55. Reward -1 per step; terminated when
p >= goal_position (0.5) and v >= goal_velocity (0). A random policy almost never gets
there, which is what makes the task a test of exploration.
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
class MountainCarParams:
    """Gymnasium's constants and the time limit."""

    min_position: float = -1.2
    max_position: float = 0.6
    max_speed: float = 0.07
    goal_position: float = 0.5
    goal_velocity: float = 0.0
    force: float = 0.001
    gravity: float = 0.0025
    max_steps: int = 200  # MountainCar-v0's time limit


@struct.dataclass
class MountainCarState:
    """position, velocity () float32; `t` () int32: steps taken in this episode."""

    position: jax.Array
    velocity: jax.Array
    t: jax.Array


def height(position):
    """The track's height at `position` (host side, numpy; any shape)."""
    return np.sin(3 * position) * 0.45 + 0.55


class MountainCar(JaxEnv):
    """MountainCar-v0. Actions: 0 accelerate left, 1 coast, 2 accelerate right.
    Observation (2,) float32: (position, velocity). Reward -1 per step. Terminated at the
    flag; truncated after 200 steps."""

    name = "MountainCar-v0"
    render_fps = 30
    observation_space = gymnasium.spaces.Box(np.array([-1.2, -0.07], np.float32),
                                             np.array([0.6, 0.07], np.float32), dtype=np.float32)
    action_space = gymnasium.spaces.Discrete(3)

    def default_params(self) -> MountainCarParams:
        return MountainCarParams()

    def reset(self, key: jax.Array, params: MountainCarParams):
        """Position uniform in [-0.6, -0.4) (near the valley floor at -π/6), velocity 0."""
        position = jax.random.uniform(key, (), jnp.float32, -0.6, -0.4)
        state = MountainCarState(position, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        return self._obs(state), state

    def step(self, key: jax.Array, state: MountainCarState, action: jax.Array,
             params: MountainCarParams):
        """`action` () int in {0, 1, 2} (others are clipped into range). `key` is unused."""
        action = check_action(action, self.action_space, self.name)
        p = params
        push = jnp.clip(action, 0, 2).astype(jnp.float32) - 1.0
        velocity = state.velocity + push * p.force + jnp.cos(3 * state.position) * (-p.gravity)
        velocity = jnp.clip(velocity, -p.max_speed, p.max_speed)
        position = jnp.clip(state.position + velocity, p.min_position, p.max_position)
        # An inelastic left wall: arriving there kills the (leftward) speed.
        velocity = jnp.where((position == p.min_position) & (velocity < 0), 0.0, velocity)
        t = state.t + 1
        new = MountainCarState(position, velocity, t)
        terminated = (new.position >= p.goal_position) & (new.velocity >= p.goal_velocity)
        reward = -jnp.ones((), jnp.float32)
        truncated = (t >= p.max_steps) & ~terminated
        return self._obs(new), new, reward, terminated, truncated, {}

    @staticmethod
    def _obs(state: MountainCarState) -> jax.Array:
        return jnp.stack([state.position, state.velocity]).astype(jnp.float32)  # (2,)

    def render(self, state: MountainCarState, params: MountainCarParams) -> np.ndarray:
        """A (400, 600, 3) uint8 frame like gymnasium's: the hill, the car tilted with the
        slope, its wheels, and the flag at the goal."""
        width, height_px = 600, 400
        lo, hi = float(params.min_position), float(params.max_position)
        scale = width / (hi - lo)
        canvas = raster.blank(height_px, width)
        # The hill, filled below the track (gymnasium draws only the line).
        xs = np.arange(width) + 0.5
        ground = height(xs / scale + lo) * scale  # (W,) track height in pixels
        canvas[np.arange(height_px)[:, None] + 0.5 < ground[None, :]] = (222, 222, 222)
        for x in np.linspace(lo, hi, 100)[:-1]:  # the track line, as gymnasium's polyline
            x2 = x + (hi - lo) / 99
            raster.draw_segment(canvas, ((x - lo) * scale, height(x) * scale),
                                ((x2 - lo) * scale, height(x2) * scale), 2, raster.BLACK)
        pos = float(state.position)
        base = np.array([(pos - lo) * scale, 10 + height(pos) * scale])  # 10 px clearance
        tilt = np.cos(3 * pos)  # gymnasium's tilt; roughly the slope's angle, arctan(1.35 cos 3p)
        car_w, car_h = 40, 20
        raster.fill_polygon(canvas, raster.rotate(
            [(-car_w / 2, 0), (-car_w / 2, car_h), (car_w / 2, car_h), (car_w / 2, 0)], tilt,
            base), raster.BLACK)
        for wheel in raster.rotate([(car_w / 4, 0), (-car_w / 4, 0)], tilt, base):
            raster.fill_circle(canvas, wheel, car_h / 2.5, (128, 128, 128))
        flag_x = (float(params.goal_position) - lo) * scale
        flag_y = height(float(params.goal_position)) * scale
        raster.draw_segment(canvas, (flag_x, flag_y), (flag_x, flag_y + 50), 1, raster.BLACK)
        raster.fill_polygon(canvas, [(flag_x, flag_y + 50), (flag_x, flag_y + 40),
                                     (flag_x + 25, flag_y + 45)], (204, 204, 0))
        return raster.to_image(canvas)
