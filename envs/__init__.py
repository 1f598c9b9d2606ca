"""Tasks the agents act in, importable as `minirlhf.envs`.

Text tasks provide a pretraining corpus and prompts, and either demonstrations and a gold
reward for simulated labelers (`ReviewTask`) or a rule-based verifier (`ArithmeticTask`).
Look one up by name with `make_task`.

Gym tasks are pure-JAX ports of gymnasium's classic control (CartPole-v1, Acrobot-v1,
MountainCar-v0, Pendulum-v1) behind the functional interface of `core.JaxEnv`; look one up
with `make_env`. Importing this package also registers them with gymnasium as
"minirlhf/<id>" (see `gym_adapter`).
"""

from minirlhf.envs.acrobot import Acrobot, AcrobotParams, AcrobotState
from minirlhf.envs.arithmetic import ArithmeticTask
from minirlhf.envs.cartpole import CartPole, CartPoleParams, CartPoleState
from minirlhf.envs.core import AutoReset, AutoResetState, JaxEnv
from minirlhf.envs.gym_adapter import JaxGymEnv, register_envs
from minirlhf.envs.mountain_car import MountainCar, MountainCarParams, MountainCarState
from minirlhf.envs.pendulum import Pendulum, PendulumParams, PendulumState
from minirlhf.envs.reviews import ReviewTask

TASKS = {"reviews": ReviewTask, "arithmetic": ArithmeticTask}

GYM_TASKS = {
    "CartPole-v1": CartPole,
    "Acrobot-v1": Acrobot,
    "MountainCar-v0": MountainCar,
    "Pendulum-v1": Pendulum,
}


def make_task(name: str):
    """The text task registered under `name` (e.g. "reviews")."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]()


def make_env(name: str) -> JaxEnv:
    """The JAX gym task `name`, e.g. "CartPole-v1" (the gymnasium id "minirlhf/CartPole-v1"
    is accepted too). Use it with its `default_params()`, or wrap it in `AutoReset`."""
    key = name.removeprefix("minirlhf/") if isinstance(name, str) else name
    if key not in GYM_TASKS:
        raise ValueError(f"unknown gym task {name!r}; known tasks: {sorted(GYM_TASKS)} "
                         "(optionally prefixed 'minirlhf/')")
    return GYM_TASKS[key]()


register_envs()

__all__ = ["ReviewTask", "ArithmeticTask", "TASKS", "make_task", "GYM_TASKS", "make_env",
           "register_envs",
           "JaxEnv", "JaxGymEnv", "AutoReset", "AutoResetState",
           "CartPole", "CartPoleParams", "CartPoleState", "Acrobot", "AcrobotParams",
           "AcrobotState", "MountainCar", "MountainCarParams", "MountainCarState",
           "Pendulum", "PendulumParams", "PendulumState"]
