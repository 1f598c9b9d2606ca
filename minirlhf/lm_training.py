"""The language-model training loop that pretraining, SFT and the reward model share (layer 2).

One loop, one step, one data layout, so that each stage's module holds only what is its own:

* `LMTrainConfig`: what every language-model run needs (steps, batch, optimiser, devices,
  checkpoints, logging);
* `LMBatch` and `sample_batch`: token rows with explicit masks, drawn by a key;
* `make_train_step`: the next-token step, data-parallel, with gradient accumulation --
  pretraining's step, and SFT's with a response-only loss mask;
* `train_lm`: the loop, with atomic checkpoints, exact resume, metrics and a loss plot. The
  reward model passes its own Bradley-Terry step and validation; the loop stays the same.

    state, metrics = train_step(state, batch, key)    # pure, jitted, data-parallel
    params, history = train_lm(run_dir, cfg, graphdef, params, train, val, meta, "sft")
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from minirlhf.checkpoint import Checkpointer
from minirlhf.configs import check_positive_ints, check_same_config, to_dict
from minirlhf.distributions import masked_sum
from minirlhf.logging import (MetricsWriter, atomic_write_text, plot_curves, progress,
                              read_metrics)
from minirlhf.losses import next_token_nll
from minirlhf.model import forward
from minirlhf.optim import (OptimConfig, TrainState, accumulate_gradients, init_train_state,
                            make_optimizer, num_microbatches)
from minirlhf.parallel import (DATA, check_divisible, data_parallel, default_microbatch_tokens,
                               make_mesh, microbatches_at_once, replicate, shard_batch)


@dataclass(frozen=True)
class LMTrainConfig:
    """What every language-model training run (pretraining, SFT) needs."""

    seed: int = 0
    """Seed of every random choice in the run (initialisation, batches)."""
    steps: int = 300
    """Number of optimiser updates."""
    batch_size: int = 32
    """Sequences per update (the global batch, split over devices)."""
    eval_every: int = 100
    """Compute the validation loss every this many steps (and at the end)."""
    checkpoint_every: int = 200
    """Save a resumable checkpoint every this many steps (and at the end)."""
    log_every: int = 10
    """Write the training loss to metrics.jsonl every this many steps."""
    n_devices: int = 0
    """Devices to train on, data-parallel; 0 means all local devices."""
    microbatch_tokens: int = -1
    """Gradient accumulation: each device runs forward and backward over microbatches of at
    most this many tokens in turn and sums their gradients (the whole batch's gradient, up
    to float rounding). 0: the whole device batch at once. -1: 512 on CPU, where it makes
    steps faster (benchmarks/README.md), and 0 on GPU/TPU."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimiser."""

    def __post_init__(self):
        check_positive_ints(self, "steps", "batch_size", "eval_every", "checkpoint_every",
                            "log_every")
        name = type(self).__name__
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"{name}.seed must be an integer, got {self.seed!r}")
        if not isinstance(self.n_devices, int) or self.n_devices < 0:
            raise ValueError(f"{name}.n_devices must be an integer >= 0, "
                             f"got {self.n_devices!r}")
        if (not isinstance(self.microbatch_tokens, int) or isinstance(self.microbatch_tokens, bool)
                or self.microbatch_tokens < -1):
            raise ValueError(f"{name}.microbatch_tokens must be an integer >= -1 (-1: automatic, "
                             f"0: no accumulation), got {self.microbatch_tokens!r}")


# --- data --------------------------------------------------------------------------------


@struct.dataclass
class LMBatch:
    """A batch for next-token training.

    Attributes:
        tokens: (B, T) int32 ids, right-padded.
        mask: (B, T) bool, real tokens.
        loss_mask: (B, T) bool, tokens that are targets (all real tokens after BOS for
            pretraining; response tokens for SFT).
    """

    tokens: np.ndarray
    mask: np.ndarray
    loss_mask: np.ndarray


def sample_batch(data: LMBatch, key: jax.Array, batch_size: int) -> LMBatch:
    """batch_size rows drawn uniformly (with replacement) by `key`: a pure function of the
    key, so the batch of step s is the same in a resumed run as in an uninterrupted one."""
    n = jax.tree.leaves(data)[0].shape[0]
    idx = np.asarray(jax.random.randint(key, (batch_size,), 0, n))
    return jax.tree.map(lambda a: a[idx], data)


