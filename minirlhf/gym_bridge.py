"""The gymnasium bridge: PPO on any gymnasium environment, through a host-side vector env.

The rollout is a Python loop around a jitted policy (one call per step for all E
environments); the learning step is the very same jitted `ppo.make_learn` that the pure-JAX
trainer runs, fed a `Rollout` built on the host. Physics that only exists in C (Box2D for
LunarLander, MuJoCo for Hopper) cannot be traced by JAX, so this path is slower per step
than a JAX-native task but works for any environment id gymnasium knows.

Observation normalisation and reward scaling are wrappers around the host vector env,
using the same pure functions (`minirlhf.normalize`) as the JAX trainer.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from minirlhf.normalize import (init_reward_scaler, init_stats, normalize, scale_rewards,
                                update_stats)
from minirlhf.optim import TrainState
from minirlhf.ppo import (PPOConfig, Rollout, action_logprob, init_policy, make_learn, make_optimizer,
                          num_iterations, policy_apply, sample_action)


@dataclass
class HostStep:
    """What one step of E host environments returns (numpy arrays, leading axis E).

    `obs` is the observation to act on next (the reset one after an episode end);
    `final_obs` the one the action really led to. `episode_return` / `episode_length` are
    those of episodes that ended at this step (0 elsewhere), always of the raw rewards.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray


def make_gymnasium(env_id: str, **kwargs) -> gymnasium.Env:
    """gymnasium.make(env_id), with an error that says what is wrong and how to fix it."""
    import minirlhf.envs  # noqa: F401  registers the minirlhf/... ids

    try:
        return gymnasium.make(env_id, **kwargs)
    except gymnasium.error.DependencyNotInstalled as err:
        raise ValueError(f"gymnasium environment {env_id!r} needs an extra: {err}") from None
    except gymnasium.error.Error as err:
        raise ValueError(f"unknown gymnasium environment id {env_id!r} ({err})") from None


class HostVecEnv:
    """E copies of a gymnasium environment that reset in the step their episode ends."""

    def __init__(self, env_id: str, num_envs: int, seed: int):
        self.env_id = env_id
        make_gymnasium(env_id).close()  # fail here, with a clear message, on a bad id
        self.envs = gymnasium.vector.SyncVectorEnv(
            [lambda: make_gymnasium(env_id) for _ in range(num_envs)],
            autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
        self.num_envs = num_envs
        self.seed = seed
        self.observation_space = self.envs.single_observation_space
        self.action_space = self.envs.single_action_space
        if not isinstance(self.observation_space, gymnasium.spaces.Box) or \
                len(self.observation_space.shape) != 1:
            raise ValueError(f"{env_id}: PPO here needs a flat Box observation space, got "
                             f"{self.observation_space}")
        if not isinstance(self.action_space, (gymnasium.spaces.Discrete, gymnasium.spaces.Box)):
            raise ValueError(f"{env_id}: PPO here needs a Discrete or Box action space, got "
                             f"{self.action_space}")
        self.discrete = isinstance(self.action_space, gymnasium.spaces.Discrete)
        self._ret = np.zeros(num_envs)
        self._len = np.zeros(num_envs, np.int64)

    def reset(self) -> np.ndarray:
        obs, _ = self.envs.reset(seed=self.seed)
        self._ret[:] = 0
        self._len[:] = 0
        return obs.astype(np.float32)

    def step(self, action: np.ndarray) -> HostStep:
        if not self.discrete:
            action = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, info = self.envs.step(action)
        done = terminated | truncated
        final_obs = obs.astype(np.float32).copy()
        if done.any():
            for i in np.flatnonzero(done):
                final_obs[i] = info["final_obs"][i]
        self._ret += reward
        self._len += 1
        ep_ret, ep_len = np.where(done, self._ret, 0.0), np.where(done, self._len, 0)
        self._ret[done] = 0
        self._len[done] = 0
        return HostStep(obs.astype(np.float32), reward.astype(np.float32), terminated,
                        truncated & ~terminated, final_obs, ep_ret, ep_len)

    def close(self):
        self.envs.close()


class NormalizeObservation:
    """Normalise observations (and final observations) by their running mean and std."""

    def __init__(self, env, stats=None, update: bool = True):
        self.env = env
        self.stats = init_stats(env.observation_space.shape) if stats is None else stats
        self.update = update
        self._update = jax.jit(update_stats)
        self._norm = jax.jit(normalize)

    def __getattr__(self, name):
        return getattr(self.env, name)

    def _see(self, obs):
        if self.update:
            self.stats = self._update(self.stats, obs)

    def reset(self) -> np.ndarray:
        obs = self.env.reset()
        self._see(obs)
        return np.asarray(self._norm(self.stats, obs))

    def step(self, action) -> HostStep:
        out = self.env.step(action)
        self._see(out.obs)
        out.obs = np.asarray(self._norm(self.stats, out.obs))
        out.final_obs = np.asarray(self._norm(self.stats, out.final_obs))
        return out


class ScaleReward:
    """Divide rewards by the running std of the discounted return (raw episode returns are
    still reported)."""

    def __init__(self, env, gamma: float):
        self.env = env
        self.gamma = gamma
        self.scaler = init_reward_scaler(env.num_envs)
        self._scale = jax.jit(scale_rewards, static_argnums=(3,))

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self):
        return self.env.reset()

    def step(self, action) -> HostStep:
        out = self.env.step(action)
        scaled, self.scaler = self._scale(self.scaler, out.reward,
                                          out.terminated | out.truncated, self.gamma)
        out.reward = np.asarray(scaled)
        return out


