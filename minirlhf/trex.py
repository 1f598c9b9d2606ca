"""T-REX: a reward learned from ranked demonstrations, and RL on it (Brown et al. 2019).

Deck "Large Language Models and RL from Human Feedback", slides "T-REX" and "Learning from
ranked demonstrations": given demonstrations ranked tau_1 < ... < tau_D (none of them good),
learn a reward r_theta(s) such that better trajectories have higher returns,

    P(tau_j > tau_i) = exp(sum_{s in tau_j} r(s)) / (exp(sum_{s in tau_i} r(s)) + exp(...)),

which is the Bradley-Terry model of the LM reward model (lecture 3) with a trajectory's
score the *sum* of its per-step rewards: `losses.trajectory_preference_loss`. Because the
reward explains *why* one trajectory beats another, RL on it can go past the best
demonstration, which imitation (bc.py) cannot.

What the paper's code does and this module does too:

* **Snippets, not whole trajectories.** Each training pair is two partial trajectories of
  the same length L from two demonstrations of different rank, the better one's snippet
  starting no earlier than the worse one's (progress within an episode counts). Many
  snippet pairs per demonstration pair is data augmentation: 40 demonstrations give
  thousands of different comparisons.
* **Learning from observation**: r_theta(s) sees observations only (optionally actions).
* **An ensemble** of independently trained reward networks, averaged.

What this module adds: **the reward's offset is learned from how episodes end.**
Bradley-Terry on equal-length snippets sees only differences of sums, so r + c fits them as
well as r; yet on a task whose episode can end early the offset decides everything: a
positive per-step reward teaches the agent to stay alive, a negative one to end the
episode. That is the survival bias of learned rewards (Kostrikov et al. 2019,
"Discriminator-Actor-Critic"): a sign picked by hand (the Atari code's sigmoid(r), always
positive) can win on its own. Following Kostrikov et al., an episode that reached a
terminal state goes on in an *absorbing state* whose reward r_abs is one more learned
parameter. Within each ranked pair a terminated demonstration is extended with absorbing
steps to the other's length, so snippets may run past its end; the loss then compares
living steps with absorbing ones, which a common c no longer cancels in: what is learned is
r(s) - r_abs. PPO receives that difference, scaled so that a typical demonstration step
is worth 1 and squashed by tanh (bounded like the Atari code's sigmoid, with the learned
sign); after a terminal step the episode gets 0 forever, which is exactly r_abs - r_abs.
Where longer demonstrations rank higher (CartPole) r(s) > r_abs comes out and living is
good; where shorter ones do (Acrobot, reaching the goal sooner) every step costs. Where no
ranked pair has a terminated demonstration (Pendulum never terminates) the offset is not
identified and PPO gets the reward centred on the demonstrations' mean, bounded alike.
A fixed transform (sigmoid, sigmoid - 1) remains an option, as a prior the user supplies.

    spec, models, history = train_reward(TREXConfig(), demos, env)   # one per seed
    r = rl_reward(spec, seed_model(models, 0), obs)   # what PPO receives (learned_reward.py)

Notation: D demonstrations, T steps, O observation size, I reward-net input size, B pairs
per step, L snippet length (at most S = snippet_max), M ensemble members.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from minirlhf.configs import check_positive_ints
from minirlhf.demos import Demonstrations
from minirlhf.losses import trajectory_preference_loss
from minirlhf.learned_reward import (RewardNet, RewardSpec, absorbing_reward, calibrate,
                                     raw_rewards)
from minirlhf.normalize import RunningStats
from minirlhf.ppo import PRESETS as PPO_PRESETS
from minirlhf.ppo import PPOConfig

Transform = Literal["learned", "sigmoid", "negative_sigmoid", "standardize"]
TRANSFORMS = ("learned", "sigmoid", "negative_sigmoid", "standardize")


@dataclass(frozen=True)
class TREXConfig:
    """Learning a reward from ranked demonstrations, then PPO on it."""

    env: str = "CartPole-v1"
    """The task: a JAX one (see minirlhf.envs.GYM_TASKS) or a gymnasium id (the bridge)."""
    seed: int = 0
    """Seed of the first run; run i uses seed + i (reward nets, snippets and PPO)."""
    num_seeds: int = 5
    """Independent runs (reward learning and RL), reported as mean +- std."""
    demos: str = ""
    """A demonstrations file (.npz, see minirlhf.demos); empty: make them with the task's
    DEMO_PRESETS and save them in the run folder."""
    use_actions: bool = False
    """Give the reward network the action too: r(s, a) instead of r(s)."""
    hidden: int = 64
    """Width of the reward network's hidden layers."""
    depth: int = 2
    """Hidden layers of the reward network."""
    ensemble: int = 3
    """M: reward networks trained independently (own initialisation and snippets) and
    averaged (the paper's code averages an ensemble for its Atari rewards)."""
    steps: int = 1000
    """Adam steps of reward learning."""
    batch_pairs: int = 64
    """B: snippet pairs per step."""
    lr: float = 1e-3
    """Adam's learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the reward network."""
    snippet_min: int = 10
    """Shortest snippet (shorter if a demonstration is shorter)."""
    snippet_max: int = 50
    """S: longest snippet."""
    held_out: float = 0.2
    """Share of demonstrations kept out of reward learning, to measure how well the
    learned return ranks demonstrations it never saw."""
    reward_transform: Transform = "learned"
    """What PPO receives (see the module docstring): 'learned', r(s) - r_abs with the
    offset learned from how the demonstrations end; or a prior the user supplies on the
    standardised reward: 'sigmoid' (living is good), 'negative_sigmoid' (every step costs)
    or 'standardize' (mean 0 over the demonstrations)."""
    controls: bool = True
    """Also run the controls (see demo_controls): PPO with the same settings on a constant
    reward of each sign, on an untrained reward network, and on the reward learned from the
    reversed rankings; the verdict compares the policy with each."""
    eval_episodes: int = 20
    """Episodes each final policy (and each cloned one) is scored on, acting greedily."""
    rl: PPOConfig = field(default_factory=lambda: PPO_PRESETS["cartpole"])
    """PPO on the learned reward (its env, seed and num_seeds are set from this config)."""

    def __post_init__(self):
        check_positive_ints(self, "num_seeds", "hidden", "depth", "ensemble", "steps",
                            "batch_pairs", "snippet_min", "snippet_max", "eval_episodes")
        if self.snippet_min > self.snippet_max:
            raise ValueError(f"TREXConfig.snippet_min={self.snippet_min} is above "
                             f"snippet_max={self.snippet_max}")
        if not 0 <= self.held_out < 1:
            raise ValueError(f"TREXConfig.held_out must be in [0, 1), got {self.held_out!r}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"TREXConfig.lr must be > 0 and weight_decay >= 0, got "
                             f"{self.lr!r} and {self.weight_decay!r}")
        if self.reward_transform not in TRANSFORMS:
            raise ValueError(f"TREXConfig.reward_transform must be one of {TRANSFORMS}, got "
                             f"{self.reward_transform!r}")

    def rl_config(self) -> PPOConfig:
        """The PPO settings of the RL stage, on this task, seeds and number of runs."""
        return dataclasses.replace(self.rl, env=self.env, seed=self.seed,
                                   num_seeds=self.num_seeds)