# --- the pure step -----------------------------------------------------------------------


def make_train_step(graphdef, optimizer: optax.GradientTransformation,
                    microbatch_tokens: int = -1, unroll: int | None = None):
    """The language-model train step, to be wrapped by `parallel.data_parallel`.

    Loss: L_LM averaged over the target tokens of the *global* batch. Each device sums its
    tokens' negative log-likelihoods and counts its targets; psums over the "data" axis
    turn these into the global mean, so N devices compute exactly what 1 device would.
    Each device does this over microbatches of at most `microbatch_tokens` tokens
    (`optim.accumulate_gradients`): the microbatches' sums, divided by the batch's count of
    targets, add up to the same loss and gradient. On several devices each microbatch's
    gradient is summed over them (the psum's transpose), one all-reduce per microbatch:
    cheap on one host's CPU devices, and accelerators default to a single microbatch. A CPU
    device with cores to spare runs two microbatches side by side (`unroll`).

    Args:
        graphdef: the model's graph (`init_model` / `nnx.split`).
        optimizer: the optax transformation (`optim.make_optimizer`).
        microbatch_tokens: the per-device microbatch budget (`LMTrainConfig.microbatch_tokens`);
            -1: `parallel.default_microbatch_tokens()`, 0: the whole device batch at once.
        unroll: microbatches each device runs side by side (`optim.accumulate_gradients`);
            None: `parallel.microbatches_at_once` for the mesh's devices. The same result
            either way, up to float rounding; only the speed differs.
    Returns:
        train_step(state, batch: LMBatch, key) -> (state, metrics), metrics holding the
        loss, the gradient norm, the number of target tokens and of microbatches.
    """
    if microbatch_tokens < 0:
        microbatch_tokens = default_microbatch_tokens()

    def train_step(state: TrainState, batch: LMBatch, key: jax.Array):
        del key  # no dropout: the step is a deterministic function of state and batch
        count = jax.lax.psum(jnp.sum(batch.loss_mask[:, 1:]), DATA)  # targets, all devices

        def loss_fn(params, micro: LMBatch):
            logits = forward(graphdef, params, micro.tokens, micro.mask).logits  # (b, T, V)
            nll = next_token_nll(logits, micro.tokens)  # (b, T-1)
            local = masked_sum(nll, micro.loss_mask[:, 1:])
            return jax.lax.psum(local, DATA) / jnp.maximum(count, 1), ()

        n = num_microbatches(*batch.tokens.shape, microbatch_tokens)
        at_once = microbatches_at_once(jax.lax.axis_size(DATA)) if unroll is None else unroll
        (loss, _), grads = accumulate_gradients(loss_fn, state.params, batch, n, at_once)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "tokens": count,
                   "microbatches": jnp.int32(n)}
        return TrainState(params=params, opt_state=opt_state, step=state.step + 1), metrics

    return train_step


def make_eval_fn(graphdef):
    """Jitted (sum of target NLLs, number of targets) of a batch."""

    @jax.jit
    def eval_fn(params, batch: LMBatch):
        logits = forward(graphdef, params, batch.tokens, batch.mask).logits
        targets = batch.loss_mask[:, 1:]
        return masked_sum(next_token_nll(logits, batch.tokens), targets), jnp.sum(targets)

    return eval_fn


def evaluate(eval_fn, params, data: LMBatch, batch_size: int = 256) -> float:
    """Mean target NLL over a whole dataset, in fixed-shape chunks (one compilation)."""
    n = data.tokens.shape[0]
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        chunk = jax.tree.map(lambda a: a[start:start + batch_size], data)
        short = batch_size - chunk.tokens.shape[0]
        if short:  # pad the last chunk with rows that have no targets
            chunk = jax.tree.map(lambda a: np.concatenate([a, np.zeros((short,) + a.shape[1:],
                                                                       a.dtype)]), chunk)
        s, c = eval_fn(params, chunk)
        total, count = total + float(s), count + int(c)
    return total / max(count, 1)


