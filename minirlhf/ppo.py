"""Proximal policy optimisation (Schulman et al. 2017), written once.

Three pieces, from the most general to the most specific:

1. `make_update(loss_fn, optimizer, epochs, minibatches)`: PPO's optimisation phase --
   several epochs over the collected batch, each shuffled into minibatches, all in
   `lax.scan`. It knows nothing about where the batch came from; the language-model PPO of
   `rollout.py` reuses it with its own per-token loss.
2. `make_learn(cfg, graphdef, optimizer)`: a gym agent's learning step: GAE on a time-major
   `Rollout`, then `make_update` with `ppo_loss` (clipped surrogate + value loss - entropy
   bonus). The pure-JAX trainer and the gymnasium bridge (`gym_bridge.py`) both call it.
3. `make_train(cfg, env)`: for a JAX-native task, the whole run -- vectorised rollout and
   update, iteration after iteration -- is one jitted `lax.scan`, and `jax.vmap` over PRNG
   keys trains several seeds at once.

The hyperparameter defaults are CleanRL's `ppo.py` (Huang et al. 2022, "The 37
Implementation Details of PPO"), which solve CartPole-v1 in 500k steps.

Notation: T steps per rollout (`num_steps`), E parallel environments, O observation size,
A action dimensions (continuous) or number of actions (discrete), M minibatch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from minirlhf.advantages import gae
from minirlhf.distributions import (categorical_sample, entropy, gaussian_entropy,
                                    gaussian_logprob, gaussian_sample, token_logprobs, whiten)
from minirlhf.losses import (approx_kl, clip_fraction, clipped_surrogate_loss,
                             clipped_value_loss, value_loss)
from minirlhf.normalize import (RewardScaler, RunningStats, init_reward_scaler, init_stats,
                                normalize, scale_rewards, update_stats)
from minirlhf.optim import TrainState


@dataclass(frozen=True)
class PPOConfig:
    """PPO on a gym task. Defaults: CleanRL's ppo.py for CartPole-v1."""

    env: str = "CartPole-v1"
    """Task id: a JAX-native port (CartPole-v1, Acrobot-v1, MountainCar-v0, Pendulum-v1) or
    any gymnasium id (e.g. LunarLander-v3), which runs through the gymnasium bridge."""
    backend: Literal["auto", "jax", "gymnasium"] = "auto"
    """auto: the JAX port if one exists, else gymnasium; gymnasium: force the bridge (e.g.
    gymnasium's own CartPole-v1)."""
    seed: int = 0
    """Seed of the first agent; agent i uses seed + i."""
    num_seeds: int = 1
    """Independent agents trained side by side (vmapped on the JAX path)."""
    total_steps: int = 500_000
    """Environment steps per agent (summed over its parallel environments)."""
    num_envs: int = 4
    """E: parallel environments per agent."""
    num_steps: int = 128
    """T: steps per environment in each rollout; a rollout holds E * T transitions."""
    lr: float = 2.5e-4
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda: 0 is one-step TD, 1 is Monte Carlo."""
    num_minibatches: int = 4
    """Minibatches per epoch; must divide E * T."""
    update_epochs: int = 4
    """Passes over each rollout."""
    norm_adv: bool = True
    """Normalise advantages to mean 0, std 1 within each minibatch."""
    clip_eps: float = 0.2
    """Epsilon of the clipped surrogate (and of the clipped value loss)."""
    clip_vloss: bool = True
    """Use the clipped value loss of PPO2 instead of plain squared error."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this (0 disables)."""
    hidden: int = 64
    """Width of the actor's and the critic's hidden layers."""
    depth: int = 2
    """Hidden layers in each of actor and critic."""
    norm_obs: bool = False
    """Normalise observations by running mean and std (saved with the policy)."""
    norm_reward: bool = False
    """Scale rewards by the running std of the discounted return."""
    init_log_std: float = 0.0
    """Initial log standard deviation of a continuous policy."""

    def __post_init__(self):
        for name in ("num_seeds", "total_steps", "num_envs", "num_steps", "num_minibatches",
                     "update_epochs", "hidden", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PPOConfig.{name} must be a positive integer, got {value!r}")
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"PPOConfig: the rollout batch num_envs * num_steps = {self.num_envs} * "
                f"{self.num_steps} = {batch} does not divide into num_minibatches="
                f"{self.num_minibatches} equal minibatches")
        if self.total_steps < batch:
            raise ValueError(f"PPOConfig.total_steps={self.total_steps} is less than one "
                             f"rollout (num_envs * num_steps = {batch})")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"PPOConfig.gamma and gae_lambda must be in [0, 1], got "
                             f"{self.gamma!r} and {self.gae_lambda!r}")
        if not self.lr > 0 or not self.clip_eps > 0:
            raise ValueError(f"PPOConfig.lr and clip_eps must be > 0, got {self.lr!r} and "
                             f"{self.clip_eps!r}")