class LearnedRewardHost:
    """A host vector env whose reward is replaced by a learned one, r_t = reward(s_t, a_t)
    of the observations acted on and the actions taken (the host twin of
    `learned_reward.LearnedReward`). Dynamics, episode ends and the reported episode returns (counted
    by HostVecEnv from the true rewards) are untouched.

    Args:
        env: a HostVecEnv. reward: (obs (E, O), action (E,) or (E, A)) -> (E,), jittable.
    """

    def __init__(self, env, reward):
        self.env = env
        self.reward = jax.jit(reward)
        self._obs = None

    def __getattr__(self, name):
        if name in ("env", "reward", "_obs"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self) -> np.ndarray:
        self._obs = self.env.reset()
        return self._obs

    def step(self, action) -> HostStep:
        out = self.env.step(action)
        out.reward = np.asarray(self.reward(self._obs, action), np.float32)
        self._obs = out.obs
        return out


def make_host_env(cfg: PPOConfig, seed: int, wrap=None):
    """The wrapped host vector env a run uses: HostVecEnv, then `wrap` (env -> env, e.g. a
    LearnedRewardHost, so it sees raw observations), then normalisation per the config."""
    env = HostVecEnv(cfg.env, cfg.num_envs, seed)
    if wrap is not None:
        env = wrap(env)
    if cfg.norm_obs:
        env = NormalizeObservation(env)
    if cfg.norm_reward:
        env = ScaleReward(env, cfg.gamma)
    return env