# --- the loop ----------------------------------------------------------------------------


def train_lm(run_dir: str | Path, cfg: LMTrainConfig, graphdef, init_params,
             train: LMBatch, val: LMBatch, meta: dict, name: str,
             stop_after: int | None = None, make_step=None, validate=None):
    """Train a language model on `train`, resuming from `run_dir` if it has a checkpoint.

    Writes into `run_dir`: checkpoints/ (orbax, atomic), metrics.jsonl, loss.png, config.json.
    The batch of step s and the step's key depend only on (cfg.seed, s), so a run resumed
    from a checkpoint ends with exactly the parameters of an uninterrupted run.

    Args:
        run_dir: the run folder.
        cfg: the training config (steps, batch, optimiser, ...).
        graphdef, init_params: the model to start from (ignored when resuming).
        train, val: LMBatch datasets.
        meta: JSON-ready metadata stored in every checkpoint (model config, tokenizer, ...).
        name: label of the progress bar.
        stop_after: stop after this many steps in total (to simulate an interruption).
        make_step: (graphdef, optimizer, microbatch_tokens) -> train_step; default
            `make_train_step`, the next-token step. The reward model passes its
            Bradley-Terry step: `train` may then be any pytree of arrays with a leading
            example axis.
        validate: params -> dict of validation metrics (must include "val_loss");
            default: the next-token loss on `val`.
    Returns:
        (params, history): the trained parameters and the list of metric records.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    mesh = make_mesh(cfg.n_devices or None)
    check_divisible(cfg.batch_size, mesh, f"{type(cfg).__name__}.batch_size")
    optimizer = make_optimizer(cfg.optim, cfg.steps)
    state = init_train_state(init_params, optimizer)

    ckpt = Checkpointer(run_dir / "checkpoints")
    start = ckpt.latest_step() or 0
    if start:
        check_same_config(run_dir, cfg)
        params, opt_state, _ = ckpt.restore(state.params, state.opt_state)
        state = TrainState(params=params, opt_state=opt_state, step=jnp.asarray(start, jnp.int32))
    # Place the state on the mesh up front: its sharding then matches the step's output and
    # the step compiles once, not twice.
    state = replicate(state, mesh)
    atomic_write_text(run_dir / "config.json", json.dumps(to_dict(cfg), indent=2))
    writer = MetricsWriter(run_dir / "metrics.jsonl", resume_from_step=start if start else None)

    step_fn = data_parallel((make_step or make_train_step)(graphdef, optimizer,
                                                          cfg.microbatch_tokens), mesh)
    if validate is None:
        eval_fn = make_eval_fn(graphdef)
        validate = lambda params: {"val_loss": evaluate(eval_fn, params, val)}
    data_key, step_key = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), 1))
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = progress(cfg.steps, name, initial=start)
    if start == 0:
        writer.write(0, **validate(state.params))
    for s in range(start, end):
        batch = sample_batch(train, jax.random.fold_in(data_key, s), cfg.batch_size)
        state, metrics = step_fn(state, shard_batch(batch, mesh), jax.random.fold_in(step_key, s))
        done = s + 1
        bar.update(1)
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss = float(metrics["loss"])
            bar.set_postfix(loss=f"{loss:.3f}")
            writer.write(done, **{k: float(v) for k, v in metrics.items() if k != "tokens"})
        if done % cfg.eval_every == 0 or done == cfg.steps:
            writer.write(done, **validate(state.params))
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            ckpt.save(done, state.params, state.opt_state, {**meta, "step": done})
    bar.close()
    ckpt.close()
    history = read_metrics(run_dir / "metrics.jsonl")
    plot_curves(history, ["loss", "val_loss"], run_dir / "loss.png", title=name)
    # Hand back the parameters on the default device, placed like a fresh model's, so that
    # sampling from them reuses the compilations made for `init_model` / `load_model`.
    return jax.device_put(state.params, jax.devices()[0]), history


def trim(data: LMBatch) -> LMBatch:
    """Drop padding columns that no row uses (shorter sequences, cheaper steps)."""
    T = int(data.mask.any(axis=0).nonzero()[0].max()) + 1
    return jax.tree.map(lambda a: a[:, :T], data)
