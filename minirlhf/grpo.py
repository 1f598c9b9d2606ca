"""GRPO: group relative policy optimisation, PPO without a critic (layer 2).

The decks' second recipe (deck "Large Language Models and RL from Human Feedback", slides
"Group Relative Policy Optimization (GRPO)" and "DeepSeek-R1-Zero"; Shao et al. 2024,
DeepSeekMath; DeepSeek-AI 2025, R1): for each question q sample a group of G responses
o_1..o_G from the current policy, score each with a reward (a rule that checks the answer
and the format, or a reward model), and give every token of o_i the same advantage, the
response's reward relative to its group:

    A_i = (r_i - mean(r_1..r_G)) / std(r_1..r_G)

What GRPO drops, next to PPO-RLHF (rlhf.py): the critic (the group mean is the baseline),
GAE (one advantage per response), and the KL penalty in the reward (it moves into the loss,
`losses.grpo_loss`). What it keeps: the sampler (`generate`), the token log-probs
(`rollout.response_outputs`), the clipped surrogate (`losses.clipped_surrogate`), the
k3 KL estimator (`distributions.kl_estimate`) and PPO's epochs x minibatches update
(`ppo.make_update`). One iteration -- sample, score, advantages, update -- is one
`jax.jit`, data-parallel over the devices the prompts are split across, like the RLHF
iteration.

The reward is a plug-in (`RewardFn`): a Python function of text,
`reward_fn(prompts: list[str], responses: list[str]) -> (B,) rewards`, runs on the host
inside the jitted iteration through `jax.pure_callback` (`rule_reward`); a reward model
is the same seam computed on the device (`model_reward`).

    state, metrics, tokens, mask, rewards = iteration(state, ref_params, reward_params,
                                                      prompt, prompt_mask, key)

Notation: B prompts per iteration, G responses per prompt, P prompt length, N response
tokens (max_new_tokens).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from matplotlib.figure import Figure

from minirlhf.advantages import GROUP_ADVANTAGES, flat_groups, group_advantages
from minirlhf.checkpoint import Checkpointer, load_model
from minirlhf.configs import check_positive_ints, check_same_config, to_dict
from minirlhf.distributions import kl_estimate, masked_sum
from minirlhf.evaluation import VerifierEvaluator, base_pass_at_k
from minirlhf.generate import SamplingConfig, generate
from minirlhf.logging import (MetricsWriter, atomic_write_text, progress, read_metrics, save_figure,
                              say)
from minirlhf.losses import AGGREGATIONS, aggregate, count_responses, grpo_loss
from minirlhf.optim import TrainState, accumulate_gradients, num_microbatches
from minirlhf.parallel import (DATA, check_divisible, default_microbatch_tokens, make_mesh,
                               microbatches_at_once, replicate, shard_batch)
from minirlhf.ppo import make_update
from minirlhf.reward_model import make_reward_fn
from minirlhf.rollout import response_outputs
from minirlhf.tokenizer import CharTokenizer


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO on a language model: groups of responses, a rule or a reward model, no critic."""

    seed: int = 0
    """Seed of the prompts and the sampling."""
    init: str = ""
    """Run folder of the model to start from; it also stays the reference pi_ref."""
    reward: str = ""
    """Run folder of a reward model to score responses with; empty: the task's own
    rule-based reward (its verifier)."""
    iterations: int = 100
    """GRPO iterations: each samples B x G responses, scores them and updates on them."""
    prompts_per_iteration: int = 16
    """B: prompts per iteration, split over devices."""
    group_size: int = 8
    """G: responses sampled per prompt (the group whose mean is the baseline), >= 2."""
    max_new_tokens: int = 64
    """N: the longest response; one that reaches it without EOS is truncated."""
    advantage: Literal["grpo", "dr_grpo", "rloo"] = "grpo"
    """'grpo': (r - mean) / std per group; 'dr_grpo': r - mean (Liu et al. 2025);
    'rloo': r minus the mean of the other G - 1 (Ahmadian et al. 2024)."""
    std_floor: float = 1e-3
    """A group whose rewards' std is below this counts as flat: advantage 0, never a
    rounding difference blown up by the std division."""
    beta: float = 0.04
    """Weight of the k3 KL to the reference in the loss (DeepSeekMath: 0.04; 0 drops it)."""
    clip_eps: float = 0.2
    """eps_low: the ratio's lower clip is 1 - clip_eps."""
    clip_eps_high: float = 0.2
    """eps_high: the ratio's upper clip is 1 + clip_eps_high (DAPO's clip-higher: 0.28)."""
    aggregation: Literal["sequence_mean", "token_mean", "constant"] = "sequence_mean"
    """How per-token terms are averaged: per response then over responses (GRPO), over all
    tokens (DAPO), or summed and divided by B x N (Dr. GRPO); see losses.aggregate."""
    update_epochs: int = 1
    """Passes over each batch of responses (mu in the GRPO paper); pi_old is the sampler."""
    num_minibatches: int = 2
    """Gradient steps per pass: the B x G responses split into this many minibatches."""
    lr: float = 1e-4
    """Adam's learning rate (constant)."""
    microbatch_tokens: int = -1
    """Gradient accumulation: each minibatch's gradient is summed over microbatches of at
    most this many tokens (prompt + response, all devices together: the update runs on the
    global batch), the same gradient up to float rounding.
    0: the whole minibatch at once; -1: 512 on CPU, where it is faster, 0 on GPU/TPU
    (`parallel.default_microbatch_tokens`)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables)."""
    truncation: Literal["mask", "penalty"] = "mask"
    """What happens to a response cut off at max_new_tokens: 'mask' keeps it out of the loss
    (DAPO's overlong filtering: its reward judged unfinished text); 'penalty' keeps it, its
    reward lowered by truncation_penalty. Either way it is counted in the 'truncated' metric."""
    truncation_penalty: float = 1.0
    """Subtracted from a truncated response's reward when truncation='penalty'."""
    dynamic_sampling: bool = False
    """Keep flat groups (all rewards equal) out of the loss and its averages (DAPO's dynamic
    sampling, without the refill: the batch shrinks instead)."""
    flat_warning: float = 0.5
    """Warn when, over the last 10 iterations, more than this share of the groups was flat
    (no gradient)."""
    eval_every: int = 25
    """Evaluate on held-out prompts every this many iterations (and at the end)."""
    checkpoint_every: int = 25
    """Save a resumable checkpoint every this many iterations (and at the end)."""
    n_eval: int = 128
    """Held-out prompts per evaluation."""
    pass_k: int = 8
    """k of pass@k in evaluations (samples per held-out prompt)."""
    n_devices: int = 0
    """Devices to run on, data-parallel; 0 means all local devices."""

    def __post_init__(self):
        check_positive_ints(self, "iterations", "prompts_per_iteration", "group_size",
                            "max_new_tokens", "update_epochs", "num_minibatches", "eval_every",
                            "checkpoint_every", "n_eval", "pass_k")
        if self.group_size < 2:
            raise ValueError(f"GRPOConfig.group_size must be >= 2 (a group needs a mean to "
                             f"compare with), got {self.group_size}")
        rows = self.prompts_per_iteration * self.group_size
        if rows % self.num_minibatches:
            raise ValueError(f"GRPOConfig: prompts_per_iteration x group_size = {rows} "
                             f"responses do not split into num_minibatches="
                             f"{self.num_minibatches} equal minibatches")
        for name in ("std_floor", "beta", "clip_eps", "clip_eps_high", "max_grad_norm",
                     "truncation_penalty"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"GRPOConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0 or not 0 < self.clip_eps < 1:
            raise ValueError(f"GRPOConfig.lr must be > 0 and clip_eps in (0, 1), got "
                             f"{self.lr!r}, {self.clip_eps!r}")
        if (not isinstance(self.microbatch_tokens, int) or isinstance(self.microbatch_tokens, bool)
                or self.microbatch_tokens < -1):
            raise ValueError(f"GRPOConfig.microbatch_tokens must be an integer >= -1 (-1: "
                             f"automatic, 0: no accumulation), got {self.microbatch_tokens!r}")
        if not 0 <= self.flat_warning <= 1:
            raise ValueError(f"GRPOConfig.flat_warning must be in [0, 1], got "
                             f"{self.flat_warning!r}")
        for name, options in (("advantage", GROUP_ADVANTAGES), ("aggregation", AGGREGATIONS),
                              ("truncation", ("mask", "penalty"))):
            if getattr(self, name) not in options:
                raise ValueError(f"GRPOConfig.{name} must be one of {options}, got "
                                 f"{getattr(self, name)!r}")
        object.__setattr__(self, "init", os.fspath(self.init))
        object.__setattr__(self, "reward", os.fspath(self.reward))


# --- the reward seam -------------------------------------------------------------------------

TextRewardFn = Callable[[list[str], list[str]], np.ndarray]
"""A verifier: reward_fn(prompts, responses) -> (B,) rewards, plain Python on the host."""


@dataclass(frozen=True)
class RewardFn:
    """A reward GRPO can call inside its jitted iteration.

    `fn(params, prompt, prompt_mask, tokens, mask) -> (B,) float32` with prompt (B, P) and
    tokens (B, N) and their masks; `params` is a pytree of arrays passed to the iteration as
    an argument (a reward model's weights), or None for a rule. Build one with
    `rule_reward` (any Python function of text) or `model_reward` (a trained reward model).
    """

    fn: Callable
    name: str
    errors: list = field(default_factory=list)
    """Faults the host-side reward met while the iteration ran (see `rule_reward`)."""


def check_rewards(rewards, n: int, name: str) -> np.ndarray:
    """The rewards as a (n,) float32 array, or a ValueError naming the reward and the fault."""
    try:
        out = np.asarray(rewards, np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"reward {name!r} returned {type(rewards).__name__}, not numbers: "
                         f"{err}") from None
    if out.shape != (n,):
        raise ValueError(f"reward {name!r} returned shape {out.shape} for {n} responses; "
                         f"expected ({n},)")
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        raise ValueError(f"reward {name!r} returned {out[bad[0]]} (not finite) for response "
                         f"{bad[0]} of {n}")
    return out


def rule_reward(reward_fn: TextRewardFn, tokenizer: CharTokenizer,
                name: str | None = None) -> RewardFn:
    """A Python function of text as a GRPO reward: inside the jitted iteration the tokens
    go to the host (`jax.pure_callback`), are decoded, scored and checked (`check_rewards`),
    and the rewards come back. The function must be deterministic (pure): JAX may call it
    again, or not at all if the result is unused.

    An exception must not cross a pure_callback (JAX documents the result as undefined),
    so a fault -- the function raising, or returning the wrong shape or a NaN -- is kept
    in `errors` and the rewards come back as NaN; the training loop raises it before
    anything of that iteration is saved."""
    label = name or getattr(reward_fn, "__qualname__", repr(reward_fn))
    errors: list[str] = []

    def on_host(prompt, prompt_mask, tokens, mask):
        prompts = tokenizer.decode_batch(np.asarray(prompt), np.asarray(prompt_mask))
        responses = tokenizer.decode_batch(np.asarray(tokens), np.asarray(mask))
        try:
            return check_rewards(reward_fn(prompts, responses), len(responses), label)
        except Exception as err:  # noqa: BLE001 -- any fault of user code, reported later
            errors.append(f"{type(err).__name__}: {err}")
            return np.full(len(responses), np.nan, np.float32)

    def fn(params, prompt, prompt_mask, tokens, mask):
        del params
        shape = jax.ShapeDtypeStruct((tokens.shape[0],), jnp.float32)
        return jax.pure_callback(on_host, shape, prompt, prompt_mask, tokens, mask,
                                 vmap_method="sequential")

    return RewardFn(fn=fn, name=label, errors=errors)


def model_reward(rm_graphdef: nnx.GraphDef, normalization: dict) -> RewardFn:
    """A trained reward model as a GRPO reward (DeepSeekMath's setting): its normalised
    score of prompt + response, computed on the device; the iteration's `reward_params`
    are the reward model's parameters."""
    def fn(params, prompt, prompt_mask, tokens, mask):
        seq, seq_mask = jnp.concatenate([prompt, tokens], 1), jnp.concatenate([prompt_mask,
                                                                                mask], 1)
        return make_reward_fn(rm_graphdef, params, normalization)(seq, seq_mask)

    return RewardFn(fn=fn, name="reward model")


# --- the iteration -----------------------------------------------------------------------------


@struct.dataclass
class GroupBatch:
    """Experience for the update, one row per response (B x G rows, a group's G in a row).

    Attributes:
        prompt, prompt_mask: (BG, P). tokens, mask: (BG, N) the response.
        logprobs: (BG, N) log pi_old of the response tokens (the sampling policy).
        ref_logprobs: (BG, N) log pi_ref. advantages: (BG,). loss_mask: (BG, N) bool, the
            tokens that count in the loss (mask, less truncated or flat-group responses).
    """

    prompt: jax.Array
    prompt_mask: jax.Array
    tokens: jax.Array
    mask: jax.Array
    logprobs: jax.Array
    ref_logprobs: jax.Array
    advantages: jax.Array
    loss_mask: jax.Array


def grpo_objective(graphdef: nnx.GraphDef, cfg: GRPOConfig, params: nnx.State,
                   mb: GroupBatch, counts: tuple | None = None) -> tuple[jax.Array, dict]:
    """The GRPO loss of one minibatch (`losses.grpo_loss`), with its diagnostics.

    With `counts`, the (responses, tokens) of the whole minibatch that `mb` is a microbatch
    of, the loss and every diagnostic are sums over `mb` divided by the minibatch's
    counts: added over the microbatches, they are the minibatch's (as
    `optim.accumulate_gradients` needs).
    """
    counts = count_responses(mb.loss_mask) if counts is None else counts
    out = response_outputs(graphdef, params, mb.prompt, mb.prompt_mask, mb.tokens, mb.mask)
    loss = grpo_loss(out.logprobs, mb.logprobs, mb.ref_logprobs, mb.advantages, mb.loss_mask,
                     cfg.clip_eps, cfg.clip_eps_high, cfg.beta, cfg.aggregation,
                     cfg.max_new_tokens, counts)
    ratio = jnp.exp(out.logprobs - mb.logprobs)
    adv = mb.advantages[:, None]
    # The clip bites where the ratio left its range in the direction the advantage favours.
    low = (ratio < 1.0 - cfg.clip_eps) & (adv < 0)
    high = (ratio > 1.0 + cfg.clip_eps_high) & (adv > 0)
    per_token = lambda x: masked_sum(x, mb.loss_mask) / jnp.maximum(counts[1], 1)
    return loss, {"entropy": per_token(out.entropy),
                  "clip_low": per_token(low.astype(jnp.float32)),
                  "clip_high": per_token(high.astype(jnp.float32)),
                  "approx_kl": per_token(kl_estimate(mb.logprobs, out.logprobs, "k3"))}


def make_optimizer(cfg: GRPOConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping, as the RLHF PPO."""
    parts = [optax.clip_by_global_norm(cfg.max_grad_norm)] if cfg.max_grad_norm > 0 else []
    return optax.chain(*parts, optax.adam(cfg.lr, eps=1e-5))


def counted_responses(truncated: jax.Array, flat: jax.Array, cfg: GRPOConfig) -> jax.Array:
    """Which responses enter the loss: (BG,) bool from truncated (BG,) and flat (B,).

    With truncation="mask" a truncated response is left out (DAPO's overlong filtering:
    its reward judged text that was cut off, not an answer); with dynamic_sampling every
    response of a flat group is (DAPO's dynamic sampling, without refilling the batch).
    """
    counts = jnp.ones_like(truncated)
    if cfg.truncation == "mask":
        counts = counts & ~truncated
    if cfg.dynamic_sampling:
        counts = counts & ~jnp.repeat(flat, cfg.group_size)
    return counts


def make_grpo_update(cfg: GRPOConfig, graphdef: nnx.GraphDef,
                     optimizer: optax.GradientTransformation, unroll: int = 1):
    """GRPO's optimisation phase: PPO's `make_update` (update_epochs x num_minibatches Adam
    steps) over a GroupBatch, each minibatch's gradient summed over microbatches of at most
    `cfg.microbatch_tokens` tokens, `unroll` of them side by side.

    Returns:
        update(state, batch: GroupBatch, key) -> (state, metrics).
    """
    micro_tokens = default_microbatch_tokens() if cfg.microbatch_tokens < 0 \
        else cfg.microbatch_tokens

    def grads_of(params, mb: GroupBatch):
        """((loss, metrics), grads) of one minibatch, summed over its microbatches."""
        counts = count_responses(mb.loss_mask)
        n = num_microbatches(mb.tokens.shape[0], mb.prompt.shape[1] + mb.tokens.shape[1],
                             micro_tokens)
        return accumulate_gradients(lambda p, micro: grpo_objective(graphdef, cfg, p, micro,
                                                                    counts),
                                    params, mb, n, min(unroll, n))

    # A minibatch with no token in the loss (all its responses flat under dynamic sampling,
    # or all truncated) takes no step: its gradient is 0, but Adam would still move.
    return make_update(None, optimizer, cfg.update_epochs, cfg.num_minibatches,
                       grad_fn=grads_of, step_if=lambda mb: jnp.any(mb.loss_mask))


def make_iteration(cfg: GRPOConfig, graphdef: nnx.GraphDef, ref_graphdef: nnx.GraphDef,
                   reward: RewardFn, optimizer: optax.GradientTransformation,
                   unroll: int = 1):
    """One GRPO iteration: sample G per prompt, score, group advantages, update. Pure, to
    be jitted.

    Args:
        unroll: microbatches of the gradient accumulation run side by side
            (`parallel.microbatches_at_once`); the same result, only the speed differs.
    Returns:
        iteration(state, ref_params, reward_params, prompt (B, P), prompt_mask (B, P), key)
        -> (state, metrics, tokens (BG, N), mask (BG, N), rewards (BG,)); row b * G + g is
        response g to prompt b.
    """
    update = make_grpo_update(cfg, graphdef, optimizer, unroll)
    G = cfg.group_size

    def iteration(state: TrainState, ref_params, reward_params, prompt, prompt_mask, key):
        k_sample, k_update = jax.random.split(key)
        B = prompt.shape[0]
        prompt, prompt_mask = jnp.repeat(prompt, G, axis=0), jnp.repeat(prompt_mask, G, axis=0)
        # Temperature 1, no filtering: the ratio pi / pi_old needs samples of pi_old itself,
        # and the sampler's log-probs are then pi_old's. (A full forward would give the
        # same numbers up to float rounding, at the cost of one more forward pass: 10% of
        # an iteration at benchmarks/bench_grpo.py's config.)
        gen = generate(graphdef, state.params, prompt, prompt_mask, k_sample,
                       SamplingConfig(max_new_tokens=cfg.max_new_tokens))
        ref = response_outputs(ref_graphdef, ref_params, prompt, prompt_mask, gen.tokens,
                               gen.mask)
        rewards = reward.fn(reward_params, prompt, prompt_mask, gen.tokens, gen.mask)  # (BG,)
        truncated = ~gen.finished
        if cfg.truncation == "penalty":
            rewards = rewards - cfg.truncation_penalty * truncated.astype(jnp.float32)
        flat = flat_groups(rewards.reshape(B, G), cfg.std_floor)  # (B,)
        adv = group_advantages(rewards.reshape(B, G), cfg.advantage, cfg.std_floor).reshape(-1)
        counts = counted_responses(truncated, flat, cfg)
        batch = GroupBatch(prompt=prompt, prompt_mask=prompt_mask, tokens=gen.tokens,
                           mask=gen.mask, logprobs=gen.logprobs, ref_logprobs=ref.logprobs,
                           advantages=adv, loss_mask=gen.mask & counts[:, None])
        state, metrics = update(state, batch, k_update)

        f32 = lambda x: jnp.mean(x.astype(jnp.float32))
        # k3 per token is never negative, and its sum over a response estimates the
        # sequence's KL(pi || pi_ref) without bias (by the chain rule of KL).
        kl_tokens = jnp.where(gen.mask, kl_estimate(gen.logprobs, ref.logprobs, "k3"), 0.0)
        metrics.update(
            reward=jnp.mean(rewards), reward_std=jnp.std(rewards),
            flat_groups=f32(flat), truncated=f32(truncated),
            length=jnp.mean(jnp.sum(gen.mask, axis=1).astype(jnp.float32)),
            kl=jnp.mean(jnp.sum(kl_tokens, axis=1)),
            kl_per_token=aggregate(kl_tokens, gen.mask, "token_mean"),
            adv_abs_max=jnp.max(jnp.abs(adv)))
        return state, metrics, gen.tokens, gen.mask, rewards

    return iteration


# --- the stage ---------------------------------------------------------------------------------


def train_grpo(cfg: GRPOConfig, run_dir: str | Path, task=None,
               reward_fn: TextRewardFn | None = None, evaluate=None,
               stop_after: int | None = None, echo=say):
    """Run GRPO from the model in `cfg.init`; write the run folder.

    Writes checkpoints/ (policy and optimiser state), metrics.jsonl (per iteration: reward,
    flat_groups, truncated, length, kl, entropy, clip fractions, ...; eval_* every
    eval_every), config.json, grpo.png and summary.json. Re-running resumes from the last
    checkpoint and ends with the same parameters as an uninterrupted run.

    Args:
        cfg: the config.
        run_dir: the run folder.
        task: the text task (default: the one `cfg.init` was trained on). Its
            `prompts(n, seed)` are the questions.
        reward_fn: a verifier `(prompts, responses) -> (B,) rewards`; default: the reward
            model in `cfg.reward` if set, else `task.reward`.
        evaluate: (graphdef, params) -> dict of figures, every eval_every iterations: its
            numbers are logged as eval_*, the whole dict (samples too) goes into the
            summary; default: `VerifierEvaluator` on held-out prompts if the task verifies.
        stop_after: stop after this many iterations in total (to simulate an interruption).
        echo: where warnings and the base-model check are printed.
    Returns:
        (graphdef, params, summary): summary["base"] and ["grpo"] hold the evaluation
        figures before and after RL (empty without an evaluator).
    """
    graphdef, params, tokenizer, meta, ref_params, reward, reward_params, task = \
        _setup(cfg, task, reward_fn)
    P = 1 + task.max_prompt_chars
    if P + cfg.max_new_tokens > meta["model"]["max_len"]:
        raise ValueError(f"GRPOConfig.max_new_tokens={cfg.max_new_tokens} plus the longest "
                         f"prompt ({P} tokens) exceeds the model's max_len="
                         f"{meta['model']['max_len']}")
    mesh = make_mesh(cfg.n_devices or None)
    check_divisible(cfg.prompts_per_iteration, mesh, "GRPOConfig.prompts_per_iteration")
    if evaluate is None and hasattr(task, "verify") and hasattr(task, "held_out_prompts"):
        evaluate = VerifierEvaluator(task, tokenizer, cfg.n_eval, cfg.pass_k,
                                     cfg.max_new_tokens, cfg.seed)

    run_dir = Path(run_dir)
    optimizer = make_optimizer(cfg)
    state = TrainState(params=params, opt_state=optimizer.init(params),
                       step=jnp.asarray(0, jnp.int32))
    ckpt_dir = run_dir / "checkpoints"
    start = 0
    if ckpt_dir.is_dir():
        ckpt = Checkpointer(ckpt_dir)
        start = ckpt.latest_step() or 0
        if start:
            check_same_config(run_dir, cfg)
            p, o, ck_meta = ckpt.restore(state.params, state.opt_state)
            state = TrainState(params=p, opt_state=o,
                               step=jnp.asarray(ck_meta["updates"], jnp.int32))
        ckpt.close()
    if start == 0 and hasattr(task, "verify"):
        # No signal without a solved problem: check before minutes of RL, not after.
        k = cfg.group_size
        base = base_pass_at_k(graphdef, params, tokenizer, task,
                              task.prompts(64, seed=cfg.seed + 555), k, cfg.max_new_tokens,
                              jax.random.key(cfg.seed + 555))
        echo(f"base model: pass@{k} = {base:.0%} on 64 training prompts")
        if base == 0:
            raise ValueError(
                f"the model in GRPOConfig.init={cfg.init!r} solves none of 64 training "
                f"problems in {k} tries (pass@{k} = 0): every group would be all wrong, every "
                "advantage 0, and GRPO would learn nothing. Pretrain it longer, or raise "
                "group_size or max_new_tokens")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(to_dict(cfg), indent=2))
    ckpt = Checkpointer(ckpt_dir)

    base_figures_path = run_dir / "base.json"
    if evaluate is not None and not base_figures_path.exists():
        # Host copies, like the parameters evaluated during training: one compilation.
        ref = load_model(cfg.init)
        atomic_write_text(base_figures_path,
                          json.dumps(evaluate(ref[0], jax.device_get(ref[1])), indent=2))
    base_figures = json.loads(base_figures_path.read_text()) if evaluate is not None else {}

    state = replicate(state, mesh)
    ref_dev = replicate(ref_params, mesh)
    reward_dev = None if reward_params is None else replicate(reward_params, mesh)
    unroll = microbatches_at_once(mesh.shape[DATA])
    iteration = jax.jit(make_iteration(cfg, graphdef, graphdef, reward, optimizer, unroll),
                        donate_argnums=(0,))
    writer = MetricsWriter(run_dir / "metrics.jsonl", resume_from_step=start if start else None)
    key = jax.random.key(cfg.seed)
    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    bar = progress(cfg.iterations, "grpo", initial=start)
    latest, warned, flat = None, False, []
    for it in range(start, end):
        prompts = task.prompts(cfg.prompts_per_iteration, seed=cfg.seed * 1_000_003 + it + 1)
        prompt, prompt_mask = tokenizer.encode_batch(prompts, bos=True, padding="left",
                                                     length=P)
        batch = shard_batch((prompt, prompt_mask), mesh)
        state, metrics, _, _, _ = iteration(state, ref_dev, reward_dev, *batch,
                                            jax.random.fold_in(key, it))
        done = it + 1
        record = {k: float(v) for k, v in metrics.items()}  # waits for the iteration
        if reward.errors:
            raise ValueError(f"the reward {reward.name!r} failed in iteration {done} (nothing "
                             f"of it was saved): {reward.errors[0]}")
        if evaluate is not None and (done % cfg.eval_every == 0 or done == cfg.iterations):
            latest = evaluate(graphdef, jax.device_get(state.params))
            record.update({f"eval_{k}": v for k, v in latest.items()
                           if isinstance(v, (int, float))})
        writer.write(done, **record)
        bar.update(1)
        bar.set_postfix(reward=f"{record['reward']:.2f}", flat=f"{record['flat_groups']:.2f}",
                        kl=f"{record['kl']:.2f}")
        flat = (flat + [record["flat_groups"]])[-10:]
        if len(flat) == 10 and np.mean(flat) > cfg.flat_warning and not warned:
            warned = True
            echo(f"grpo iterations {done - 9}-{done}: {np.mean(flat):.0%} of the groups "
                 "scored all alike (advantage 0, no gradient). The problems may be too easy "
                 "or too hard for the model: consider a larger group_size, other prompts, or "
                 "dynamic_sampling=True to keep them out of the loss.")
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            ckpt.save(done, state.params, state.opt_state,
                      {**meta, "stage": "grpo", "config": to_dict(cfg), "iteration": done,
                       "updates": int(state.step)})
    bar.close()
    ckpt.close()
    params = jax.device_get(state.params)
    if end < cfg.iterations:
        return graphdef, params, {}
    if evaluate is not None and latest is None:  # a finished run read back
        latest = evaluate(graphdef, params)
    summary = {"base": base_figures, "grpo": latest or {}, "reward": reward.name}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    plot_grpo(read_metrics(run_dir / "metrics.jsonl"), run_dir / "grpo.png", base_figures)
    return graphdef, params, summary


def _setup(cfg: GRPOConfig, task, reward_fn):
    """The policy and reference (both from cfg.init), the reward and the task."""
    from minirlhf.envs import make_task

    if not (Path(cfg.init) / "checkpoints").is_dir():
        raise FileNotFoundError(f"GRPOConfig.init={cfg.init!r} is not a run folder with "
                                "checkpoints")
    graphdef, params, tokenizer, meta = load_model(cfg.init)
    if meta["model"].get("value_head") or meta["model"].get("scalar_head"):
        raise ValueError(f"GRPOConfig.init={cfg.init!r} holds a model with a value or score "
                         "head; GRPO starts from a plain language model")
    task = make_task(meta["task"]) if task is None else task
    if reward_fn is not None and cfg.reward:
        raise ValueError("give either a reward_fn or GRPOConfig.reward (a reward model), "
                         "not both")
    if cfg.reward:
        if not (Path(cfg.reward) / "checkpoints").is_dir():
            raise FileNotFoundError(f"GRPOConfig.reward={cfg.reward!r} is not a run folder "
                                    "with checkpoints")
        rm_graphdef, rm_params, rm_tokenizer, rm_meta = load_model(cfg.reward)
        if rm_meta.get("stage") != "reward" or "normalization" not in rm_meta:
            raise ValueError(f"GRPOConfig.reward={cfg.reward!r} does not hold a finished "
                             "reward model")
        if rm_tokenizer.to_json() != tokenizer.to_json():
            raise ValueError(f"the reward model in {cfg.reward!r} and the model in "
                             f"{cfg.init!r} use different tokenizers")
        P = 1 + task.max_prompt_chars
        if P + cfg.max_new_tokens > rm_meta["model"]["max_len"]:
            raise ValueError(f"GRPOConfig.max_new_tokens={cfg.max_new_tokens} plus the longest "
                             f"prompt ({P} tokens) exceeds the reward model's max_len="
                             f"{rm_meta['model']['max_len']}")
        reward, reward_params = model_reward(rm_graphdef, rm_meta["normalization"]), rm_params
    else:
        fn = reward_fn if reward_fn is not None else getattr(task, "reward", None)
        if fn is None:
            raise ValueError(f"task {meta['task']!r} has no rule-based reward: give a "
                             "reward_fn or GRPOConfig.reward (a reward model)")
        # A reward function that fails is found now, on the task's own prompts, not after
        # the first sampling has compiled.
        probe = task.prompts(4, seed=cfg.seed)
        check_rewards(fn(probe, ["" for _ in probe]), len(probe),
                      getattr(fn, "__qualname__", repr(fn)))
        reward, reward_params = rule_reward(fn, tokenizer), None
    _, ref_params, _, _ = load_model(cfg.init)
    return graphdef, params, tokenizer, meta, ref_params, reward, reward_params, task


# --- plots -------------------------------------------------------------------------------------


def plot_grpo(history: list[dict], path: str | Path, base: dict | None = None) -> None:
    """Five panels over iterations: held-out accuracy (or whatever the evaluator reports,
    the starting model's figures `base` at iteration 0), reward, response length, KL to the
    reference, and the share of flat groups."""
    rows = [r for r in history if "reward" in r]
    it = [r["step"] for r in rows]
    ev = [r for r in rows if any(k.startswith("eval_") for k in r)]
    fig = Figure(figsize=(16, 3.4))
    axes = fig.subplots(1, 5)
    keys = sorted({k for r in ev for k in r if k.startswith("eval_pass@")}) or \
        sorted({k for r in ev for k in r if k in ("eval_gold", "eval_score")})
    for k in keys:
        start = [(0, base[k[5:]])] if base and k[5:] in base else []
        steps, values = zip(*(start + [(r["step"], r[k]) for r in ev]))
        axes[0].plot(steps, values, "o-", label=k[5:])
    axes[0].set_title("held-out evaluation", fontsize=9)
    if keys:
        axes[0].legend(fontsize=8)
    for ax, key, title in ((axes[1], "reward", "reward (training groups)"),
                           (axes[2], "length", "response length (tokens)"),
                           (axes[3], "kl", "KL(pi || pi_ref), nats/response (k3)"),
                           (axes[4], "flat_groups", "share of flat groups (advantage 0)")):
        ax.plot(it, [r[key] for r in rows])
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xlabel("GRPO iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