# --- snippets ----------------------------------------------------------------------------


@struct.dataclass
class Snippets:
    """B snippet pairs: demonstrations `worse` and `better`, (B,) int32 each, their start
    steps, and the common length (B,) int32 (at most S)."""

    worse: jax.Array
    better: jax.Array
    start_worse: jax.Array
    start_better: jax.Array
    length: jax.Array


def ranked_pairs(rank: np.ndarray) -> np.ndarray:
    """(P, 2) int32: every (worse, better) index pair with rank[worse] < rank[better]."""
    rank = np.asarray(rank)
    i, j = np.nonzero(rank[:, None] < rank[None, :])
    return np.stack([i, j], axis=1).astype(np.int32)


def sample_snippets(key: jax.Array, pairs: jax.Array, lengths: jax.Array, n: int,
                    snippet_min: int, snippet_max: int,
                    ended: jax.Array | None = None) -> Snippets:
    """Draw n snippet pairs as T-REX does (Brown et al. 2019, appendix; their Atari code):

    a ranked pair (i worse, j better) uniformly from `pairs`; a length L uniform in
    [snippet_min, snippet_max], cut to the shorter demonstration; the worse snippet's start
    t_i uniform in [0, min(len_i, len_j) - L]; the better one's t_j uniform in
    [t_i, len_j - L] -- never earlier than the worse one's.

    With `ended`, a demonstration that reached a terminal state counts, within its pair, as
    long as the other one (its absorbing steps fill the rest; see the module docstring), so
    a snippet may run past its end.

    Args:
        pairs: (P, 2) int32 (worse, better) indices. lengths: (D,) int32.
        ended: (D,) bool, which demonstrations reached a terminal state, or None.
    """
    pair_key, len_key, wi_key, bj_key = jax.random.split(key, 4)
    pair = pairs[jax.random.randint(pair_key, (n,), 0, pairs.shape[0])]
    worse, better = pair[:, 0], pair[:, 1]
    len_w, len_b = lengths[worse], lengths[better]
    if ended is not None:
        longer = jnp.maximum(len_w, len_b)
        len_w = jnp.where(ended[worse], longer, len_w)
        len_b = jnp.where(ended[better], longer, len_b)
    shortest = jnp.minimum(len_w, len_b)
    length = jnp.minimum(jax.random.randint(len_key, (n,), snippet_min, snippet_max + 1),
                         shortest)

    def uniform_int(key, low, high):  # integers in [low, high], per element
        return low + jnp.floor(jax.random.uniform(key, (n,)) * (high - low + 1)).astype(jnp.int32)

    start_w = uniform_int(wi_key, jnp.zeros_like(length), shortest - length)
    start_b = uniform_int(bj_key, start_w, len_b - length)
    return Snippets(worse=worse, better=better, start_worse=start_w, start_better=start_b,
                    length=length.astype(jnp.int32))


