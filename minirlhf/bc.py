"""Behavioural cloning on gym demonstrations: the baseline a learned reward must beat.

"Behavioral cloning: learn a policy by supervised learning on (state, action) pairs of the
demonstrator" (deck "Large Language Models and RL from Human Feedback", slide "Behavioral
cloning vs. inverse RL"). It imitates: at best it does as well as the demonstrations, and
where its mistakes take it to states the demonstrator never visited it has no data, so it
usually does worse. D-REX (drex.py) also starts from it: noise injected into the cloned
policy makes its automatically ranked demonstrations.

The policy is PPO's actor-critic (`ppo.ActorCritic`; the critic is unused), trained to
maximise log pi(a_t | s_t) over the demonstrations' steps, on observations normalised by
the demonstrations' own mean and std.

    graphdef, params, stats, losses = train_bc(BCConfig(), demos, env)
    act = bc_policy(graphdef, params, stats, action_bounds(env))   # (obs, key) -> action

Notation: D demonstrations, T steps, O observation size, N = the demonstrations' steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from minirlhf.configs import check_positive_ints
from minirlhf.demos import Demonstrations
from minirlhf.distributions import masked_mean
from minirlhf.normalize import RunningStats, normalize
from minirlhf.ppo import (ActorCritic, action_logprob, greedy_action, policy_apply,
                          sample_action, to_env_action)


@dataclass(frozen=True)
class BCConfig:
    """Behavioural cloning of a policy from (observation, action) pairs."""

    seed: int = 0
    """Seed of the initialisation and the minibatches."""
    steps: int = 2000
    """Adam steps."""
    batch_size: int = 256
    """(observation, action) pairs per step, drawn uniformly from every demonstration step."""
    lr: float = 1e-3
    """Adam's learning rate."""
    hidden: int = 64
    """Width of the policy's hidden layers."""
    depth: int = 2
    """Hidden layers."""

    def __post_init__(self):
        check_positive_ints(self, "steps", "batch_size", "hidden", "depth")
        if not self.lr > 0:
            raise ValueError(f"BCConfig.lr must be > 0, got {self.lr!r}")


def demo_stats(demos: Demonstrations) -> RunningStats:
    """Mean and variance of the demonstrations' observations (their real steps only)."""
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    obs = np.asarray(demos.obs)[mask]  # (N, O)
    return RunningStats(mean=jnp.asarray(obs.mean(0)), var=jnp.asarray(obs.var(0)),
                        count=jnp.asarray(float(len(obs))))


def bc_loss(graphdef, params, stats: RunningStats, obs: jax.Array, actions: jax.Array,
            mask: jax.Array | None = None) -> jax.Array:
    """-mean_t log pi(a_t | s_t), the negative log-likelihood of the demonstrator's actions.

    Args:
        obs: (N, O) raw observations. actions: (N,) int or (N, A) float. mask: (N,) bool.
    """
    out = policy_apply(graphdef, params, normalize(stats, obs))
    logp = action_logprob(out, actions)  # (N,)
    return -masked_mean(logp, jnp.ones(logp.shape, bool) if mask is None else mask)


def train_bc(cfg: BCConfig, demos: Demonstrations, env):
    """Clone the demonstrations' policy (jitted whole: a lax.scan over the steps).

    Args:
        demos: demonstrations with actions. env: the task (its spaces).
    Returns:
        (graphdef, params, stats, losses): the policy, the observation statistics it acts
        on, and the loss of every step.
    """
    if demos.actions is None:
        raise ValueError("behavioural cloning needs the demonstrations' actions; the file "
                         "has none")
    mask = np.arange(demos.obs.shape[1])[None, :] < demos.lengths[:, None]
    obs = jnp.asarray(np.asarray(demos.obs)[mask])
    actions = jnp.asarray(np.asarray(demos.actions)[mask])
    obs_dim = int(env.observation_space.shape[0])
    action_dim = int(env.action_space.n) if env.discrete else int(env.action_space.shape[0])
    model = ActorCritic(obs_dim, action_dim, env.discrete, cfg.hidden, cfg.depth, 0.0,
                        nnx.Rngs(jax.random.key(cfg.seed)))
    graphdef, params = nnx.split(model)
    stats = demo_stats(demos)
    optimizer = optax.adam(cfg.lr)

    @jax.jit
    def train(params, key):
        def step(carry, key):
            params, opt_state = carry
            idx = jax.random.randint(key, (cfg.batch_size,), 0, obs.shape[0])
            loss, grads = jax.value_and_grad(
                lambda p: bc_loss(graphdef, p, stats, obs[idx], actions[idx]))(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)),
                                           jax.random.split(key, cfg.steps))
        return params, losses

    params, losses = train(params, jax.random.fold_in(jax.random.key(cfg.seed), 1))
    return graphdef, params, stats, np.asarray(losses)


def bc_policy(graphdef, params, stats: RunningStats, bounds, greedy: bool = False):
    """(obs, key) -> the cloned policy's action (sampled, or its mode with greedy)."""
    def act(obs, key):
        out = policy_apply(graphdef, params, normalize(stats, obs))
        action = greedy_action(out) if greedy else sample_action(key, out)
        return to_env_action(action, bounds)
    return act
