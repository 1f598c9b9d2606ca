"""The reward T-REX and D-REX learn: its network, what PPO receives, the wrappers, the checks.

`RewardNet` is r_theta(s) (or r_theta(s, a)) plus r_abs, the learned reward of the
absorbing state after a terminal step; trex.py trains an ensemble of them from rankings.
`rl_reward` is what PPO receives: tanh((r(s) - r_abs) / scale), its offset learned from how
the demonstrations end (trex.py's docstring says why), or a fixed prior the user chose. The
reward replaces a task's own without touching its dynamics: `LearnedReward` wraps a JAX
task (pure, jittable, vmappable like the task) and `learned_reward_host` a host vector env
of the gymnasium bridge. The checks say how far it can be trusted: its return against the
true one over whole demonstrations (which a constant per-step reward already matches
through the length alone), over equal-length snippets (which it cannot), and how it ranks
demonstrations it never saw.

    env_rl = learned_reward_env(AutoReset(env), spec, seed_model(models, 0))
    correlation(rl_step_rewards(spec, model, demos).sum(1), demos.returns)

Notation: D demonstrations, T steps, O observation size, I network input size, M ensemble
members.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from minirlhf.demos import Demonstrations
from minirlhf.normalize import RunningStats, normalize


# --- the reward network ------------------------------------------------------------------


class RewardNet(nnx.Module):
    """r_theta: an MLP from one step's input (I,) to a scalar reward, and r_abs, the
    reward of the absorbing state after a terminal step (a learned scalar)."""

    def __init__(self, in_dim: int, hidden: int, depth: int, rngs: nnx.Rngs):
        sizes = [in_dim] + [hidden] * depth
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])
        self.out = nnx.Linear(sizes[-1], 1, rngs=rngs)
        self.absorbing = nnx.Param(jnp.zeros(()))

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return self.out(x)[..., 0]


@struct.dataclass
class RewardSpec:
    """What the reward function needs to know about its inputs (static, hashable)."""

    graphdef: Any = struct.field(pytree_node=False)
    action_dim: int = struct.field(pytree_node=False)  # 0: observations only
    discrete: bool = struct.field(pytree_node=False)
    transform: str = struct.field(pytree_node=False)


@struct.dataclass
class RewardModel:
    """The learned reward's arrays: M ensemble members' parameters (leading axis M), the
    observation statistics its inputs are normalised by, each member's mean and std over
    the training demonstrations' steps (to standardise it), and the offset PPO's reward
    subtracts: r_abs where the demonstrations identify it, else the mean."""

    params: Any
    obs_stats: RunningStats
    mean: jax.Array  # (M,)
    std: jax.Array  # (M,)
    offset: jax.Array  # (M,)
    scale: jax.Array  # (M,)


def reward_inputs(obs: jax.Array, actions: jax.Array | None, spec: RewardSpec) -> jax.Array:
    """(..., O) observations [and (...,) or (..., A) actions] -> (..., I) network inputs."""
    if not spec.action_dim:
        return obs
    if spec.discrete:
        actions = jax.nn.one_hot(actions, spec.action_dim)
    return jnp.concatenate([obs, actions.astype(obs.dtype)], axis=-1)


def raw_rewards(spec: RewardSpec, params, stats: RunningStats, obs: jax.Array,
                actions: jax.Array | None) -> jax.Array:
    """(..., ) per-step outputs of one reward network (obs normalised by `stats`)."""
    x = reward_inputs(normalize(stats, obs), actions, spec)
    return nnx.merge(spec.graphdef, params)(x)


def absorbing_reward(spec: RewardSpec, params) -> jax.Array:
    """() r_abs of one reward network."""
    return nnx.merge(spec.graphdef, params).absorbing[...]


def _ensemble_reward(spec: RewardSpec, model: RewardModel, obs: jax.Array,
                     actions: jax.Array | None, offset: jax.Array,
                     scale: jax.Array) -> jax.Array:
    """(...,) the mean over members of (r_m - offset_m) / scale_m."""
    r = jax.vmap(lambda p: raw_rewards(spec, p, model.obs_stats, obs, actions))(model.params)
    shape = (-1,) + (1,) * (r.ndim - 1)
    return jnp.mean((r - offset.reshape(shape)) / scale.reshape(shape), axis=0)


def standardized_reward(spec: RewardSpec, model: RewardModel, obs: jax.Array,
                        actions: jax.Array | None = None) -> jax.Array:
    """(...,) the ensemble's reward: the mean over members of (r_m - mean_m) / std_m."""
    return _ensemble_reward(spec, model, obs, actions, model.mean, model.std)


