"""A straightforward CleanRL-style PPO in PyTorch, as a CPU speed baseline for minirlhf.ppo.

Only benchmarks/bench_ppo.py imports this file; torch is an optional extra
(``pip install -e ".[bench]"``), never a dependency of the package.

The structure is CleanRL's ``ppo.py`` (Huang et al. 2022, "The 37 Implementation Details of
PPO"): a gymnasium `SyncVectorEnv` wrapped in `RecordEpisodeStatistics`, an `Agent` with
separate actor and critic MLPs (two tanh layers of 64, orthogonal init, output gains 0.01
and 1), Adam (eps 1e-5) with the learning rate annealed linearly per iteration, a rollout of
T steps in a Python loop, GAE in a reversed Python loop, then epochs x shuffled minibatches
of the clipped surrogate, the clipped value loss and the entropy bonus, with global-norm
gradient clipping. It runs eagerly on the CPU (no torch.compile), with
`torch.set_num_threads(os.cpu_count())`, as a student's first PyTorch PPO would.

Two deliberate departures from CleanRL's file, so that it runs the same algorithm as
minirlhf.ppo (the comparison is of speed, not of algorithms):

* gymnasium >= 1.0 resets a vector env's finished episode on the *next* call of `step` by
  default, which would put a junk transition in the buffer; like minirlhf's gymnasium
  bridge, the env here resets in the same step (`AutoresetMode.SAME_STEP`) and keeps the
  last observation in ``info["final_obs"]``;
* time-limit truncation is bootstrapped as minirlhf's `advantages.gae` does (Pardo et al.
  2018): delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t), the recursion cut
  where done_t. V(s'_t) of the whole rollout is one batched critic forward per iteration.

Hyperparameters default to minirlhf's `PPOConfig` (CleanRL's CartPole-v1 defaults). One
small difference is left as CleanRL has it: the learning rate is annealed once per
iteration here, once per gradient step in minirlhf (`optax.linear_schedule`).

Notation: T steps per rollout, E parallel environments, O observation size.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from torch.distributions.categorical import Categorical


@dataclass(frozen=True)
class TorchPPOConfig:
    """The same fields and defaults as minirlhf.ppo.PPOConfig (discrete actions only)."""

    env_id: str = "CartPole-v1"
    total_steps: int = 500_000
    num_envs: int = 4  # E
    num_steps: int = 128  # T
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_eps: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        return self.total_steps // self.batch_size


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain `std`, constant biases (CleanRL's layer_init)."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """CleanRL's Agent: separate actor and critic, each Linear-tanh-Linear-tanh-Linear."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: int = 64):
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=1.0))
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)), nn.Tanh(),
            layer_init(nn.Linear(hidden, num_actions), std=0.01))

    def get_value(self, x):  # (..., O) -> (..., 1)
        return self.critic(x)

    def get_action_and_value(self, x, action=None):
        logits = self.actor(x)
        probs = Categorical(logits=logits)
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(x)


def make_envs(cfg: TorchPPOConfig) -> gym.vector.SyncVectorEnv:
    """E copies of cfg.env_id that reset in the step their episode ends, with episode stats."""
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(cfg.env_id) for _ in range(cfg.num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"{cfg.env_id}: this baseline supports discrete actions only, got "
                         f"{envs.single_action_space}")
    return envs


