"""Any JAX task as a `gymnasium.Env`, and the tasks' gymnasium registration.

The JAX tasks are pure functions for `jit`/`vmap`/`scan` rollouts; this adapter gives one
instance of a task the ordinary stateful, numpy-in numpy-out gymnasium interface, so that
gymnasium's tools (`check_env`, wrappers, `RecordVideo`) and other libraries' agents can use
it too, and so that our tasks and gymnasium's can be compared side by side:

    import minirlhf.envs  # registers the ids below
    env = gymnasium.make("minirlhf/CartPole-v1", render_mode="rgb_array")

The time limit belongs to the JAX task (its params' `max_steps`), so the ids are registered
without gymnasium's `TimeLimit` wrapper. That keeps our truncation semantics: truncated
means "the time limit ended an unfinished episode" and is never set together with
terminated. (`TimeLimit` sets truncated=True on the limit-th step even when the task
terminated on that same step.)
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import gymnasium
import jax
import numpy as np

from minirlhf.envs.core import JaxEnv

# Registered id -> gymnasium's reward threshold for the same task (None: Pendulum has none).
GYM_IDS = {
    "minirlhf/CartPole-v1": 475.0,
    "minirlhf/Acrobot-v1": -100.0,
    "minirlhf/MountainCar-v0": -110.0,
    "minirlhf/Pendulum-v1": None,
}


@functools.cache
def _named_task(name: str):
    """The task `name` and its jitted (reset, step), one per id and shared by all adapters
    made from that id: a SyncVectorEnv of 8 copies compiles once, not 8 times (~1 s each
    for Acrobot). Sharing is safe because a task object keeps no state."""
    from minirlhf.envs import make_env  # here, because that package imports this module
    task = make_env(name)
    return task, jax.jit(task.reset), jax.jit(task.step)


class JaxGymEnv(gymnasium.Env):
    """A JAX task behind gymnasium's `Env` interface (one environment, numpy arrays).

    `reset(seed=s)` seeds gymnasium's `np_random` and draws the episode's JAX key from it,
    so the same seed gives the same episode; each `step` splits that key. `reset` and
    `step` are jitted once per instance, or once per id for adapters made from an id.

    Args:
        task: a `JaxEnv` or a task id known to `minirlhf.envs.make_env` ("CartPole-v1").
        params: the task's params; its `default_params()` if None.
        render_mode: None or "rgb_array" (frames from the task's numpy `render`).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, task: JaxEnv | str, params: Any = None, render_mode: str | None = None):
        if isinstance(task, str):
            task, self._reset, self._step = _named_task(task)
        else:
            self._reset, self._step = jax.jit(task.reset), jax.jit(task.step)
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or one of "
                             f"{self.metadata['render_modes']}, got {render_mode!r}")
        self.task = task
        self.params = task.default_params() if params is None else params
        # Copies: a space carries its own random generator (action_space.sample()), which
        # adapters must not share through the task's class attributes.
        self.observation_space = copy.deepcopy(task.observation_space)
        self.action_space = copy.deepcopy(task.action_space)
        self.render_mode = render_mode
        self.metadata = dict(self.metadata, render_fps=getattr(task, "render_fps", 30))
        self._key = None
        self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"{self.task.name} takes no reset options, got {options!r} "
                             "(change the task's params instead)")
        # One key per episode, drawn from the seeded numpy generator: reset(seed=s) then
        # reset() repeats exactly, as check_env demands.
        self._key = jax.random.key(self.np_random.integers(2 ** 32, dtype=np.uint32))
        self._key, key = jax.random.split(self._key)
        obs, self._state = self._reset(key, self.params)
        return np.array(obs), {}

    def step(self, action):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        self._key, key = jax.random.split(self._key)
        obs, self._state, reward, terminated, truncated, info = self._step(
            key, self._state, self._host_action(action), self.params)
        # np.array copies: the caller may keep and modify what we return.
        return (np.array(obs), float(reward), bool(terminated), bool(truncated),
                {k: np.array(v) for k, v in info.items()})

    def _host_action(self, action) -> np.ndarray:
        """`action` as the dtype the task expects, after checking it on the host (where,
        unlike under jit, the values can be checked too)."""
        a = np.asarray(action)
        space = self.action_space
        if isinstance(space, gymnasium.spaces.Discrete):
            if a.shape != () or not np.issubdtype(a.dtype, np.integer) or not 0 <= a < space.n:
                raise ValueError(f"{self.task.name} takes an integer action in [0, {space.n}), "
                                 f"got {action!r}")
            return a.astype(np.int32)
        if a.shape != space.shape or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{self.task.name} takes a float action of shape {space.shape}, "
                             f"got {action!r} (shape {a.shape}, dtype {a.dtype})")
        return a.astype(np.float32)

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() without a render_mode; create the env with "
                                  "render_mode='rgb_array'")
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        return self.task.render(self._state, self.params)


def register_envs() -> None:
    """Register the ids in `GYM_IDS` with gymnasium (idempotent: known ids are skipped)."""
    for env_id, threshold in GYM_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="minirlhf.envs.gym_adapter:JaxGymEnv",
            kwargs={"task": env_id.split("/", 1)[1]},
            reward_threshold=threshold,
            # No max_episode_steps: the task's own time limit applies (see module docstring).
        )
