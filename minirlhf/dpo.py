"""Direct Preference Optimization: the policy trained on preference pairs directly (layer 2).

Rafailov et al. 2023. The KL-regularised RLHF objective of lecture 4 has the optimum
pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x); read backwards, every policy defines an
implicit reward r(x, y) = beta log pi(y|x) / pi_ref(y|x) + beta log Z(x), and the
Bradley-Terry loss of the reward model (lecture 3) on that reward trains the policy itself:
no reward model, no sampling, no critic. `losses.dpo_loss` is that loss (and IPO's); this
module feeds it:

    pairs (prompt, chosen, rejected)  ->  DPOBatch: tokens (N, 2, T), response masks
    pi_ref = the SFT model, frozen     ->  its sequence log-probs, computed once
    the step                           ->  log pi of both responses, dpo_loss, Adam
    the loop                           ->  lm_training.train_lm (checkpoints, exact resume,
                                           data parallel, microbatches)

Logged at every evaluation, on held-out pairs: the loss, the implicit reward's accuracy
(chosen above rejected) and margin, and the mean log-probabilities of the chosen and the
rejected responses. When both fall, the policy is moving probability away from *both*
responses of the data -- likelihood displacement (Razin et al. 2024), a known DPO failure;
the run says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from minirlhf.checkpoint import load_model, read_finished
from minirlhf.configs import check_positive_ints, to_dict
from minirlhf.lm_training import LMTrainConfig, train_lm
from minirlhf.logging import atomic_write_text, plot_curves, say
from minirlhf.losses import DPO_LOSSES, dpo_implicit_rewards, dpo_loss, next_token_nll
from minirlhf.model import forward
from minirlhf.optim import OptimConfig, TrainState, accumulate_gradients, num_microbatches
from minirlhf.parallel import DATA, default_microbatch_tokens, microbatches_at_once
from minirlhf.preference_data import Comparison, load_split, write_preferences
from minirlhf.reward_model import as_pairs
from minirlhf.tokenizer import CharTokenizer


@dataclass(frozen=True)
class DPOConfig(LMTrainConfig):
    """DPO from an SFT model on a file of comparisons."""

    init: str = "runs/sft"
    """Run folder of the SFT model: the policy starts from it and it is pi_ref."""
    preferences: str = "runs/preferences/comparisons.jsonl"
    """A JSONL file of comparisons (minirlhf.preference_data); rankings are expanded into
    their pairs."""
    n_val: int = 300
    """Held-out comparisons, taken from the end of the file (as the reward model does)."""
    beta: float = 0.3
    """The KL coefficient of the implicit reward beta log pi / pi_ref: small lets the policy
    move far from pi_ref. On the review task 0.1 (the paper's) spent twice PPO's KL for less
    gold, 0.3 stays below PPO's KL (`benchmarks/bench_dpo.py`)."""
    loss_type: str = "sigmoid"
    """"sigmoid" (DPO) or "ipo" (Azar et al. 2023)."""
    label_smoothing: float = 0.0
    """Conservative DPO: the labels are taken to be flipped with this probability."""
    steps: int = 100
    """Number of optimiser updates (1.6 epochs of the pipeline's 2000 pairs; longer bought
    gold at more KL than PPO spends for it, `benchmarks/bench_dpo.py`)."""
    batch_size: int = 32
    """Pairs per update."""
    eval_every: int = 50
    """Evaluate on the held-out pairs every this many steps (and at the end)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every this many steps (and at the end)."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, warmup_steps=20))
    """The optimiser."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "n_val")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) \
                or not self.beta > 0:
            raise ValueError(f"DPOConfig.beta must be a number > 0, got {self.beta!r}")
        if self.loss_type not in DPO_LOSSES:
            raise ValueError(f"DPOConfig.loss_type must be one of {DPO_LOSSES}, "
                             f"got {self.loss_type!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError("DPOConfig.label_smoothing must be in [0, 0.5), got "
                             f"{self.label_smoothing!r}")
        if self.loss_type == "ipo" and self.label_smoothing:
            raise ValueError(f"DPOConfig.label_smoothing={self.label_smoothing!r} does nothing "
                             "with loss_type='ipo' (IPO regresses the margin); set it to 0")
        object.__setattr__(self, "init", os.fspath(self.init))
        object.__setattr__(self, "preferences", os.fspath(self.preferences))


@struct.dataclass
class DPOBatch:
    """Preference pairs as token arrays, the chosen response first.

    Attributes:
        tokens: (N, 2, T) int32: BOS + prompt + response + EOS, right-padded.
        mask: (N, 2, T) bool, real tokens.
        response_mask: (N, 2, T) bool, the response's tokens and its EOS: the only tokens
            whose log-probabilities enter log pi(y|x).
        ref_logp: (N, 2) float32 log pi_ref(y|x), computed once before training.
    """

    tokens: np.ndarray
    mask: np.ndarray
    response_mask: np.ndarray
    ref_logp: np.ndarray


def encode_pairs(tokenizer: CharTokenizer, comparisons: list[Comparison],
                 length: int) -> DPOBatch:
    """Token arrays of comparisons (rankings expanded into pairs), ref_logp left at 0."""
    pairs = as_pairs(comparisons)
    texts = [c.prompt + t for c in pairs for t in c.ranking]
    longest = max(len(t) for t in texts) + 2  # BOS, EOS
    if longest > length:
        i = max(range(len(texts)), key=lambda j: len(texts[j])) // 2
        raise ValueError(f"pair {i} (prompt {pairs[i].prompt!r}) needs {longest} tokens, more "
                         f"than the model's max_len={length}")
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True, length=longest)
    starts = np.repeat([1 + len(c.prompt) for c in pairs], 2)  # the response's first token
    response = mask & (np.arange(longest)[None, :] >= starts[:, None])
    n = len(pairs)
    shape = (n, 2, longest)
    return DPOBatch(tokens.reshape(shape), mask.reshape(shape), response.reshape(shape),
                    np.zeros((n, 2), np.float32))