def rl_reward(spec: RewardSpec, model: RewardModel, obs: jax.Array,
              actions: jax.Array | None = None) -> jax.Array:
    """(...,) the reward PPO receives: with the 'learned' transform tanh of the mean over
    members of (r_m(s) - r_abs,m) / scale_m (the offset learned from how episodes end; the module
    docstring says why), else the standardised reward under the user's fixed prior."""
    if spec.transform == "learned":
        # Bounded, as the T-REX code's sigmoid bounds it, but keeping the learned sign: a
        # state far from the demonstrations may score anything, and an unbounded reward
        # lets PPO trade many steps of the task for a few such states (reward hacking;
        # lecture 6, section 8).
        return jnp.tanh(_ensemble_reward(spec, model, obs, actions, model.offset,
                                         model.scale))
    r = standardized_reward(spec, model, obs, actions)
    if spec.transform == "sigmoid":
        return jax.nn.sigmoid(r)
    if spec.transform == "negative_sigmoid":
        return jax.nn.sigmoid(r) - 1.0
    return r


def seed_model(models: RewardModel, i: int) -> RewardModel:
    """Seed i's RewardModel out of train_reward's stacked models."""
    return jax.tree.map(lambda x: x[i], models)


def calibrate(spec: RewardSpec, params, stats: RunningStats, demos: Demonstrations,
              learned_offset: bool) -> RewardModel:
    """A RewardModel calibrated over the demonstrations' real steps: each member's mean and
    std (to standardise it), its offset r_abs if `learned_offset` (the demonstrations
    taught it, see trex.offset_identified) else the mean, and the scale PPO's reward is
    divided by: the mean |r - r_abs| (a typical step is then worth 1, like the constant
    controls' +-1) or, centred, the std."""
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    obs = jnp.asarray(demos.obs[mask])
    actions = None
    if spec.action_dim:
        actions = jnp.asarray(np.asarray(demos.actions)[mask])
    r = jax.vmap(lambda p: raw_rewards(spec, p, stats, obs, actions))(params)  # (M, N)
    mean, std = jnp.mean(r, axis=1), jnp.maximum(jnp.std(r, axis=1), 1e-6)
    if not learned_offset:
        return RewardModel(params=params, obs_stats=stats, mean=mean, std=std, offset=mean,
                           scale=std)
    offset = jax.vmap(lambda p: absorbing_reward(spec, p))(params)
    scale = jnp.maximum(jnp.mean(jnp.abs(r - offset[:, None]), axis=1), 1e-6)
    return RewardModel(params=params, obs_stats=stats, mean=mean, std=std, offset=offset,
                       scale=scale)


# --- evaluation ------------------------------------------------------------------------------


def learned_returns(spec: RewardSpec, model: RewardModel, demos: Demonstrations) -> np.ndarray:
    """(D,) each demonstration's learned return: sum over its steps of the standardised
    reward (the quantity Bradley-Terry compared, before the RL transform)."""
    actions = jnp.asarray(demos.actions) if spec.action_dim else None
    r = standardized_reward(spec, model, jnp.asarray(demos.obs), actions)  # (D, T)
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    return np.asarray(jnp.sum(jnp.where(mask, r, 0.0), axis=1))


def rl_step_rewards(spec: RewardSpec, model: RewardModel, demos: Demonstrations) -> np.ndarray:
    """(D, T) the reward PPO would receive on each demonstration's steps (0 after its end)."""
    actions = jnp.asarray(demos.actions) if spec.action_dim else None
    r = rl_reward(spec, model, jnp.asarray(demos.obs), actions)
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    return np.where(mask, np.asarray(r), 0.0)


