"""RLHF with PPO: optimise the SFT policy against the reward model (layer 2).

Step 3 of InstructGPT's recipe, step 4 of the deck's ("Large Language Models and RL from
Human Feedback", slide "High-Level Recipe for ChatGPT"): maximise

    E_{x, y ~ pi}[ r_phi(x, y) ] - beta * KL(pi || pi_0)

with PPO on the token MDP of `rollout.py`. Nothing here is new algorithm: the rollout's
KL-shaped rewards go through the same GAE (`advantages.gae`), the same clipped surrogate and
value losses (`losses.py`) and the same epochs x minibatches update (`ppo.make_update`) as
the gym agents; only the source of experience differs.

Choices, and why:

* The critic (`critic.py`) is a separate transformer initialised from the reward model, as
  InstructGPT's, with its own optimiser group (`value_lr`): on the default run its
  explained variance is above 0.3 from the 4th iteration on, where a zero-initialised value
  head on the policy (`critic="shared"`) stayed near 0 for all 60 (benchmarks/README.md).
* KL control: a fixed beta (InstructGPT) or the adaptive controller of Ziegler et al. 2019,
  which steers the observed KL towards a target. Both are small objects with one pure
  method, `update(beta, kl, n) -> beta`, so either plugs into the jitted iteration.
* Data parallel: the iteration is one `jax.jit` over a prompt batch sharded on the "data"
  mesh (NamedSharding), parameters replicated; XLA's partitioner inserts the all-reduces.
  Unlike the LM train step (shard_map), PPO's update shuffles minibatches across the *global*
  batch, which a per-device program cannot do without all-gathers of its own. Random
  numbers do not depend on the sharding, so N devices compute what one does.

    state, metrics, tokens, mask = iteration(state, frozen, prompt, prompt_mask, key)

Notation: B prompts per iteration, P prompt length, N response tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from matplotlib.figure import Figure

from minirlhf.checkpoint import Checkpointer, load_model, load_with_heads
from minirlhf.critic import (critic_from_reward_model, critic_model_config, critic_values,
                             value_function_labels)
from minirlhf.configs import check_positive_ints, check_same_config, to_dict
from minirlhf.distributions import masked_mean, masked_sum, whiten
from minirlhf.logging import (MetricsWriter, atomic_write_text, progress, read_metrics,
                              save_figure)
from minirlhf.losses import approx_kl, clip_fraction, clipped_surrogate_loss, clipped_value_loss
from minirlhf.optim import TrainState
from minirlhf.parallel import check_divisible, make_mesh, replicate, shard_batch
from minirlhf.ppo import make_update
from minirlhf.reward_model import make_reward_fn
from minirlhf.rollout import RolloutConfig, response_outputs, rollout, token_gae


@dataclass(frozen=True)
class RLHFConfig:
    """PPO on the language model against a reward model, with a KL penalty to SFT."""

    seed: int = 0
    """Seed of the prompts, the sampling and the value head's initialisation."""
    init: str = "runs/sft"
    """Run folder of the SFT model: the policy starts from it and it stays the reference."""
    reward: str = "runs/reward"
    """Run folder of the trained reward model."""
    iterations: int = 60
    """PPO iterations: each samples a batch of responses, then updates on it."""
    batch_size: int = 64
    """B: prompts (one response each) per iteration, split over devices."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Response length, truncation penalty, KL estimator."""
    kl_control: Literal["fixed", "adaptive"] = "fixed"
    """'fixed': beta stays put (InstructGPT); 'adaptive': Ziegler et al. 2019's controller
    moves beta to keep the KL near kl_target."""
    beta: float = 0.2
    """The KL coefficient (its starting value, for the adaptive controller). At 0.05 the
    default run over-optimises the reward model (its score up, the gold reward down)."""
    kl_target: float = 3.0
    """Adaptive control: the KL (nats per response) to steer towards."""
    kl_horizon: int = 2_000
    """Adaptive control: responses over which a KL error is corrected (larger is slower)."""
    gamma: float = 1.0
    """Discount over tokens (1: the response's reward counts fully at every token)."""
    gae_lambda: float = 0.95
    """GAE lambda (InstructGPT's 0.95). Below 1 the advantage leans on the critic's values
    for credit far from the end, so it needs a critic that knows something: with the
    reward-model critic the default run's explained variance is above 0.3 from the 4th
    iteration on; with a zero-initialised shared value head (critic='shared') use 1, or the
    first words of a response, which decide its sentiment, get almost no credit
    (0.95^40 = 0.13)."""
    clip_eps: float = 0.2
    """PPO's ratio clipping epsilon."""
    value_clip_eps: float = 0.2
    """Clip the value head's change per update to this (lm-human-preferences clips it)."""
    critic: Literal["shared", "reward_model"] = "reward_model"
    """Where PPO's value function V(s_t) lives. 'shared': a value head on the policy's own
    transformer, zero-initialised (lm-human-preferences, TRL). 'reward_model': a separate
    transformer initialised from the reward model, its value head from the reward model's
    (normalised) score head (InstructGPT, Ouyang et al. 2022, sec. C.4)."""
    value_lr: float = 1e-4
    """Adam's learning rate for the value function's own parameters (the separate critic, or
    the shared value head); the policy's is `lr`."""
    vf_coef: float = 0.1
    """Weight of the value loss (small, for a value head that shares the policy's backbone;
    a separate critic has an optimiser of its own, where it only scales the gradient
    before clipping)."""
    ent_coef: float = 0.0
    """Weight of an entropy bonus (0: the KL penalty already keeps the policy broad)."""
    update_epochs: int = 4
    """Passes over each batch of responses."""
    num_minibatches: int = 4
    """Minibatches per pass (B must split into them)."""
    whiten_rewards: bool = False
    """Scale the shaped per-token rewards to unit variance before GAE (TRL's option)."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over the batch's response tokens."""
    lr: float = 3e-5
    """Adam's learning rate (constant)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    eval_every: int = 10
    """Evaluate the policy on held-out prompts every this many iterations (and at the end)."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every this many iterations (and at the end)."""
    n_eval: int = 128
    """Held-out prompts for evaluation (one response each)."""
    best_of_n: int = 16
    """n of the best-of-n baseline (samples of the SFT model per evaluation prompt)."""
    n_devices: int = 0
    """Devices to run on, data-parallel; 0 means all local devices."""

    def __post_init__(self):
        check_positive_ints(self, "iterations", "batch_size", "kl_horizon", "update_epochs",
                            "num_minibatches", "eval_every", "checkpoint_every", "n_eval",
                            "best_of_n")
        for name in ("beta", "kl_target", "clip_eps", "value_clip_eps", "vf_coef", "ent_coef",
                     "lr", "value_lr", "max_grad_norm", "gamma", "gae_lambda"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RLHFConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0 or not self.value_lr > 0 or not self.kl_target > 0:
            raise ValueError(f"RLHFConfig.lr, value_lr and kl_target must be > 0, got "
                             f"{self.lr!r}, {self.value_lr!r}, {self.kl_target!r}")
        if self.critic not in ("shared", "reward_model"):
            raise ValueError("RLHFConfig.critic must be 'shared' or 'reward_model', got "
                             f"{self.critic!r}")
        if self.kl_control not in ("fixed", "adaptive"):
            raise ValueError("RLHFConfig.kl_control must be 'fixed' or 'adaptive', got "
                             f"{self.kl_control!r}")
        if self.gamma > 1 or self.gae_lambda > 1:
            raise ValueError(f"RLHFConfig.gamma and gae_lambda must be <= 1, got {self.gamma!r}, "
                             f"{self.gae_lambda!r}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"RLHFConfig.batch_size={self.batch_size} does not split into "
                             f"num_minibatches={self.num_minibatches} equal minibatches")
        object.__setattr__(self, "init", os.fspath(self.init))
        object.__setattr__(self, "reward", os.fspath(self.reward))


# --- KL control ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedKLController:
    """beta stays where it starts (InstructGPT uses beta = 0.02)."""

    def update(self, beta: jax.Array, kl: jax.Array, n_steps: int) -> jax.Array:
        del kl, n_steps
        return beta


@dataclass(frozen=True)
class AdaptiveKLController:
    """Ziegler et al. 2019, sec. 2.2: a proportional controller on log beta.

        e_t       = clip(KL_t / KL_target - 1, -0.2, 0.2)
        beta_t+1  = beta_t * (1 + K_beta * e_t),   K_beta = n_steps / horizon

    KL above target raises beta (a stronger pull back to pi_0), below lowers it; the clip
    bounds the change of one update to a factor 1 +- 0.2 * n_steps / horizon.

    Attributes:
        target: KL_target, nats per response. horizon: responses over which an error is
            corrected (Ziegler et al.: 10,000). clip: the error's bound (0.2).
    """

    target: float
    horizon: int
    clip: float = 0.2

    def update(self, beta: jax.Array, kl: jax.Array, n_steps: int) -> jax.Array:
        """beta_{t+1} (scalar) from beta_t, the measured KL_t (scalar, nats per response)
        and the n_steps responses it was measured on (see the class docstring)."""
        # BEGIN SOLUTION
        error = jnp.clip(kl / self.target - 1.0, -self.clip, self.clip)
        return beta * (1.0 + error * n_steps / self.horizon)
        # END SOLUTION


def kl_controller(cfg: RLHFConfig) -> FixedKLController | AdaptiveKLController:
    """The controller the config asks for."""
    if cfg.kl_control == "adaptive":
        return AdaptiveKLController(cfg.kl_target, cfg.kl_horizon)
    return FixedKLController()


# --- the iteration -----------------------------------------------------------------------------


@struct.dataclass
class RLHFState:
    """What PPO carries between iterations: the TrainState of the actor-critic and the KL
    coefficient.

    `train.params` is {"policy": the policy's parameters} with a shared value head, and
    {"policy": ..., "critic": the separate critic's parameters} with `critic="reward_model"`.
    """

    train: TrainState
    beta: jax.Array


@struct.dataclass
class Frozen:
    """The models that do not train: the reference (SFT) policy and the reward model."""

    ref_params: nnx.State
    rm_params: nnx.State


@struct.dataclass
class TokenBatch:
    """Experience for the update, one row per response: every field has leading size B."""

    prompt: jax.Array
    prompt_mask: jax.Array
    tokens: jax.Array
    mask: jax.Array
    logprobs: jax.Array
    values: jax.Array
    advantages: jax.Array
    returns: jax.Array


def lm_ppo_loss(graphdef: nnx.GraphDef, cfg: RLHFConfig, params: dict, mb: TokenBatch,
                critic_graphdef: nnx.GraphDef | None = None) -> tuple[jax.Array, dict]:
    """L = L_clip + vf_coef * L_V - ent_coef * H per response token, on one minibatch.

    The gym agents' losses, unchanged, with the response mask: every token is a step.
    `params` is `RLHFState.train.params`; the values come from the policy's value head or,
    with `critic_graphdef`, from the separate critic.
    """
    out = response_outputs(graphdef, params["policy"], mb.prompt, mb.prompt_mask, mb.tokens,
                           mb.mask)
    values = critic_values(graphdef, critic_graphdef, params, mb.prompt, mb.prompt_mask,
                           mb.tokens, mb.mask, policy_out=out)
    pg = clipped_surrogate_loss(out.logprobs, mb.logprobs, mb.advantages, cfg.clip_eps, mb.mask)
    vl = clipped_value_loss(values, mb.values, mb.returns, cfg.value_clip_eps, mb.mask)
    ent = masked_mean(out.entropy, mb.mask)
    loss = pg + cfg.vf_coef * vl - cfg.ent_coef * ent
    return loss, {"policy_loss": pg, "value_loss": vl, "entropy": ent,
                  "approx_kl": approx_kl(out.logprobs, mb.logprobs, mb.mask),
                  "clip_fraction": clip_fraction(out.logprobs, mb.logprobs, cfg.clip_eps,
                                                 mb.mask)}


def make_optimizer(cfg: RLHFConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5, as the gym PPO) after global-norm clipping, one per parameter group:
    the policy at `lr`, the value function at `value_lr` (`value_function_labels`).

    Each group is clipped on its own, as two separate optimisers would be: a large value
    gradient early in training must not shrink the policy's step.
    """
    def adam(lr):
        parts = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
        return optax.chain(*parts, optax.adam(lr, eps=1e-5))

    return optax.multi_transform({"policy": adam(cfg.lr), "critic": adam(cfg.value_lr)},
                                 value_function_labels)


def make_iteration(cfg: RLHFConfig, graphdef: nnx.GraphDef, ref_graphdef: nnx.GraphDef,
                   rm_graphdef: nnx.GraphDef, normalization: dict,
                   optimizer: optax.GradientTransformation,
                   critic_graphdef: nnx.GraphDef | None = None):
    """One PPO iteration: roll out, shape, GAE, update, adapt beta. Pure, to be jitted.

    Args:
        critic_graphdef: the separate critic's graph (`critic="reward_model"`), or None for
            the policy's own value head.
    Returns:
        iteration(state, frozen, prompt (B, P), prompt_mask (B, P), key) ->
        (state, metrics, tokens (B, N), mask (B, N)); the tokens go back to the host for
        the gold reward (a Python function of text, which a real user would not have).
    """
    update = make_update(lambda p, mb: lm_ppo_loss(graphdef, cfg, p, mb, critic_graphdef),
                         optimizer, cfg.update_epochs, cfg.num_minibatches)
    controller = kl_controller(cfg)

    def iteration(state: RLHFState, frozen: Frozen, prompt, prompt_mask, key):
        k_roll, k_update = jax.random.split(key)
        reward_fn = make_reward_fn(rm_graphdef, frozen.rm_params, normalization)
        params = state.train.params
        ro = rollout(graphdef, params["policy"], ref_graphdef, frozen.ref_params, reward_fn,
                     prompt, prompt_mask, k_roll, cfg.rollout, state.beta)
        if critic_graphdef is not None:
            ro = ro.replace(values=critic_values(graphdef, critic_graphdef, params, prompt,
                                                 prompt_mask, ro.tokens, ro.mask))
        rewards = whiten(ro.rewards, ro.mask, shift_mean=False) if cfg.whiten_rewards \
            else ro.rewards
        adv, ret = token_gae(rewards, ro.values, ro.mask, cfg.gamma, cfg.gae_lambda)
        if cfg.whiten_advantages:
            adv = jnp.where(ro.mask, whiten(adv, ro.mask), 0.0)
        batch = TokenBatch(prompt=prompt, prompt_mask=prompt_mask, tokens=ro.tokens,
                           mask=ro.mask, logprobs=ro.logprobs, values=ro.values,
                           advantages=adv, returns=ret)
        train, metrics = update(state.train, batch, k_update)

        B = prompt.shape[0]
        kl_per_response = jnp.sum(ro.kl, axis=1)  # (B,) nats
        kl = jnp.mean(kl_per_response)
        beta = controller.update(state.beta, kl, B)
        resid = jnp.where(ro.mask, ret - ro.values, 0.0)
        var_ret = masked_mean((ret - masked_mean(ret, ro.mask)) ** 2, ro.mask)
        var_res = masked_mean((resid - masked_mean(resid, ro.mask)) ** 2, ro.mask)
        metrics.update(
            score=jnp.mean(ro.score), kl=kl, beta=state.beta,
            shaped_return=masked_sum(ro.rewards, ro.mask) / B,
            truncated=jnp.mean(ro.truncated.astype(jnp.float32)),
            length=jnp.mean(jnp.sum(ro.mask, axis=1).astype(jnp.float32)),
            explained_variance=jnp.where(var_ret > 0, 1.0 - var_res / var_ret, jnp.nan))
        return RLHFState(train=train, beta=beta), metrics, ro.tokens, ro.mask

    return iteration


# --- evaluation: SFT, best-of-n and the PPO policy on the same prompts --------------------------


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || pi_0) = log n - (n - 1) / n (Stiennon et al. 2020, app. G.3; an upper
    bound when samples can tie, Beirami et al. 2024)."""
    return float(np.log(n) - (n - 1) / n)


@dataclass
class Samples:
    """Responses of one policy to the evaluation prompts, with their measurements."""

    texts: list[str]
    gold: np.ndarray  # (B,) the task's gold reward
    score: np.ndarray  # (B,) the reward model's normalised score
    kl: np.ndarray  # (B,) log pi(y|x) - log pi_0(y|x), nats
    truncated: np.ndarray  # (B,) bool
    length: np.ndarray  # (B,) response tokens

    def summary(self, task) -> dict:
        """Means over the prompts; "rating" (the share whose rating agrees with the words) for
        tasks that state one."""
        out = {"gold": float(self.gold.mean()), "score": float(self.score.mean()),
               "kl": float(self.kl.mean()), "truncated": float(self.truncated.mean()),
               "length": float(self.length.mean()),
               "format": float(np.mean([task.follows_format(t) for t in self.texts]))}
        if hasattr(task, "rating_agrees"):
            out["rating"] = float(np.mean([task.rating_agrees(t) for t in self.texts]))
        return out


class Evaluator:
    """Samples a policy on fixed held-out prompts and measures it (one compiled program)."""

    def __init__(self, cfg: RLHFConfig, task, tokenizer, ref_graphdef, rm_graphdef,
                 normalization: dict, frozen: Frozen):
        self.task, self.tokenizer, self.frozen = task, tokenizer, frozen
        prompts = task.prompts(cfg.n_eval, seed=cfg.seed + 777)
        self.prompts = prompts
        self.prompt, self.prompt_mask = tokenizer.encode_batch(
            prompts, bos=True, padding="left", length=1 + task.max_prompt_chars)
        self.key = jax.random.fold_in(jax.random.key(cfg.seed), 10_000)
        eval_cfg = RolloutConfig(max_new_tokens=cfg.rollout.max_new_tokens,
                                 missing_eos_penalty=0.0, kl_estimator="k1")

        def sample(graphdef, params, frozen: Frozen, key):
            reward_fn = make_reward_fn(rm_graphdef, frozen.rm_params, normalization)
            ro = rollout(graphdef, params, ref_graphdef, frozen.ref_params, reward_fn,
                         self.prompt, self.prompt_mask, key, eval_cfg, 0.0)
            return ro.tokens, ro.mask, ro.score, jnp.sum(ro.kl, 1), ro.truncated

        self._sample = jax.jit(sample, static_argnums=0)

    def samples(self, graphdef, params, draw: int = 0) -> Samples:
        """One response per evaluation prompt; `draw` picks an independent set of samples."""
        tokens, mask, score, kl, truncated = jax.device_get(
            self._sample(graphdef, params, self.frozen, jax.random.fold_in(self.key, draw)))
        texts = self.tokenizer.decode_batch(tokens, mask)
        return Samples(texts=texts, gold=np.array([self.task.gold_reward(t) for t in texts]),
                       score=np.asarray(score), kl=np.asarray(kl),
                       truncated=np.asarray(truncated), length=mask.sum(1))

    def best_of_n(self, graphdef, params, n: int) -> tuple[Samples, dict[int, dict]]:
        """Best-of-n: n samples per prompt, keep the one the reward model scores highest.

        Its KL to the sampling policy is not measured per sample but given by the formula
        `best_of_n_kl(n)`, filled in for every row. Returns (the best-of-n samples, the
        `best_of_n_curve` of the same draws: best-of-1, 2, 4, ..., n).
        """
        draws = [self.samples(graphdef, params, draw=1 + i) for i in range(n)]
        score = np.stack([d.score for d in draws])  # (n, B)
        best = np.argmax(score, axis=0)  # (B,)
        pick = lambda name: np.stack([getattr(d, name) for d in draws])[best,
                                                                         np.arange(len(best))]
        curve = best_of_n_curve(score, np.stack([d.gold for d in draws]), best_of_n_sizes(n))
        return Samples(texts=[draws[j].texts[i] for i, j in enumerate(best)], gold=pick("gold"),
                       score=pick("score"), kl=np.full(len(best), best_of_n_kl(n)),
                       truncated=pick("truncated"), length=pick("length")), curve


def best_of_n_sizes(n: int) -> list[int]:
    """1, 2, 4, ... below n, then n."""
    return [2 ** k for k in range(n.bit_length()) if 2 ** k < n] + [n]


def best_of_n_curve(score: np.ndarray, gold: np.ndarray, sizes: list[int]) -> dict[int, dict]:
    """Best-of-m for each m in sizes, read off the same draws: per prompt, the first m draws'
    highest-scoring response. With one set of n draws the curve costs no more samples than
    best-of-n alone, and its last point is best-of-n itself.

    Args:
        score, gold: (n, B) reward-model score and gold reward of n draws per prompt.
        sizes: the m to report, each in 1..n.
    Returns:
        {m: {"kl": best_of_n_kl(m), "score": mean score, "gold": mean gold}}.
    """
    if score.ndim != 2 or score.shape != gold.shape:
        raise ValueError(f"score and gold must both be (n, B); got {score.shape}, {gold.shape}")
    if not all(1 <= m <= score.shape[0] for m in sizes):
        raise ValueError(f"best-of-m sizes {sizes} must lie in 1..{score.shape[0]} (the draws)")
    cols = np.arange(score.shape[1])
    curve = {}
    for m in sizes:
        best = np.argmax(score[:m], axis=0)  # (B,)
        curve[m] = {"kl": best_of_n_kl(m), "score": float(score[best, cols].mean()),
                    "gold": float(gold[best, cols].mean())}
    return curve


def along_path(path: list[tuple[float, float]], kl: float) -> float | None:
    """A value where a training path first reaches `kl`, linear between its evaluations.

    Used to compare methods at matched KL: PPO's held-out path (SFT at KL 0, then every
    `eval_every` iterations) read at the KL where best-of-n, GRPO or DPO ended.

    Args:
        path: [(kl, value), ...] in training order.
        kl: the KL to read the path at.
    Returns:
        the interpolated value, or None if the path never reaches `kl`.
    """
    if path and kl <= path[0][0]:  # a sampled KL estimate can dip just below the start
        return path[0][1]
    for (k0, v0), (k1, v1) in zip(path, path[1:]):
        if k0 <= kl <= k1 and k1 > k0:
            return v0 + (v1 - v0) * (kl - k0) / (k1 - k0)
    return None


# --- the stage ---------------------------------------------------------------------------------


def load_models(cfg: RLHFConfig):
    """The policy (SFT, with a value head if `cfg.critic` is "shared"), the reference (SFT),
    the reward model, and the separate critic (None with a shared value head).

    Returns:
        (graphdef, params, tokenizer, meta), (ref_graphdef, ref_params),
        (rm_graphdef, rm_params, rm_meta), (critic_graphdef, critic_params) or None.
    """
    for name in ("init", "reward"):
        if not (Path(getattr(cfg, name)) / "checkpoints").is_dir():
            raise FileNotFoundError(f"RLHFConfig.{name}={getattr(cfg, name)!r} is not a run "
                                    "folder with checkpoints")
    graphdef, params, tokenizer, meta = load_with_heads(cfg.init, cfg.seed,
                                                        value_head=cfg.critic == "shared")
    ref_graphdef, ref_params, _, _ = load_model(cfg.init)
    rm_graphdef, rm_params, rm_tokenizer, rm_meta = load_model(cfg.reward)
    if rm_meta.get("stage") != "reward" or "normalization" not in rm_meta:
        raise ValueError(f"RLHFConfig.reward={cfg.reward!r} does not hold a finished reward "
                         "model")
    if rm_tokenizer.to_json() != tokenizer.to_json():
        raise ValueError(f"the reward model in {cfg.reward!r} and the SFT model in "
                         f"{cfg.init!r} use different tokenizers")
    critic = None
    if cfg.critic == "reward_model":
        critic = critic_from_reward_model(cfg.reward, rm_params, rm_meta["normalization"],
                                          cfg.seed)
    return (graphdef, params, tokenizer, meta), (ref_graphdef, ref_params), \
        (rm_graphdef, rm_params, rm_meta), critic


def train_rlhf(cfg: RLHFConfig, run_dir: str | Path, stop_after: int | None = None):
    """Run PPO from the SFT model against the reward model; write the run folder.

    Writes checkpoints/ (policy, optimiser state, beta, and the separate critic: see
    `load_critic`), metrics.jsonl (per iteration:
    score, gold, kl, beta, entropy, clip_fraction, truncated, length, losses; eval_* every
    eval_every), baselines.json (SFT and best-of-n on the evaluation prompts, computed once),
    rlhf.png, gold_vs_score.png and summary.json. Re-running resumes from the last checkpoint
    and ends with the same parameters as an uninterrupted run.

    Returns:
        (graphdef, params, summary): summary["sft"], ["best_of_n"], ["ppo"] each hold gold,
        score, kl, truncated, length, format on the evaluation prompts.
    """
    from minirlhf.envs import make_task

    (graphdef, policy_params, tokenizer, meta), (ref_graphdef, ref_params), \
        (rm_graphdef, rm_params, rm_meta), critic = load_models(cfg)
    critic_graphdef = None if critic is None else critic[0]
    params = {"policy": policy_params} if critic is None else \
        {"policy": policy_params, "critic": critic[1]}
    task = make_task(meta["task"])
    P = 1 + task.max_prompt_chars
    for name, model_meta in (("policy", meta), ("reward model", rm_meta)):
        if P + cfg.rollout.max_new_tokens > model_meta["model"]["max_len"]:
            raise ValueError(
                f"RLHFConfig.rollout.max_new_tokens={cfg.rollout.max_new_tokens} plus the "
                f"longest prompt ({P} tokens) exceeds the {name}'s max_len="
                f"{model_meta['model']['max_len']}")
    mesh = make_mesh(cfg.n_devices or None)
    check_divisible(cfg.batch_size, mesh, "RLHFConfig.batch_size")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    normalization = rm_meta["normalization"]
    optimizer = make_optimizer(cfg)
    state = RLHFState(train=TrainState(params=params, opt_state=optimizer.init(params),
                                       step=jnp.asarray(0, jnp.int32)),
                      beta=jnp.asarray(cfg.beta, jnp.float32))

    ckpt = Checkpointer(run_dir / "checkpoints")
    start = ckpt.latest_step() or 0
    if start:
        check_same_config(run_dir, cfg)
        saved = ckpt.read_meta()["config"].get("critic", "shared")  # older runs: shared
        if saved != cfg.critic:
            raise ValueError(f"run folder {run_dir} holds a PPO run with critic={saved!r}, "
                             f"not RLHFConfig.critic={cfg.critic!r}; resume it with "
                             f"--critic {saved} or use another output folder")
        p, o, ck_meta = ckpt.restore(params["policy"], state.train.opt_state)
        p = {"policy": p} if critic is None else \
            {"policy": p, "critic": ckpt.restore_item("critic", params["critic"])}
        state = RLHFState(train=TrainState(params=p, opt_state=o,
                                           step=jnp.asarray(ck_meta["updates"], jnp.int32)),
                          beta=jnp.asarray(ck_meta["beta"], jnp.float32))
    atomic_write_text(run_dir / "config.json", json.dumps(to_dict(cfg), indent=2))
    frozen = Frozen(ref_params=ref_params, rm_params=rm_params)
    evaluator = Evaluator(cfg, task, tokenizer, ref_graphdef, rm_graphdef, normalization, frozen)

    baselines_path = run_dir / "baselines.json"
    if baselines_path.exists():
        baselines = json.loads(baselines_path.read_text())
    else:
        sft_samples = evaluator.samples(ref_graphdef, ref_params)
        bon, curve = evaluator.best_of_n(ref_graphdef, ref_params, cfg.best_of_n)
        baselines = {"sft": sft_samples.summary(task), "best_of_n": bon.summary(task),
                     "n": cfg.best_of_n, "best_of_n_curve": {str(m): v for m, v in curve.items()},
                     "samples": {"sft": sft_samples.texts,
                                                     "best_of_n": bon.texts},
                     "points": {"sft": [sft_samples.gold.tolist(), sft_samples.score.tolist()],
                                "best_of_n": [bon.gold.tolist(), bon.score.tolist()]}}
        atomic_write_text(baselines_path, json.dumps(baselines, indent=2))

    state = replicate(state, mesh)
    frozen_dev = replicate(frozen, mesh)
    iteration = jax.jit(make_iteration(cfg, graphdef, ref_graphdef, rm_graphdef, normalization,
                                       optimizer, critic_graphdef), donate_argnums=(0,))
    writer = MetricsWriter(run_dir / "metrics.jsonl", resume_from_step=start if start else None)
    key = jax.random.key(cfg.seed)
    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    bar = progress(cfg.iterations, "ppo", initial=start)
    latest = None
    for it in range(start, end):
        prompts = task.prompts(cfg.batch_size, seed=cfg.seed * 1_000_003 + it + 1)
        prompt, prompt_mask = tokenizer.encode_batch(prompts, bos=True, padding="left",
                                                     length=P)
        batch = shard_batch((prompt, prompt_mask), mesh)
        state, metrics, tokens, mask = iteration(state, frozen_dev, *batch,
                                                 jax.random.fold_in(key, it))
        texts = tokenizer.decode_batch(np.asarray(tokens), np.asarray(mask))
        record = {k: float(v) for k, v in metrics.items()}
        record["gold"] = float(np.mean([task.gold_reward(t) for t in texts]))
        done = it + 1
        if done % cfg.eval_every == 0 or done == cfg.iterations:
            latest = evaluator.samples(graphdef, jax.device_get(state.train.params["policy"]))
            record.update({f"eval_{k}": v for k, v in latest.summary(task).items()})
        writer.write(done, **record)
        bar.update(1)
        bar.set_postfix(score=f"{record['score']:.2f}", gold=f"{record['gold']:.2f}",
                        kl=f"{record['kl']:.2f}")
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            extra = {k: v for k, v in state.train.params.items() if k == "critic"}
            critic_meta = {} if critic is None else \
                {"critic_model": critic_model_config(rm_meta["model"])}
            ckpt.save(done, state.train.params["policy"], state.train.opt_state,
                      {**meta, "stage": "rlhf",
                       "model": {**meta["model"], "value_head": critic is None},
                       "config": to_dict(cfg), "iteration": done,
                       "updates": int(state.train.step), "beta": float(state.beta),
                       **critic_meta}, **extra)
    bar.close()
    ckpt.close()
    params = jax.device_get(state.train.params["policy"])
    if end < cfg.iterations:
        return graphdef, params, {}

    # The loop evaluated the final policy already, unless it had nothing left to do (a
    # finished run read back); the evaluation key is fixed, so both give the same samples.
    final = latest if end > start else evaluator.samples(graphdef, params)
    history = read_metrics(run_dir / "metrics.jsonl")
    summary = {"sft": baselines["sft"], "best_of_n": baselines["best_of_n"],
               "ppo": final.summary(task), "n": baselines["n"],
               "best_of_n_curve": baselines.get("best_of_n_curve", {}),
               "samples": [{"prompt": p, "sft": a, "best_of_n": b, "ppo": c} for p, a, b, c in
                           zip(evaluator.prompts, baselines["samples"]["sft"],
                               baselines["samples"]["best_of_n"], final.texts)]}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    plot_training(history, run_dir / "rlhf.png")
    points = {**baselines["points"], "ppo": [final.gold.tolist(), final.score.tolist()]}
    plot_gold_vs_score(points, baselines["n"], run_dir / "gold_vs_score.png")
    return graphdef, params, summary


# --- plots -------------------------------------------------------------------------------------


def plot_training(history: list[dict], path: str | Path, title: str = "PPO on the reward model"):
    """Reward-model score and gold reward (left), KL to SFT and beta (right) per iteration."""
    fig = Figure(figsize=(10, 3.8))
    ax1, ax2 = fig.subplots(1, 2)
    rows = [r for r in history if "score" in r]
    it = [r["step"] for r in rows]
    ax1.plot(it, [r["score"] for r in rows], label="reward-model score (normalised)")
    ax1.plot(it, [r["gold"] for r in rows], label="gold reward")
    ev = [r for r in rows if "eval_gold" in r]
    if ev:
        ax1.plot([r["step"] for r in ev], [r["eval_gold"] for r in ev], "o", color="C1",
                 label="gold, held-out prompts")
    ax1.set_xlabel("PPO iteration")
    ax1.set_title(title)
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax2.plot(it, [r["kl"] for r in rows], color="C2", label="KL(pi || pi_SFT), nats/response")
    ax2.set_xlabel("PPO iteration")
    ax2.grid(alpha=0.3)
    twin = ax2.twinx()
    twin.plot(it, [r["beta"] for r in rows], color="C3", ls="--", label="beta")
    twin.set_ylabel("beta")
    ax2.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def plot_gold_vs_score(points: dict, n: int, path: str | Path) -> None:
    """Gold reward against reward-model score, one point per evaluation response."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.subplots()
    names = {"sft": "SFT", "best_of_n": f"best-of-{n}", "ppo": "PPO"}
    for name, (gold, score) in points.items():
        ax.scatter(score, gold, s=10, alpha=0.6, label=names.get(name, name))
    ax.set_xlabel("reward-model score (normalised)")
    ax.set_ylabel("gold reward")
    ax.set_title("does the reward model track the truth?")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