def sequence_logprobs(graphdef, params, tokens: jax.Array, mask: jax.Array,
                      response_mask: jax.Array) -> jax.Array:
    """log pi(y|x) of sequences (..., T) -> (...): the sum of the log-probabilities of the
    response's tokens, each given everything before it. The prompt's tokens are context
    only: their own log-probabilities never enter."""
    lead, T = tokens.shape[:-1], tokens.shape[-1]
    tokens, mask = tokens.reshape(-1, T), mask.reshape(-1, T)
    logits = forward(graphdef, params, tokens, mask).logits  # (B, T, V)
    nll = next_token_nll(logits, tokens)  # (B, T-1): position t predicts token t+1
    logp = -jnp.sum(jnp.where(response_mask.reshape(-1, T)[:, 1:], nll, 0.0), axis=-1)
    return logp.reshape(lead)


def _pair_metrics(logp: jax.Array, ref_logp: jax.Array, beta: float) -> dict:
    """Per-pair sums (over the batch) of the quantities logged: (n, 2) -> {name: scalar}."""
    r = dpo_implicit_rewards(logp, ref_logp, beta)  # (n, 2)
    gap = r[:, 0] - r[:, 1]
    return {"reward_accuracy": jnp.sum(gap > 0) + 0.5 * jnp.sum(gap == 0),
            "reward_margin": jnp.sum(gap), "chosen_logp": jnp.sum(logp[:, 0]),
            "rejected_logp": jnp.sum(logp[:, 1]), "chosen_reward": jnp.sum(r[:, 0]),
            "rejected_reward": jnp.sum(r[:, 1])}