def train_gymnasium(cfg: PPOConfig, seed: int, on_iteration=None, wrap=None,
                    on_params=None):
    """Train one agent through the bridge.

    Args:
        cfg: the run's config (cfg.env is a gymnasium id).
        seed: this agent's seed (policy init, sampling and the environments' resets).
        on_iteration: optional callback(iteration, metrics dict of floats), e.g. a progress
            bar and a metrics writer.
        wrap: optional env -> env around the HostVecEnv (see make_host_env).
        on_params: optional callback(iterations done, policy params, obs_stats or None),
            called before training and after every iteration (e.g. to keep snapshots).
    Returns:
        (graphdef, train_state, obs_stats or None, list of per-iteration metric dicts).
    """
    env = make_host_env(cfg, seed, wrap)
    obs_dim = int(env.observation_space.shape[0])
    action_dim = int(env.action_space.n) if env.discrete else int(env.action_space.shape[0])
    key, init_key = jax.random.split(jax.random.key(seed))
    graphdef, params = init_policy(obs_dim, action_dim, env.discrete, cfg, init_key)
    optimizer = make_optimizer(cfg)
    state = TrainState(params=params, opt_state=optimizer.init(params),
                       step=jnp.zeros((), jnp.int32))
    learn = jax.jit(make_learn(cfg, graphdef, optimizer))

    @jax.jit
    def act(params, obs, key):
        out = policy_apply(graphdef, params, obs)
        action = sample_action(key, out)
        return action, action_logprob(out, action), out.value

    values = jax.jit(lambda params, obs: policy_apply(graphdef, params, obs).value)

    T, E = cfg.num_steps, cfg.num_envs
    history = []
    env_steps = 0
    stats = lambda: env.stats if cfg.norm_obs else None
    try:
        obs = env.reset()
        if on_params is not None:
            on_params(0, state.params, stats())
        for it in range(num_iterations(cfg)):
            buf = {k: [] for k in ("obs", "action", "logprob", "value", "reward", "final_obs",
                                   "terminated", "done")}
            episodes, ret_sum, len_sum = 0, 0.0, 0
            for _ in range(T):
                key, sub = jax.random.split(key)
                action, logprob, value = map(np.asarray, act(state.params, obs, sub))
                out = env.step(action)
                for name, val in (("obs", obs), ("action", action), ("logprob", logprob),
                                  ("value", value), ("reward", out.reward),
                                  ("final_obs", out.final_obs),
                                  ("terminated", out.terminated),
                                  ("done", out.terminated | out.truncated)):
                    buf[name].append(val)
                done = out.terminated | out.truncated
                episodes += int(done.sum())
                ret_sum += float(out.episode_return.sum())
                len_sum += int(out.episode_length.sum())
                obs = out.obs
            env_steps += T * E
            stacked = {k: np.stack(v) for k, v in buf.items()}  # (T, E, ...)
            next_value = values(state.params, stacked.pop("final_obs"))
            rollout = Rollout(next_value=next_value, **stacked)
            key, learn_key = jax.random.split(key)
            state, metrics = learn(state, rollout, learn_key)
            record = {k: float(v) for k, v in metrics.items()}
            record.update(episodes=episodes, episode_return_sum=ret_sum,
                          episode_length_sum=len_sum, env_steps=env_steps)
            history.append(record)
            if on_iteration is not None:
                on_iteration(it, record)
            if on_params is not None:
                on_params(it + 1, state.params, stats())
    finally:
        env.close()
    return graphdef, state, stats(), history


def max_episode_steps(env_id: str) -> int:
    """The time limit of a gymnasium task (its registered max_episode_steps)."""
    env = make_gymnasium(env_id)
    try:
        limit = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    if not limit:
        raise ValueError(f"{env_id}: no registered time limit (max_episode_steps); "
                         "demonstrations need one to be padded to")
    return int(limit)


def host_episodes(env_id: str, act, key: jax.Array, n: int, seed: int) -> dict:
    """n whole episodes of a gymnasium task, one per host environment, padded to its time
    limit T (the bridge's twin of `demos.rollout_episodes`; numpy arrays).

    Args:
        act: (obs (n, O), key) -> actions (n,) or (n, A), jittable (e.g. a vmapped
            `demos.agent_policy`). seed: the environments' reset seed.
    Returns:
        {"obs" (n, T, O) acted on, "actions", "rewards" (n, T) true rewards (0 after each
        end), "lengths" (n,), "returns" (n,), "terminated" (n,) bool}.
    """
    T = max_episode_steps(env_id)
    env = HostVecEnv(env_id, n, seed)
    act = jax.jit(act)
    try:
        obs = env.reset()
        done = np.zeros(n, bool)
        terminated = np.zeros(n, bool)
        record = {"obs": [], "actions": [], "rewards": [], "live": []}
        for t in range(T):
            action = np.asarray(act(obs, jax.random.fold_in(key, t)))
            out = env.step(action)
            if not env.discrete:  # what the environment received (HostVecEnv clips)
                action = np.clip(action, env.action_space.low, env.action_space.high)
            for name, value in (("obs", obs), ("actions", action),
                                ("rewards", np.where(done, 0.0, out.reward)),
                                ("live", ~done)):
                record[name].append(value)
            terminated = terminated | (~done & out.terminated)
            done = done | out.terminated | out.truncated
            obs = out.obs
            if done.all():
                break
    finally:
        env.close()
    pad = lambda x: np.concatenate([x, np.zeros((T - x.shape[0],) + x.shape[1:], x.dtype)])
    arrays = {k: np.swapaxes(pad(np.stack(v)), 0, 1) for k, v in record.items()}
    live = arrays.pop("live")
    arrays["rewards"] = arrays["rewards"].astype(np.float32)
    arrays["lengths"] = live.sum(1).astype(np.int32)
    arrays["returns"] = arrays["rewards"].sum(1)
    arrays["terminated"] = terminated
    return arrays