def num_iterations(cfg: PPOConfig) -> int:
    """Rollout-and-update iterations in a run: total_steps // (E * T)."""
    return cfg.total_steps // (cfg.num_envs * cfg.num_steps)


# Tuned starting points (CleanRL / rl-baselines3-zoo): `--preset NAME` on the command line.
PRESETS: dict[str, PPOConfig] = {
    "cartpole": PPOConfig(),
    "acrobot": PPOConfig(env="Acrobot-v1", ent_coef=0.0),
    "pendulum": PPOConfig(env="Pendulum-v1", total_steps=200_000, num_envs=4, num_steps=512,
                          lr=1e-3, gamma=0.9, num_minibatches=32, update_epochs=10,
                          ent_coef=0.0, clip_vloss=False, norm_obs=True, norm_reward=True,
                          max_grad_norm=0.5),
    "lunarlander": PPOConfig(env="LunarLander-v3", total_steps=1_000_000, num_envs=8,
                             num_steps=256, lr=3e-4, gamma=0.999, gae_lambda=0.98,
                             num_minibatches=8, update_epochs=4, norm_obs=True),
    "hopper": PPOConfig(env="Hopper-v5", total_steps=1_000_000, num_envs=1, num_steps=2048,
                        lr=3e-4, num_minibatches=32, update_epochs=10, ent_coef=0.0,
                        norm_obs=True, norm_reward=True, clip_vloss=False),
}


# --- the policy --------------------------------------------------------------------------


@struct.dataclass
class PolicyOutput:
    """pi(.|s) and V(s) for a batch of observations.

    Attributes:
        logits: (..., A) action logits (discrete) or Gaussian means (continuous).
        log_std: (A,) log standard deviations (continuous) or None (discrete).
        value: (...) V(s).
    """

    logits: jax.Array
    log_std: jax.Array | None
    value: jax.Array


def _orthogonal_linear(d_in: int, d_out: int, scale: float, rngs: nnx.Rngs) -> nnx.Linear:
    # Orthogonal weights, zero biases; output layers scaled down (0.01 for the policy, so
    # the first policy is near uniform) -- detail 2 of Huang et al. 2022.
    return nnx.Linear(d_in, d_out, kernel_init=nnx.initializers.orthogonal(scale),
                      bias_init=nnx.initializers.zeros, rngs=rngs)


class ActorCritic(nnx.Module):
    """Separate actor and critic MLPs with tanh (CleanRL's `Agent`), and a state-independent
    log std for continuous actions."""

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, hidden: int, depth: int,
                 init_log_std: float, rngs: nnx.Rngs):
        def mlp(d_out: int, out_scale: float):
            sizes = [obs_dim] + [hidden] * depth
            layers = [_orthogonal_linear(a, b, math.sqrt(2), rngs)
                      for a, b in zip(sizes, sizes[1:])]
            return nnx.List(layers + [_orthogonal_linear(hidden, d_out, out_scale, rngs)])

        self.actor = mlp(action_dim, 0.01)
        self.critic = mlp(1, 1.0)
        self.discrete = discrete
        self.log_std = None if discrete else nnx.Param(jnp.full((action_dim,), init_log_std))

    @staticmethod
    def _run(layers, x):
        for layer in layers[:-1]:
            x = jnp.tanh(layer(x))
        return layers[-1](x)

    def __call__(self, obs: jax.Array) -> PolicyOutput:
        obs = obs.astype(jnp.float32)
        return PolicyOutput(logits=self._run(self.actor, obs),
                            log_std=None if self.discrete else self.log_std[...],
                            value=self._run(self.critic, obs)[..., 0])