def snippet_windows(snippets: Snippets, max_len: int, T: int):
    """(B, S) step indices of each pair's two snippets and the (B, S) mask of the steps
    each snippet has (its first L)."""
    offsets = jnp.arange(max_len)[None, :]
    mask = offsets < snippets.length[:, None]
    steps_w = jnp.minimum(snippets.start_worse[:, None] + offsets, T - 1)
    steps_b = jnp.minimum(snippets.start_better[:, None] + offsets, T - 1)
    return steps_w, steps_b, mask


def trex_loss(spec: RewardSpec, params, stats: RunningStats, obs: jax.Array,
              actions: jax.Array | None, lengths: jax.Array, snippets: Snippets,
              max_len: int):
    """The T-REX loss of one reward network on B snippet pairs, and its accuracy.

    loss = -mean log sigma(sum_{t in snip_better} r(s_t) - sum_{t in snip_worse} r(s_t)),

    where a step past a demonstration's end (its length) is the absorbing state, r = r_abs.

    Args:
        obs: (D, T, O) demonstrations. actions: (D, T) or (D, T, A), or None.
        lengths: (D,) int32 steps of each demonstration.
    Returns:
        (loss, accuracy): accuracy is the share of pairs whose better snippet scores higher.
    """
    T = obs.shape[1]
    steps_w, steps_b, mask = snippet_windows(snippets, max_len, T)
    r_abs = absorbing_reward(spec, params)

    def rewards(demo, steps):  # (B,), (B, S) -> (B, S)
        act = None if actions is None else actions[demo[:, None], steps]
        r = raw_rewards(spec, params, stats, obs[demo[:, None], steps], act)
        return jnp.where(steps < lengths[demo][:, None], r, r_abs)

    r_b, r_w = rewards(snippets.better, steps_b), rewards(snippets.worse, steps_w)
    loss = trajectory_preference_loss(r_b, r_w, mask, mask)
    margin = jnp.sum(jnp.where(mask, r_b - r_w, 0.0), axis=-1)
    return loss, jnp.mean(margin > 0)


# --- training ------------------------------------------------------------------------------


def reward_spec(cfg: TREXConfig, env) -> RewardSpec:
    """The reward network's structure for `env` (its graphdef and input layout)."""
    obs_dim = int(env.observation_space.shape[0])
    action_dim = 0
    if cfg.use_actions:
        action_dim = int(env.action_space.n) if env.discrete else int(env.action_space.shape[0])
    net = RewardNet(obs_dim + action_dim, cfg.hidden, cfg.depth, nnx.Rngs(0))
    return RewardSpec(graphdef=nnx.split(net)[0], action_dim=action_dim,
                      discrete=bool(env.discrete), transform=cfg.reward_transform)


def split_demos(demos: Demonstrations, held_out: float, seed: int):
    """(train, held) index arrays: a seeded random `held_out` share of the demonstrations
    held out, if that leaves both parts with two distinct ranks (else none is held out)."""
    order = np.random.default_rng(seed).permutation(demos.n)
    n_held = int(round(held_out * demos.n))
    held, train = np.sort(order[:n_held]), np.sort(order[n_held:])
    if len(np.unique(demos.rank[held])) < 2 or len(np.unique(demos.rank[train])) < 2:
        return np.arange(demos.n), np.zeros(0, int)
    return train, held