def snippet_correlation(learned: np.ndarray, true: np.ndarray, lengths: np.ndarray,
                        key: jax.Array, length: int, n: int = 500) -> float:
    """Correlation of learned and true returns over n snippets of one common length,
    which how long an episode lasts cannot explain (whole-episode returns can: on a task
    that pays a constant per step, any reward with the right sign correlates with the
    true return through the length alone). NaN where the true reward is the same on every
    step (CartPole's +1, Acrobot's -1 until the goal): equal-length snippets then have
    equal true returns, and length was the only thing to learn.

    Args:
        learned, true: (D, T) per-step rewards. lengths: (D,) steps of each demonstration.
        length: the snippets' length (cut to the longest demonstration).
    """
    lengths = np.asarray(lengths)
    length = int(min(length, lengths.max()))
    eligible = np.flatnonzero(lengths >= length)
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
    demo = rng.choice(eligible, n)
    start = (rng.random(n) * (lengths[demo] - length + 1)).astype(int)
    window = lambda r: np.cumsum(np.pad(r, [(0, 0), (1, 0)]), axis=1)
    sums = lambda c: c[demo, start + length] - c[demo, start]
    true_sums = sums(window(np.asarray(true, float)))
    if np.ptp(true_sums) < 1e-6 * max(1.0, np.abs(true_sums).max()):
        return float("nan")
    return correlation(sums(window(np.asarray(learned, float))), true_sums)


def ranking_accuracy(scores: np.ndarray, rank: np.ndarray) -> float:
    """Share of demonstration pairs of different rank that `scores` order like `rank`."""
    rank = np.asarray(rank)
    worse, better = np.nonzero(rank[:, None] < rank[None, :])
    if not len(worse):
        return float("nan")
    return float(np.mean(scores[better] > scores[worse]))


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


# --- RL on the learned reward ----------------------------------------------------------------


@struct.dataclass
class LearnedRewardState:
    """The wrapped task's state and the observation the agent acts on next."""

    inner: Any
    obs: jax.Array


class LearnedReward:
    """A task whose reward is replaced by a learned one: r_t = reward(s_t, a_t) of the
    observation acted on and the action taken, so an episode's learned return is the sum
    that T-REX's loss compared. Dynamics, termination, truncation and `info` (AutoReset's
    true episode returns included) are the wrapped task's, untouched; the true reward is
    kept in ``info["true_reward"]``. Pure, jittable and vmappable like the task itself.

    Wrap an AutoReset task (LearnedReward(AutoReset(env), fn)) so that AutoReset keeps
    counting true returns for evaluation.

    Args:
        env: the task. reward: (obs (O,), action) -> () float32.
    """

    def __init__(self, env, reward: Callable[[jax.Array, jax.Array], jax.Array]):
        self.env = env
        self.reward = reward

    def __getattr__(self, name):  # spaces, default_params, render, discrete (see AutoReset)
        if name in ("env", "reward"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, key: jax.Array, params):
        obs, state = self.env.reset(key, params)
        return obs, LearnedRewardState(inner=state, obs=obs)

    def step(self, key: jax.Array, state: LearnedRewardState, action: jax.Array, params):
        obs, inner, true_reward, terminated, truncated, info = self.env.step(
            key, state.inner, action, params)
        reward = self.reward(state.obs, action).astype(jnp.float32)
        info = dict(info, true_reward=true_reward)
        return obs, LearnedRewardState(inner=inner, obs=obs), reward, terminated, truncated, info


def learned_reward_env(env, spec: RewardSpec, model: RewardModel) -> LearnedReward:
    """`env` (AutoReset-wrapped) with its reward replaced by the T-REX reward for PPO."""
    use_actions = bool(spec.action_dim)
    return LearnedReward(env, lambda obs, action: rl_reward(
        spec, model, obs, action if use_actions else None))


def learned_reward_host(spec: RewardSpec, model: RewardModel):
    """env -> env: a host vector env (gymnasium bridge, e.g. Hopper-v5) with its reward
    replaced by the T-REX reward for PPO (`gym_bridge.LearnedRewardHost`); the host twin
    of `learned_reward_env`."""
    from minirlhf.gym_bridge import LearnedRewardHost

    use_actions = bool(spec.action_dim)
    return lambda env: LearnedRewardHost(env, lambda obs, action: rl_reward(
        spec, model, obs, action if use_actions else None))