def train(cfg: TorchPPOConfig, seed: int = 0,
          on_iteration: Callable[[dict], bool | None] | None = None,
          num_threads: int | None = None) -> list[dict]:
    """Train one agent; return one record per iteration.

    Args:
        cfg: hyperparameters. seed: seeds torch, numpy's shuffling and the env resets.
        on_iteration: optional callback(record) after every iteration; returning True stops
            training (e.g. once the task is solved).
        num_threads: torch's intra-op threads; None: os.cpu_count(), one per core.
    Returns:
        a list of records, one per iteration run: {"iteration", "env_steps" (so far),
        "wall_s" (seconds since train() was called: env and agent creation included),
        "episode_returns" (list of raw returns of the episodes that ended in it),
        "episodes", "episode_return_sum", "loss"}.
    """
    start = time.perf_counter()
    torch.set_num_threads(num_threads or os.cpu_count() or 1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    T, E = cfg.num_steps, cfg.num_envs
    minibatch_size = cfg.batch_size // cfg.num_minibatches

    envs = make_envs(cfg)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = Agent(obs_dim, int(envs.single_action_space.n), cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)

    obs = torch.zeros((T, E, obs_dim))
    final_obs = torch.zeros((T, E, obs_dim))
    actions = torch.zeros((T, E), dtype=torch.long)
    logprobs = torch.zeros((T, E))
    rewards = torch.zeros((T, E))
    terminated = torch.zeros((T, E))
    dones = torch.zeros((T, E))
    values = torch.zeros((T, E))

    records = []
    global_step = 0
    next_obs, _ = envs.reset(seed=seed)
    next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
    try:
        for iteration in range(1, cfg.num_iterations + 1):
            if cfg.anneal_lr:
                frac = 1.0 - (iteration - 1.0) / cfg.num_iterations
                optimizer.param_groups[0]["lr"] = frac * cfg.lr
            episode_returns = []

            # --- rollout: T steps of E environments ---
            for step in range(T):
                global_step += E
                obs[step] = next_obs
                with torch.no_grad():
                    action, logprob, _, value = agent.get_action_and_value(next_obs)
                    values[step] = value.flatten()
                actions[step] = action
                logprobs[step] = logprob
                next_obs, reward, term, trunc, infos = envs.step(action.numpy())
                done = np.logical_or(term, trunc)
                rewards[step] = torch.as_tensor(reward, dtype=torch.float32)
                terminated[step] = torch.as_tensor(term, dtype=torch.float32)
                dones[step] = torch.as_tensor(done, dtype=torch.float32)
                next_obs = torch.as_tensor(next_obs, dtype=torch.float32)
                final_obs[step] = next_obs
                if done.any():
                    for i in np.flatnonzero(done):
                        final_obs[step, i] = torch.as_tensor(infos["final_obs"][i])
                    episode_returns += [float(r) for r in infos["episode"]["r"][done]]

            # --- GAE (bootstrapping V(s') on truncation, cutting at any episode end) ---
            with torch.no_grad():
                next_values = agent.get_value(final_obs).squeeze(-1)  # (T, E)
                advantages = torch.zeros_like(rewards)
                lastgaelam = torch.zeros(E)
                for t in reversed(range(T)):
                    delta = (rewards[t] + cfg.gamma * (1.0 - terminated[t]) * next_values[t]
                             - values[t])
                    lastgaelam = delta + cfg.gamma * cfg.gae_lambda * (1.0 - dones[t]) * lastgaelam
                    advantages[t] = lastgaelam
                returns = advantages + values

            b_obs = obs.reshape(-1, obs_dim)
            b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
            b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
            b_values = values.reshape(-1)

            # --- the update: epochs x shuffled minibatches ---
            b_inds = np.arange(cfg.batch_size)
            for _ in range(cfg.update_epochs):
                rng.shuffle(b_inds)
                for begin in range(0, cfg.batch_size, minibatch_size):
                    mb_inds = torch.as_tensor(b_inds[begin:begin + minibatch_size])
                    _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                        b_obs[mb_inds], b_actions[mb_inds])
                    logratio = newlogprob - b_logprobs[mb_inds]
                    ratio = logratio.exp()

                    mb_advantages = b_advantages[mb_inds]
                    if cfg.norm_adv:
                        mb_advantages = ((mb_advantages - mb_advantages.mean())
                                         / (mb_advantages.std() + 1e-8))
                    pg_loss1 = -mb_advantages * ratio
                    pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - cfg.clip_eps,
                                                            1 + cfg.clip_eps)
                    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                    newvalue = newvalue.view(-1)
                    if cfg.clip_vloss:
                        v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                        v_clipped = b_values[mb_inds] + torch.clamp(
                            newvalue - b_values[mb_inds], -cfg.clip_eps, cfg.clip_eps)
                        v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                    else:
                        v_loss = 0.5 * ((newvalue - b_returns[mb_inds]) ** 2).mean()

                    loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
                    optimizer.step()

            record = {"iteration": iteration, "env_steps": global_step,
                      "wall_s": time.perf_counter() - start,
                      "episode_returns": episode_returns, "episodes": len(episode_returns),
                      "episode_return_sum": float(sum(episode_returns)),
                      "loss": float(loss.detach())}
            records.append(record)
            if on_iteration is not None and on_iteration(record):
                break
    finally:
        envs.close()
    return records


if __name__ == "__main__":
    def show(r):
        if r["iteration"] % 20 == 0:
            mean = r["episode_return_sum"] / max(r["episodes"], 1)
            print(f"iter {r['iteration']:4d}  steps {r['env_steps']:7d}  {r['wall_s']:6.1f} s  "
                  f"{r['env_steps'] / r['wall_s']:,.0f} steps/s  mean return {mean:.1f}")

    train(TorchPPOConfig(), seed=0, on_iteration=show)