def init_policy(obs_dim: int, action_dim: int, discrete: bool, cfg: PPOConfig,
                key: jax.Array) -> tuple[nnx.GraphDef, nnx.State]:
    """(graphdef, params) of a fresh ActorCritic."""
    model = ActorCritic(obs_dim, action_dim, discrete, cfg.hidden, cfg.depth,
                        cfg.init_log_std, nnx.Rngs(key))
    return nnx.split(model)


def policy_apply(graphdef: nnx.GraphDef, params: nnx.State, obs: jax.Array) -> PolicyOutput:
    """The pure forward pass: obs (..., O) -> PolicyOutput."""
    return nnx.merge(graphdef, params)(obs)


def sample_action(key: jax.Array, out: PolicyOutput) -> jax.Array:
    """a ~ pi(.|s): (...) int32 for discrete actions, (..., A) float32 for continuous."""
    if out.log_std is None:
        return categorical_sample(key, out.logits)
    return gaussian_sample(key, out.logits, out.log_std)


def greedy_action(out: PolicyOutput) -> jax.Array:
    """The most likely action (argmax, or the Gaussian mean): for evaluation."""
    if out.log_std is None:
        return jnp.argmax(out.logits, axis=-1).astype(jnp.int32)
    return out.logits


def action_logprob(out: PolicyOutput, action: jax.Array) -> jax.Array:
    """log pi(a|s). (...)"""
    if out.log_std is None:
        return token_logprobs(out.logits, action)
    return gaussian_logprob(action, out.logits, out.log_std)


def action_entropy(out: PolicyOutput) -> jax.Array:
    """H(pi(.|s)). (...)"""
    if out.log_std is None:
        return entropy(out.logits)
    return gaussian_entropy(out.logits, out.log_std)


# --- the update: epochs x minibatches, generic over the loss -----------------------------


def make_update(loss_fn: Callable[[Any, Any], tuple[jax.Array, dict]] | None,
                optimizer: optax.GradientTransformation, update_epochs: int,
                num_minibatches: int, grad_fn: Callable | None = None,
                step_if: Callable[[Any], jax.Array] | None = None):
    """PPO's optimisation phase over a collected batch, generic over the loss.

    Each epoch shuffles the batch along its leading axis and splits it into
    `num_minibatches` equal minibatches; each minibatch is one gradient step. Both loops
    are `lax.scan`s, so the whole phase compiles into the caller's jit.

    Args:
        loss_fn: (params, minibatch) -> (scalar loss, dict of scalar metrics).
        optimizer: an optax transformation.
        update_epochs, num_minibatches: as in PPOConfig.
        grad_fn: (params, minibatch) -> ((loss, metrics), grads), in place of
            `jax.value_and_grad(loss_fn, has_aux=True)`: e.g. a minibatch's gradient summed
            over microbatches (`optim.accumulate_gradients`, as GRPO does); loss_fn is then
            unused.
        step_if: minibatch -> scalar bool; where False the step is skipped (the state is
            kept as it was), e.g. for a minibatch with nothing in its loss, where Adam would
            otherwise still move the parameters along its momentum.
    Returns:
        update(state, batch, key) -> (state, metrics): batch is a pytree of arrays with a
        common leading size divisible by num_minibatches; each metric is averaged over all
        epochs x minibatches gradient steps.
    """

    if loss_fn is None and grad_fn is None:
        raise ValueError("make_update needs a loss_fn or a grad_fn")
    value_and_grad = grad_fn if grad_fn is not None else \
        jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(state: TrainState, minibatch):
        (loss, metrics), grads = value_and_grad(state.params, minibatch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state, step=state.step + 1)
        if step_if is not None:
            take = step_if(minibatch)
            new = jax.tree.map(lambda n, o: jnp.where(take, n, o), new, state)
        return new, dict(metrics, loss=loss)

    def update(state: TrainState, batch, key: jax.Array):
        n = jax.tree.leaves(batch)[0].shape[0]
        if n % num_minibatches:
            raise ValueError(f"a batch of {n} does not split into {num_minibatches} "
                             "equal minibatches")

        def epoch(state: TrainState, epoch_key):
            order = jax.random.permutation(epoch_key, n)
            split = lambda x: x[order].reshape(num_minibatches, n // num_minibatches,
                                               *x.shape[1:])
            return jax.lax.scan(minibatch_step, state, jax.tree.map(split, batch))

        state, metrics = jax.lax.scan(epoch, state, jax.random.split(key, update_epochs))
        return state, jax.tree.map(lambda m: jnp.mean(m, axis=(0, 1)), metrics)

    return update