def make_dpo_step(cfg: DPOConfig):
    """(graphdef, optimizer, microbatch_tokens) -> the DPO train step, for `train_lm`.

    Each device sums its pairs' losses and psums over "data" (N devices = 1 device), over
    microbatches of at most `microbatch_tokens` tokens (whole pairs), as the reward model's
    step does. The step's metrics are the loss, the gradient norm and `_pair_metrics`'
    means over the batch.
    """

    def make(graphdef, optimizer: optax.GradientTransformation, microbatch_tokens: int = -1):
        budget = default_microbatch_tokens() if microbatch_tokens < 0 else microbatch_tokens

        def train_step(state: TrainState, batch: DPOBatch, key: jax.Array):
            del key
            N, _, T = batch.tokens.shape
            count = jax.lax.psum(N, DATA)  # pairs, all devices

            def loss_fn(params, micro: DPOBatch):
                logp = sequence_logprobs(graphdef, params, micro.tokens, micro.mask,
                                         micro.response_mask)  # (n, 2)
                ref = micro.ref_logp
                local = dpo_loss(logp[:, 0], logp[:, 1], ref[:, 0], ref[:, 1], cfg.beta,
                                 cfg.loss_type, cfg.label_smoothing) * logp.shape[0]
                aux = _pair_metrics(logp, ref, cfg.beta)
                total = lambda x: jax.lax.psum(x, DATA) / count
                return total(local), jax.tree.map(total, aux)

            n = num_microbatches(N, 2 * T, budget)
            unroll = microbatches_at_once(jax.lax.axis_size(DATA))
            (loss, aux), grads = accumulate_gradients(loss_fn, state.params, batch, n, unroll)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads),
                       "microbatches": jnp.int32(n)}
            return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics

        return train_step

    return make


_logprobs_jit = jax.jit(sequence_logprobs, static_argnums=0)


def pair_logprobs(graphdef, params, data: DPOBatch, chunk: int = 128) -> np.ndarray:
    """(N, 2) log pi(y|x) of every pair, in fixed-size chunks (one compilation)."""
    n = data.tokens.shape[0]
    out = []
    for start in range(0, n, chunk):
        part = jax.tree.map(lambda a: a[start:start + chunk], data)
        short = chunk - part.tokens.shape[0]
        if short:  # pad with copies of the first pair, dropped below
            part = jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[:1], short, 0)]), part)
        logp = _logprobs_jit(graphdef, params, part.tokens, part.mask, part.response_mask)
        out.append(np.asarray(logp)[:chunk - short])
    return np.concatenate(out)


def evaluate_pairs(graphdef, params, data: DPOBatch, cfg: DPOConfig) -> dict:
    """Held-out loss, implicit-reward accuracy and margin, mean chosen/rejected log-probs."""
    logp = pair_logprobs(graphdef, params, data)
    ref = data.ref_logp
    loss = dpo_loss(logp[:, 0], logp[:, 1], ref[:, 0], ref[:, 1], cfg.beta, cfg.loss_type,
                    cfg.label_smoothing)
    n = logp.shape[0]
    m = {k: float(v) / n for k, v in _pair_metrics(jnp.asarray(logp), jnp.asarray(ref),
                                                     cfg.beta).items()}
    return {"val_loss": float(loss), **{f"val_{k}": v for k, v in m.items()}}


def likelihood_displacement(history: list[dict]) -> bool:
    """Whether the held-out chosen *and* rejected log-probs both ended below their start."""
    vals = [r for r in history if "val_chosen_logp" in r]
    if len(vals) < 2:
        return False
    first, last = vals[0], vals[-1]
    return (last["val_chosen_logp"] < first["val_chosen_logp"]
            and last["val_rejected_logp"] < first["val_rejected_logp"])


