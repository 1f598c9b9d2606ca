"""Demonstrations of graded quality for learning rewards from them, and their file format.

T-REX (Brown et al. 2019; deck "Large Language Models and RL from Human Feedback", slide
"T-REX") learns a reward from demonstrations that are *ranked*, not from good ones: it
needs some better than others. Its demonstrations came from a learner: "we trained a PPO
agent ... and used checkpoints along its training", early checkpoints poor, later ones
better. `make_demos` does the same on a JAX task (or, through the gymnasium bridge, on
any gymnasium task such as Hopper-v5): train PPO, roll out its policy at
`snapshots` points along training for `episodes` episodes each, and keep the episodes whose
true return is at most a cap -- a third of the way from a random policy to the task's best
by default -- so that every demonstration is clearly suboptimal and beating them means
something. The true return is kept beside each demonstration for ranking and evaluation;
the reward learner itself only ever sees observations (and, optionally, actions).

    demos = make_demos(DemosConfig(env="CartPole-v1"))
    save_demos("demos.npz", demos); demos = load_demos("demos.npz", env="CartPole-v1")

The file is a NumPy .npz read without pickle, so users can bring their own demonstrations:

    obs      (D, T, O) float32  observations acted on, padded after each episode's end
    lengths  (D,) int32         steps of each demonstration, 1 <= length <= T
    rank     (D,) float         higher is better; only the order is used (ties: unordered)
    actions  (D, T) int32 or (D, T, A) float32, optional (behavioural cloning needs them)
    returns  (D,) float32, optional: the true returns, for evaluation only
    rewards  (D, T) float32, optional: the true per-step rewards, for evaluation only
    source   (D,) float32, optional: where each came from (learner iteration, noise level)
    terminated (D,) bool, optional: the episode reached a terminal state (a failure or a
                                 goal), not its time limit; missing: length < T
    env      () str, optional: the task's id

Notation: D demonstrations, T time steps, O observation size, A action size.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from minirlhf.configs import check_positive_ints
from minirlhf.normalize import normalize
from minirlhf.ppo import (PPOConfig, action_bounds, greedy_action, make_train, num_iterations,
                          policy_apply, sample_action, to_env_action)

# Returns of a uniformly random policy and of a good one (gymnasium's "solved" threshold or
# a strong PPO agent's), per built-in task: the scale on which the cap is set.
RETURN_RANGE = {
    "CartPole-v1": (22.0, 500.0),
    "Pendulum-v1": (-1230.0, -150.0),
    "MountainCar-v0": (-200.0, -100.0),
    "Acrobot-v1": (-500.0, -80.0),
    # MuJoCo, through the gymnasium bridge: a random policy's return and gymnasium's
    # reward_threshold for the v4 tasks (3800, 4800).
    "Hopper-v5": (18.0, 3800.0),
    "HalfCheetah-v5": (-280.0, 4800.0),
}


@dataclass(frozen=True)
class Demonstrations:
    """Ranked demonstrations (see the module docstring for the fields). Host arrays."""

    obs: np.ndarray
    lengths: np.ndarray
    rank: np.ndarray
    actions: np.ndarray | None = None
    returns: np.ndarray | None = None
    source: np.ndarray | None = None
    rewards: np.ndarray | None = None
    env: str = ""
    terminated: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.obs.shape[0])

    def ended(self) -> np.ndarray:
        """(D,) bool: which demonstrations reached a terminal state (`terminated`, or where
        it is missing, those shorter than the obs array's T)."""
        if self.terminated is not None:
            return np.asarray(self.terminated, bool)
        return np.asarray(self.lengths) < self.obs.shape[1]

    def subset(self, index) -> "Demonstrations":
        """The demonstrations at `index` (an index array or a boolean mask)."""
        pick = lambda x: None if x is None else np.asarray(x)[index]
        return Demonstrations(obs=pick(self.obs), lengths=pick(self.lengths),
                              rank=pick(self.rank), actions=pick(self.actions),
                              returns=pick(self.returns), source=pick(self.source),
                              rewards=pick(self.rewards), env=self.env,
                              terminated=pick(self.terminated))


def validate_demos(demos: Demonstrations, obs_dim: int | None = None,
                   where: str = "demonstrations", min_ranks: int = 2) -> None:
    """Raise ValueError, naming the field and what was expected, unless `demos` is usable.

    Args:
        obs_dim: the task's observation size O, if known.
        where: how to name the data in messages (a file path).
        min_ranks: the fewest distinct ranks needed (T-REX compares demonstrations of
            different ranks; 1 for behavioural cloning alone).
    """
    obs = np.asarray(demos.obs)
    if obs.ndim != 3:
        raise ValueError(f"{where}: obs must have shape (D, T, O), got {obs.shape}")
    D, T, O = obs.shape
    if obs_dim is not None and O != obs_dim:
        raise ValueError(f"{where}: observations have {O} features, but the task's "
                         f"observation has {obs_dim}")
    lengths = np.asarray(demos.lengths)
    if lengths.shape != (D,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"{where}: lengths must be ({D},) integers, got shape "
                         f"{lengths.shape} dtype {lengths.dtype}")
    if D and (lengths.min() < 1 or lengths.max() > T):
        bad = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
        raise ValueError(f"{where}: demonstration {bad} has length {lengths[bad]}, expected "
                         f"1 to {T} (the obs array's T)")
    rank = np.asarray(demos.rank)
    if rank.shape != (D,) or not np.isfinite(rank.astype(float)).all():
        raise ValueError(f"{where}: rank must be ({D},) finite numbers, got shape "
                         f"{rank.shape}")
    if D and not np.isfinite(obs[np.arange(T)[None, :] < lengths[:, None]]).all():
        raise ValueError(f"{where}: obs holds NaN or infinite values")
    for name in ("returns", "source", "terminated"):
        value = getattr(demos, name)
        if value is not None and np.asarray(value).shape != (D,):
            raise ValueError(f"{where}: {name} must have shape ({D},), got "
                             f"{np.asarray(value).shape}")
    if demos.rewards is not None and np.asarray(demos.rewards).shape != (D, T):
        raise ValueError(f"{where}: rewards must have shape ({D}, {T}), got "
                         f"{np.asarray(demos.rewards).shape}")
    if demos.actions is not None:
        actions = np.asarray(demos.actions)
        if actions.shape[:2] != (D, T) or actions.ndim not in (2, 3):
            raise ValueError(f"{where}: actions must have shape ({D}, {T}) or ({D}, {T}, A), "
                             f"got {actions.shape}")
    if len(np.unique(rank)) < min_ranks:
        raise ValueError(f"{where}: {D} demonstration(s) with {len(np.unique(rank))} distinct "
                         f"rank(s); at least {min_ranks} are needed")


def save_demos(path: str | Path, demos: Demonstrations) -> None:
    """Write demonstrations as .npz, atomically (a temporary file, then a rename)."""
    validate_demos(demos, where=str(path), min_ranks=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"obs": np.asarray(demos.obs, np.float32),
              "lengths": np.asarray(demos.lengths, np.int32),
              "rank": np.asarray(demos.rank, np.float64), "env": np.asarray(demos.env)}
    for name in ("actions", "returns", "source", "rewards", "terminated"):
        if getattr(demos, name) is not None:
            arrays[name] = np.asarray(getattr(demos, name))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_demos(path: str | Path, env: str | None = None, obs_dim: int | None = None,
               min_ranks: int = 2) -> Demonstrations:
    """Read and validate a demonstrations file (no pickle); errors name the file and field.

    Args:
        env: the task these demonstrations must be of (checked if the file names one).
        obs_dim: the task's observation size.
        min_ranks: see `validate_demos`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no demonstrations file {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a NumPy .npz file of arrays ({err})") from None
    for name in ("obs", "lengths", "rank"):
        if name not in arrays:
            raise ValueError(f"{path}: missing the array {name!r} (has {sorted(arrays)})")
    file_env = str(arrays["env"]) if "env" in arrays else ""
    if env and file_env and file_env != env:
        raise ValueError(f"{path}: demonstrations of {file_env!r}, not of {env!r}")
    demos = Demonstrations(obs=arrays["obs"].astype(np.float32), lengths=arrays["lengths"],
                           rank=arrays["rank"], actions=arrays.get("actions"),
                           returns=arrays.get("returns"), source=arrays.get("source"),
                           rewards=arrays.get("rewards"), env=file_env or (env or ""),
                           terminated=arrays.get("terminated"))
    validate_demos(demos, obs_dim, str(path), min_ranks)
    return demos


# --- rolling a policy out ------------------------------------------------------------------


@struct.dataclass
class Episodes:
    """n episodes of a JAX task, padded to the time limit T (device arrays).

    obs (n, T, O) acted on; actions (n, T) or (n, T, A) as sampled; rewards (n, T) true
    rewards; lengths (n,); returns (n,) the sum of each episode's rewards; terminated (n,)
    bool, whether it ended in a terminal state rather than at the time limit.
    """

    obs: jax.Array
    actions: jax.Array
    rewards: jax.Array
    lengths: jax.Array
    returns: jax.Array
    terminated: jax.Array


def rollout_episodes(env, act, key: jax.Array, n: int, params=None) -> Episodes:
    """n whole episodes of a JAX task (not AutoReset-wrapped), in one vmapped scan.

    Each episode runs the task's full time limit T = params.max_steps; steps after its end
    are masked (lengths) and their rewards 0. Pure and jittable given a static n.

    Args:
        env: a `JaxEnv`. act: (obs (O,), key) -> action, the policy.
        key: PRNG key. n: episodes. params: the task's params (default ones if None).
    """
    params = env.default_params() if params is None else params
    T = int(params.max_steps)

    def episode(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)

        def step(carry, key):
            obs, state, done = carry
            act_key, step_key = jax.random.split(key)
            action = act(obs, act_key)
            next_obs, next_state, reward, terminated, truncated, _ = env.step(
                step_key, state, action, params)
            live = ~done
            out = (obs, action, jnp.where(live, reward, 0.0), live, live & terminated)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(done, b, a), new, old)
            return (keep(next_obs, obs), keep(next_state, state),
                    done | terminated | truncated), out

        _, (obs, actions, rewards, live, ends) = jax.lax.scan(
            step, (obs, state, jnp.zeros((), bool)), jax.random.split(key, T))
        return Episodes(obs=obs, actions=actions, rewards=rewards,
                        lengths=jnp.sum(live).astype(jnp.int32), returns=jnp.sum(rewards),
                        terminated=jnp.any(ends))

    return jax.vmap(episode)(jax.random.split(key, n))


def agent_policy(graphdef, params, obs_stats, cfg: PPOConfig, bounds, greedy: bool = False):
    """(obs, key) -> the action a PPO agent takes (its observation normalisation applied)."""
    def act(obs, key):
        if cfg.norm_obs:
            obs = normalize(obs_stats, obs)
        out = policy_apply(graphdef, params, obs)
        action = greedy_action(out) if greedy else sample_action(key, out)
        return to_env_action(action, bounds)
    return act


# --- demonstrations from a learner ---------------------------------------------------------


def _learner(env: str) -> PPOConfig:
    """PPO settings that learn `env` step by step (the tuned presets, the Hopper one for
    both MuJoCo tasks, and for MountainCar -- whose true reward alone defeats the default
    PPO -- more environments and normalised observations, which solve it in 3M steps)."""
    from minirlhf.ppo import PRESETS

    presets = {"CartPole-v1": PRESETS["cartpole"], "Pendulum-v1": PRESETS["pendulum"],
               "Acrobot-v1": PRESETS["acrobot"], "Hopper-v5": PRESETS["hopper"],
               "HalfCheetah-v5": dataclasses.replace(PRESETS["hopper"], env="HalfCheetah-v5"),
               "MountainCar-v0": PPOConfig(env="MountainCar-v0", total_steps=3_000_000,
                                           num_envs=16, norm_obs=True, ent_coef=0.01)}
    return presets.get(env, PPOConfig(env=env))


@dataclass(frozen=True)
class DemosConfig:
    """Making demonstrations of graded quality from a PPO learner's snapshots."""

    env: str = "CartPole-v1"
    """The task: a JAX one (see minirlhf.envs.GYM_TASKS) or a gymnasium id (bridge)."""
    seed: int = 0
    """Seed of the learner and of the rollouts."""
    learner: PPOConfig | None = None
    """The learner's PPO settings; None: tuned ones for the task (`_learner`)."""
    learner_steps: int = 0
    """Environment steps the learner trains for; 0: its config's total_steps."""
    snapshots: int = 20
    """Policies saved along the learner's training (evenly spaced), each rolled out."""
    episodes: int = 3
    """Episodes rolled out per snapshot (sampled actions, as the learner acts)."""
    cap_fraction: float = 1 / 3
    """Keep episodes whose return is at most this fraction of the way from a random policy's
    return to a good one's (RETURN_RANGE): clearly suboptimal demonstrations."""
    max_return: float = float("nan")
    """An explicit cap on the demonstrations' return (NaN: from cap_fraction)."""
    rank_by: Literal["return", "progress"] = "return"
    """How the demonstrations are ranked: by their true return (T-REX's experiments), or by
    the learner's progress, the iteration of the snapshot that made them (for a task where
    every capped demonstration scores the same, e.g. MountainCar's -200 for not reaching
    the flag: later snapshots fail better, swinging higher)."""

    def __post_init__(self):
        check_positive_ints(self, "snapshots", "episodes")
        if not isinstance(self.learner_steps, int) or self.learner_steps < 0:
            raise ValueError(f"DemosConfig.learner_steps must be an integer >= 0, got "
                             f"{self.learner_steps!r}")
        if not 0 < self.cap_fraction <= 1:
            raise ValueError(f"DemosConfig.cap_fraction must be in (0, 1], got "
                             f"{self.cap_fraction!r}")
        if self.rank_by not in ("return", "progress"):
            raise ValueError(f"DemosConfig.rank_by must be 'return' or 'progress', got "
                             f"{self.rank_by!r}")
        if np.isnan(self.max_return) and self.env not in RETURN_RANGE:
            raise ValueError(f"DemosConfig.env={self.env!r} has no known return range; give "
                             f"max_return (known: {sorted(RETURN_RANGE)})")

    def cap(self) -> float:
        """The highest return a demonstration may have."""
        if not np.isnan(self.max_return):
            return float(self.max_return)
        low, high = RETURN_RANGE[self.env]
        return low + self.cap_fraction * (high - low)

    def learner_config(self) -> PPOConfig:
        cfg = self.learner or _learner(self.env)
        cfg = dataclasses.replace(cfg, env=self.env, seed=self.seed, num_seeds=1)
        if self.learner_steps:
            cfg = dataclasses.replace(cfg, total_steps=self.learner_steps)
        return cfg


def make_demos(cfg: DemosConfig, progress_fn=None) -> tuple[Demonstrations, dict]:
    """Train a PPO learner on cfg.env and collect demonstrations from its snapshots.

    Returns:
        (demos, info): demonstrations ranked by cfg.rank_by, `source` the learner's
        iteration; info holds the cap, every collected episode's return and the learner's
        final return.
    """
    from minirlhf.envs import make_env
    from minirlhf.envs.core import AutoReset
    from minirlhf.gym_train import resolve_backend
    from minirlhf.ppo import init_agents

    learner = cfg.learner_config()
    if resolve_backend(learner) != "jax":
        return _make_demos_host(cfg, learner, progress_fn)
    raw_env = make_env(cfg.env)
    graphdef, init, run, _ = make_train(learner, AutoReset(raw_env))
    n_iter = num_iterations(learner)
    chunk = max(1, n_iter // cfg.snapshots)
    run_chunk = jax.jit(lambda r: run(r, chunk))
    bounds = action_bounds(raw_env)
    T = int(raw_env.default_params().max_steps)

    @jax.jit
    def collect(params, stats, key):
        act = agent_policy(graphdef, params, stats, learner, bounds)
        return rollout_episodes(raw_env, act, key, cfg.episodes)

    runner = jax.tree.map(lambda x: x[0], init_agents(init, [jax.random.key(cfg.seed)]))
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    parts, sources = [], []
    for s in range(cfg.snapshots + 1):
        if s:
            runner, _ = run_chunk(runner)
        eps = jax.device_get(collect(runner.train.params, runner.obs_stats,
                                     jax.random.fold_in(key, s)))
        parts.append(eps)
        sources += [s * chunk] * cfg.episodes
        if progress_fn is not None:
            progress_fn(s, float(np.mean(eps.returns)))
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    return _capped(cfg, cat, sources, float(np.mean(parts[-1].returns)), T)


def _capped(cfg: DemosConfig, cat, sources: list, final_return: float, T: int):
    """(demos, info) from every snapshot's episodes (cat(field) concatenates them): those
    under the cap, ranked by cfg.rank_by."""
    returns = cat("returns")
    keep = returns <= cfg.cap() + 1e-6
    sources = np.asarray(sources, np.float32)
    rank = returns if cfg.rank_by == "return" else sources
    demos = Demonstrations(obs=cat("obs")[keep], lengths=cat("lengths")[keep],
                           rank=rank[keep].astype(np.float64), actions=cat("actions")[keep],
                           returns=returns[keep], source=sources[keep],
                           rewards=cat("rewards")[keep], env=cfg.env,
                           terminated=cat("terminated")[keep])
    info = {"cap": cfg.cap(), "all_returns": returns.tolist(), "kept": int(keep.sum()),
            "learner_final_return": final_return, "T": T}
    validate_demos(demos, where=f"demonstrations of {cfg.env} under the cap {cfg.cap():.1f}")
    return demos, info


def _make_demos_host(cfg: DemosConfig, learner: PPOConfig, progress_fn=None):
    """make_demos through the gymnasium bridge (MuJoCo tasks): the learner trains with
    `gym_bridge.train_gymnasium`, keeping its policy at the snapshot iterations, and each
    snapshot is rolled out in host environments (`task_episodes`)."""
    from minirlhf.gym_bridge import train_gymnasium

    task = BridgeTask(cfg.env)
    bounds = action_bounds(task)
    chunk = max(1, num_iterations(learner) // cfg.snapshots)
    kept = []

    def keep(done, params, stats):
        if done % chunk == 0 and done // chunk <= cfg.snapshots:
            kept.append((done, params, stats))

    graphdef, _, _, _ = train_gymnasium(learner, cfg.seed, on_params=keep)
    key = jax.random.fold_in(jax.random.key(cfg.seed), 1)
    parts, sources = [], []
    for s, (done, params, stats) in enumerate(kept):
        act = agent_policy(graphdef, params, stats, learner, bounds)
        eps = task_episodes(task, act, jax.random.fold_in(key, s), cfg.episodes)
        parts.append(eps)
        sources += [done] * cfg.episodes
        if progress_fn is not None:
            progress_fn(s, float(np.mean(eps.returns)))
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    return _capped(cfg, cat, sources, float(np.mean(parts[-1].returns)), task.max_steps)


class BridgeTask:
    """A gymnasium task run through the bridge, with what the demonstration code reads of a
    JaxEnv: `name`, `observation_space`, `action_space`, `discrete` and its time limit
    `max_steps`. Roll it out with `task_episodes`."""

    def __init__(self, env_id: str):
        from minirlhf.gym_bridge import HostVecEnv, max_episode_steps

        probe = HostVecEnv(env_id, 1, 0)  # a bad id or unsupported spaces fail here
        probe.close()
        self.name = env_id
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        self.discrete = probe.discrete
        self.max_steps = max_episode_steps(env_id)


def task_episodes(env, act, key: jax.Array, n: int) -> Episodes:
    """n whole episodes of `env` under the policy act(obs (O,), key) -> action: a JaxEnv in
    one jitted, vmapped scan (`rollout_episodes`), a BridgeTask in n host environments
    (`gym_bridge.host_episodes`, act vmapped over them). Host arrays."""
    if not isinstance(env, BridgeTask):
        return jax.device_get(jax.jit(lambda k: rollout_episodes(env, act, k, n))(key))
    from minirlhf.gym_bridge import host_episodes

    batched = lambda obs, k: jax.vmap(act)(obs, jax.random.split(k, obs.shape[0]))
    reset_key, key = jax.random.split(key)
    seed = int(jax.random.randint(reset_key, (), 0, 2**31 - 1))
    return Episodes(**host_episodes(env.name, batched, key, n, seed))


# Starting points per task: a learner budget that passes the cap well inside the run, so
# that many snapshots fall under it (the presets train far past it).
DEMO_PRESETS: dict[str, DemosConfig] = {
    "CartPole-v1": DemosConfig(env="CartPole-v1", learner_steps=100_000, snapshots=30),
    "Pendulum-v1": DemosConfig(env="Pendulum-v1", learner_steps=100_000, snapshots=30),
    "MountainCar-v0": DemosConfig(env="MountainCar-v0", snapshots=30, rank_by="progress"),
    # ppo.PRESETS["acrobot"] passes the cap (-360) near 100k steps; five episodes per
    # snapshot give a dozen demonstrations that swing up besides the ones at -500.
    "Acrobot-v1": DemosConfig(env="Acrobot-v1", learner_steps=100_000, snapshots=30,
                              episodes=5),
    # Through the bridge (about 1,000 steps/s on 2 cores): ppo.PRESETS["hopper"] passes the
    # cap (1,279) near 300k steps; stopping it at 200k keeps most snapshots well under.
    "Hopper-v5": DemosConfig(env="Hopper-v5", learner_steps=200_000, snapshots=30),
    "HalfCheetah-v5": DemosConfig(env="HalfCheetah-v5", learner_steps=200_000, snapshots=30),
}