def make_optimizer(cfg: PPOConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5, as CleanRL) after global-norm clipping, with linear LR annealing."""
    total = num_iterations(cfg) * cfg.update_epochs * cfg.num_minibatches
    lr = optax.linear_schedule(cfg.lr, 0.0, total) if cfg.anneal_lr else cfg.lr
    parts = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    return optax.chain(*parts, optax.adam(lr, eps=1e-5))


# --- the gym agent's loss and learning step ---------------------------------------------


@struct.dataclass
class Rollout:
    """E environments x T steps of experience, time-major.

    Attributes:
        obs: (T, E, O) observations acted on (normalised, if the run normalises).
        action: (T, E) int32 or (T, E, A) float32, as sampled (before clipping to bounds).
        logprob: (T, E) log pi_old(a_t|s_t). value: (T, E) V_old(s_t).
        reward: (T, E) r_t (scaled, if the run scales rewards).
        next_value: (T, E) V_old(s'_t) of the state the action led to (the final state of
            the episode where one ended).
        terminated: (T, E) bool. done: (T, E) bool, terminated or truncated.
    """

    obs: jax.Array
    action: jax.Array
    logprob: jax.Array
    value: jax.Array
    reward: jax.Array
    next_value: jax.Array
    terminated: jax.Array
    done: jax.Array


@struct.dataclass
class PPOBatch:
    """Flattened transitions for the update: every field has leading size E * T."""

    obs: jax.Array
    action: jax.Array
    logprob: jax.Array
    value: jax.Array
    advantage: jax.Array
    ret: jax.Array


def ppo_loss(graphdef: nnx.GraphDef, cfg: PPOConfig, params: nnx.State,
             mb: PPOBatch) -> tuple[jax.Array, dict]:
    """L = L_clip + vf_coef * L_V - ent_coef * H, on one minibatch, with diagnostics."""
    out = policy_apply(graphdef, params, mb.obs)
    logp = action_logprob(out, mb.action)
    adv = whiten(mb.advantage) if cfg.norm_adv else mb.advantage
    pg = clipped_surrogate_loss(logp, mb.logprob, adv, cfg.clip_eps)
    if cfg.clip_vloss:
        vl = clipped_value_loss(out.value, mb.value, mb.ret, cfg.clip_eps)
    else:
        vl = value_loss(out.value, mb.ret)
    ent = jnp.mean(action_entropy(out))
    loss = pg + cfg.vf_coef * vl - cfg.ent_coef * ent
    return loss, {"policy_loss": pg, "value_loss": vl, "entropy": ent,
                  "approx_kl": approx_kl(logp, mb.logprob),
                  "clip_fraction": clip_fraction(logp, mb.logprob, cfg.clip_eps)}


def make_learn(cfg: PPOConfig, graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation):
    """learn(state, rollout, key) -> (state, metrics): GAE, then the PPO update."""
    update = make_update(lambda p, mb: ppo_loss(graphdef, cfg, p, mb), optimizer,
                         cfg.update_epochs, cfg.num_minibatches)

    def learn(state: TrainState, rollout: Rollout, key: jax.Array):
        adv, ret = gae(rollout.reward, rollout.value, rollout.next_value, rollout.terminated,
                       rollout.done, cfg.gamma, cfg.gae_lambda)
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # (T, E, ...) -> (T * E, ...)
        batch = PPOBatch(obs=flat(rollout.obs), action=flat(rollout.action),
                         logprob=flat(rollout.logprob), value=flat(rollout.value),
                         advantage=flat(adv), ret=flat(ret))
        state, metrics = update(state, batch, key)
        # Fraction of the critic's target variance it explains (1 is perfect, <= 0 useless).
        var_ret = jnp.var(ret)
        metrics["explained_variance"] = jnp.where(
            var_ret > 0, 1.0 - jnp.var(ret - rollout.value) / var_ret, jnp.nan)
        return state, metrics

    return learn


# --- pure-JAX training on a JAX-native task -----------------------------------------------


@struct.dataclass
class RunnerState:
    """Everything the trainer carries from iteration to iteration (one agent).

    Attributes:
        train: params, optimiser state and update count.
        env_state: (E,) batched AutoResetState of the environments.
        obs: (E, O) raw observations to act on next.
        obs_stats: RunningStats of observations (unused unless cfg.norm_obs).
        reward_scaler: RewardScaler (unused unless cfg.norm_reward).
        env_steps: () int32 environment steps taken so far.
        key: PRNG key.
    """

    train: TrainState
    env_state: Any
    obs: jax.Array
    obs_stats: RunningStats
    reward_scaler: RewardScaler
    env_steps: jax.Array
    key: jax.Array


@struct.dataclass
class StepRecord:
    """One rollout step: the transition, plus the episode statistics for logging."""

    transition: Rollout
    episode_return: jax.Array  # (E,) raw return of episodes that ended here, else 0
    episode_length: jax.Array  # (E,)
    episode_done: jax.Array  # (E,) bool


def action_bounds(env) -> tuple[jax.Array, jax.Array] | None:
    """(low, high) of a continuous action space; None for a discrete one."""
    if env.discrete:
        return None
    return (jnp.asarray(env.action_space.low, jnp.float32),
            jnp.asarray(env.action_space.high, jnp.float32))


def to_env_action(action: jax.Array, bounds) -> jax.Array:
    """The action the environment receives: clipped to its bounds if continuous (the
    policy's log-prob is of the unclipped sample, as CleanRL's ClipAction wrapper does)."""
    return action if bounds is None else jnp.clip(action, bounds[0], bounds[1])


def make_train(cfg: PPOConfig, env):
    """The pure-JAX trainer for a JAX-native task (an `envs.core.AutoReset`-wrapped JaxEnv).

    Returns:
        (graphdef, init, run, train):
        init(key) -> RunnerState;
        run(runner, n) -> (runner, metrics), n iterations in one `lax.scan` (n static);
            metrics are (n,) arrays per name, including "episode_return_sum" and
            "episodes" (completed episodes and the sum of their raw returns);
        train(key) -> (runner, metrics), init plus all `num_iterations(cfg)` iterations:
            the whole run of one agent as one function, to be jitted.
        Several seeds at once: ``jax.jit(jax.vmap(run, in_axes=(0, None)), static_argnums=1)
        (init_agents(init, keys), n)`` -- vmap `run`, and initialise with `init_agents`
        (see there why `init` is not vmapped).
    """
    params_env = env.default_params()
    obs_dim = int(env.observation_space.shape[0])
    action_dim = int(env.action_space.n) if env.discrete else int(env.action_space.shape[0])
    graphdef = init_policy(obs_dim, action_dim, env.discrete, cfg, jax.random.key(0))[0]
    optimizer = make_optimizer(cfg)
    learn = make_learn(cfg, graphdef, optimizer)
    bounds = action_bounds(env)
    E, T = cfg.num_envs, cfg.num_steps
    reset = jax.vmap(env.reset, in_axes=(0, None))
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    norm = (lambda stats, x: normalize(stats, x)) if cfg.norm_obs else (lambda stats, x: x)

    def init(key: jax.Array) -> RunnerState:
        policy_key, env_key, key = jax.random.split(key, 3)
        _, params = init_policy(obs_dim, action_dim, env.discrete, cfg, policy_key)
        obs, env_state = reset(jax.random.split(env_key, E), params_env)
        stats = init_stats((obs_dim,))
        if cfg.norm_obs:
            stats = update_stats(stats, obs)
        return RunnerState(
            train=TrainState(params=params, opt_state=optimizer.init(params),
                             step=jnp.zeros((), jnp.int32)),
            env_state=env_state, obs=obs, obs_stats=stats,
            reward_scaler=init_reward_scaler(E), env_steps=jnp.zeros((), jnp.int32), key=key)

    def env_step(runner: RunnerState, _):
        key, act_key, step_key = jax.random.split(runner.key, 3)
        params = runner.train.params
        obs = norm(runner.obs_stats, runner.obs)
        out = policy_apply(graphdef, params, obs)
        action = sample_action(act_key, out)
        next_obs, env_state, reward, terminated, truncated, info = step(
            jax.random.split(step_key, E), runner.env_state, to_env_action(action, bounds),
            params_env)
        done = terminated | truncated
        stats = update_stats(runner.obs_stats, next_obs) if cfg.norm_obs else runner.obs_stats
        next_value = policy_apply(graphdef, params, norm(stats, info["final_obs"])).value
        scaler = runner.reward_scaler
        train_reward = reward
        if cfg.norm_reward:
            train_reward, scaler = scale_rewards(scaler, reward, done, cfg.gamma)
        record = StepRecord(
            transition=Rollout(obs=obs, action=action, logprob=action_logprob(out, action),
                               value=out.value, reward=train_reward, next_value=next_value,
                               terminated=terminated, done=done),
            episode_return=info["episode_return"], episode_length=info["episode_length"],
            episode_done=done)
        runner = runner.replace(env_state=env_state, obs=next_obs, obs_stats=stats,
                                reward_scaler=scaler, env_steps=runner.env_steps + E, key=key)
        return runner, record

    def iteration(runner: RunnerState, _):
        runner, records = jax.lax.scan(env_step, runner, None, length=T)
        key, learn_key = jax.random.split(runner.key)
        train, metrics = learn(runner.train, records.transition, learn_key)
        metrics.update(episodes=jnp.sum(records.episode_done),
                       episode_return_sum=jnp.sum(records.episode_return),
                       episode_length_sum=jnp.sum(records.episode_length),
                       env_steps=runner.env_steps)
        return runner.replace(train=train, key=key), metrics

    def run(runner: RunnerState, n: int):
        return jax.lax.scan(iteration, runner, None, length=n)

    def train(key: jax.Array):
        return run(init(key), num_iterations(cfg))

    return graphdef, init, run, train


def init_agents(init, keys: jax.Array) -> RunnerState:
    """Initialise several agents one at a time and stack them: a RunnerState whose every
    leaf has a leading seed axis, ready for `jax.vmap(run)`.

    Why not `jax.vmap(init)`: the orthogonal initialisation is a LAPACK QR, and vmapping it
    makes a *batched* QR, which jaxlib's CPU LAPACK kernel splits into tasks on the same
    small thread pool that XLA:CPU is already running it on. On a 2-core machine both pool
    threads can end up waiting inside `ParallelBatchMap` for tasks that no free thread will
    run: a deadlock (we caught it in gdb: both "tf_XLAEigen" threads in lapack_sgeqrf_ffi,
    the main thread in block_until_ready). Unbatched QR, one seed at a time, never takes
    that path; the training itself (`run`) contains no LAPACK call and vmaps safely.
    """
    init = jax.jit(init)
    agents = [init(k) for k in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *agents)


def mean_episode_return(metrics: dict) -> jax.Array:
    """Per-iteration mean return of the episodes that ended in it (NaN where none did)."""
    episodes = jnp.asarray(metrics["episodes"])
    return jnp.where(episodes > 0,
                     jnp.asarray(metrics["episode_return_sum"]) / jnp.maximum(episodes, 1),
                     jnp.nan)