def plot_dpo(history: list[dict], path: str | Path) -> None:
    """Held-out log-probs of chosen and rejected responses, and the implicit reward's
    accuracy and margin, against the step."""
    from matplotlib.figure import Figure

    from minirlhf.logging import save_figure

    vals = [r for r in history if "val_chosen_logp" in r]
    steps = [r["step"] for r in vals]
    fig = Figure(figsize=(11, 3.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [r["val_chosen_logp"] for r in vals], "o-", label="chosen")
    ax1.plot(steps, [r["val_rejected_logp"] for r in vals], "s-", label="rejected")
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean log pi(y|x), held out")
    ax1.legend()
    ax1.set_title("both falling = likelihood displacement")
    ax2.plot(steps, [r["val_reward_accuracy"] for r in vals], "o-", label="accuracy")
    ax2.set_xlabel("step")
    ax2.set_ylabel("implicit-reward accuracy")
    ax3 = ax2.twinx()
    ax3.plot(steps, [r["val_reward_margin"] for r in vals], "s--", color="tab:red",
             label="margin")
    ax3.set_ylabel("margin beta log-ratio (chosen - rejected)")
    ax2.set_title("held-out pairs")
    fig.tight_layout()
    save_figure(fig, path)


def train_dpo(cfg: DPOConfig, run_dir: str | Path, stop_after: int | None = None):
    """Train a policy with DPO; write its run folder; return (graphdef, params, summary).

    The run folder gets preferences_train.jsonl / preferences_val.jsonl, checkpoints/,
    metrics.jsonl, loss.png, dpo.png and summary.json. Every problem with the inputs (no
    SFT run folder, a bad preference line, too few comparisons, a pair longer than the
    model) is raised before anything is written.
    """
    if not (Path(cfg.init) / "checkpoints").is_dir():
        raise FileNotFoundError(f"DPOConfig.init={cfg.init!r} is not a run folder with "
                                "checkpoints; run `minirlhf sft` first or point init at one")
    run_dir = Path(run_dir)
    if (finished := read_finished(run_dir, cfg)) is not None:  # read back, not redone
        return finished
    graphdef, ref_params, tokenizer, sft_meta = load_model(cfg.init)
    train_cmp, val_cmp = load_split(cfg.preferences, tokenizer, cfg.n_val, "DPOConfig.n_val")
    length = sft_meta["model"]["max_len"]
    train, val = (encode_pairs(tokenizer, c, length) for c in (train_cmp, val_cmp))
    # pi_ref is frozen: its log-probs are computed once, here, and travel with the batches.
    train, val = (dataclasses.replace(d, ref_logp=pair_logprobs(graphdef, ref_params, d))
                  for d in (train, val))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_preferences(run_dir / "preferences_train.jsonl", train_cmp)
    write_preferences(run_dir / "preferences_val.jsonl", val_cmp)
    meta = {**sft_meta, "stage": "dpo", "config": to_dict(cfg),
            "data": {"source": cfg.preferences}}
    params, history = train_lm(run_dir, cfg, graphdef, ref_params, train, None, meta, "DPO",
                               stop_after, make_step=make_dpo_step(cfg),
                               validate=lambda p: evaluate_pairs(graphdef, p, val, cfg))
    plot_curves(history, ["loss", "val_loss"], run_dir / "loss.png", title="DPO")
    plot_dpo(history, run_dir / "dpo.png")
    if stop_after is not None and stop_after < cfg.steps:
        return graphdef, params, {}
    final = [r for r in history if "val_loss" in r][-1]
    start = [r for r in history if "val_loss" in r][0]
    displaced = likelihood_displacement(history)
    if displaced:
        say(f"DPO: the held-out log-probs of the chosen responses fell "
            f"({start['val_chosen_logp']:.1f} -> {final['val_chosen_logp']:.1f} nats) as well "
            f"as the rejected ones' ({start['val_rejected_logp']:.1f} -> "
            f"{final['val_rejected_logp']:.1f}): likelihood displacement, see dpo.png")
    summary = {**{k: v for k, v in final.items() if k != "step"},
               "start": {k: v for k, v in start.items() if k != "step"},
               "likelihood_displacement": displaced, "n_train": len(train_cmp),
               "n_val": len(val_cmp), "pairs_train": int(train.tokens.shape[0])}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return graphdef, params, summary