def make_reward_trainer(cfg: TREXConfig, spec: RewardSpec, demos: Demonstrations):
    """train(params (M-stacked), keys (M,)) -> (params, losses (M, steps), accuracy (M,
    steps)): every ensemble member trained on its own snippets, vmapped, in one jit."""
    from minirlhf.bc import demo_stats

    if demos.actions is None and spec.action_dim:
        raise ValueError("TREXConfig.use_actions=True needs demonstrations with actions")
    obs = jnp.asarray(demos.obs)
    actions = jnp.asarray(demos.actions) if spec.action_dim else None
    pairs = jnp.asarray(ranked_pairs(demos.rank))
    lengths = jnp.asarray(demos.lengths, jnp.int32)
    ended = jnp.asarray(demos.ended())
    stats = demo_stats(demos)
    optimizer = optax.adamw(cfg.lr, weight_decay=cfg.weight_decay)

    def train_one(params, key):
        def step(carry, key):
            params, opt_state = carry
            snippets = sample_snippets(key, pairs, lengths, cfg.batch_pairs, cfg.snippet_min,
                                       cfg.snippet_max, ended)
            (loss, acc), grads = jax.value_and_grad(
                lambda p: trex_loss(spec, p, stats, obs, actions, lengths, snippets,
                                    cfg.snippet_max),
                has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (loss, acc)

        (params, _), (losses, accs) = jax.lax.scan(
            step, (params, optimizer.init(params)), jax.random.split(key, cfg.steps))
        return params, losses, accs

    return jax.jit(jax.vmap(train_one)), stats


def init_ensemble(cfg: TREXConfig, spec: RewardSpec, key: jax.Array, in_dim: int):
    """M freshly initialised reward networks' parameters, stacked (leading axis M)."""
    members = [nnx.split(RewardNet(in_dim, cfg.hidden, cfg.depth, nnx.Rngs(k)))[1]
               for k in jax.random.split(key, cfg.ensemble)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *members)


def train_reward(cfg: TREXConfig, demos: Demonstrations, env,
                 seeds: list[int] | None = None):
    """Learn T-REX rewards from `demos`: one ensemble of cfg.ensemble networks per seed,
    all S * M networks trained side by side in one vmapped jit.

    Args:
        seeds: the runs' seeds (default: cfg.seed .. cfg.seed + num_seeds - 1).
    Returns:
        (spec, models, history): models a RewardModel whose leaves have a leading axis S
        (one model per seed; `jax.tree.map(lambda x: x[i], models)` is seed i's);
        history["loss"], history["accuracy"]: (S, steps) ensemble means of each step's
        snippet loss and accuracy.
    """
    seeds = list(range(cfg.seed, cfg.seed + cfg.num_seeds)) if seeds is None else seeds
    spec = reward_spec(cfg, env)
    train, stats = make_reward_trainer(cfg, spec, demos)
    in_dim = int(env.observation_space.shape[0]) + spec.action_dim
    M = cfg.ensemble
    members = [init_ensemble(cfg, spec, jax.random.fold_in(jax.random.key(s), 0), in_dim)
               for s in seeds]
    params = jax.tree.map(lambda *xs: jnp.concatenate(xs), *members)  # (S * M, ...)
    keys = jnp.concatenate([jax.random.split(jax.random.fold_in(jax.random.key(s), 1), M)
                            for s in seeds])
    params, losses, accs = train(params, keys)
    per_seed = lambda x: x.reshape((len(seeds), M) + x.shape[1:])
    learned = offset_identified(demos)
    models = [calibrate(spec, jax.tree.map(lambda x: per_seed(x)[i], params), stats, demos,
                        learned)
              for i in range(len(seeds))]
    models = jax.tree.map(lambda *xs: jnp.stack(xs), *models)
    return spec, models, {"loss": np.asarray(per_seed(losses)).mean(1),
                          "accuracy": np.asarray(per_seed(accs)).mean(1)}


def offset_identified(demos: Demonstrations) -> bool:
    """Whether the demonstrations teach r_abs: some ranked pair has a terminated
    demonstration shorter than the other, so that snippets reach its absorbing steps."""
    pairs = ranked_pairs(demos.rank)
    lengths, ended = np.asarray(demos.lengths), demos.ended()
    first, second = pairs[:, 0], pairs[:, 1]
    return bool(np.any((ended[first] & (lengths[first] < lengths[second]))
                       | (ended[second] & (lengths[second] < lengths[first]))))
