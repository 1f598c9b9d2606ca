"""Explicit training state, the optimiser (AdamW with warm-up + cosine decay and clipping),
and gradient accumulation over microbatches.

`TrainState` is a pytree, so a whole train step is a pure function
``train_step(state, batch, key) -> (state, metrics)`` that jit, shard_map and orbax can
handle. Updates use optax directly (no hidden optimiser object).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct


@dataclass(frozen=True)
class OptimConfig:
    """AdamW (Loshchilov & Hutter 2019) with a warm-up + cosine schedule and norm clipping."""

    lr: float = 3e-3
    """Peak learning rate, reached at the end of warm-up."""
    warmup_steps: int = 50
    """Steps of linear warm-up from 0 to lr (at most half the run)."""
    min_lr_ratio: float = 0.1
    """The cosine decays to lr * min_lr_ratio at the last step."""
    weight_decay: float = 0.01
    """Decoupled weight decay, applied to matrices only (not to biases or norm scales)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    b1: float = 0.9
    """Adam's first-moment decay."""
    b2: float = 0.99
    """Adam's second-moment decay."""

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"OptimConfig.lr must be > 0, got {self.lr!r}")
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"OptimConfig.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"OptimConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("OptimConfig.weight_decay and grad_clip must be >= 0, got "
                             f"{self.weight_decay!r} and {self.grad_clip!r}")
        for name in ("b1", "b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"OptimConfig.{name} must be in [0, 1), got {getattr(self, name)!r}")


@struct.dataclass
class TrainState:
    """Everything a training run carries from step to step.

    Attributes:
        params: the model's parameter pytree.
        opt_state: optax's state for those parameters.
        step: scalar int32, the number of updates taken.
    """

    params: object
    opt_state: object
    step: jax.Array


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW over a warm-up + cosine schedule of `total_steps`, after global-norm clipping."""
    # A run shorter than its warm-up still gets a decay phase: warm-up is capped at half.
    warmup = min(cfg.warmup_steps, total_steps // 2)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=cfg.lr * cfg.min_lr_ratio)
    # Decay matrices only: decaying LayerNorm scales or biases towards 0 only hurts.
    decay_mask = lambda params: jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay,
                             mask=decay_mask))
    return optax.chain(*parts)


def init_train_state(params, optimizer: optax.GradientTransformation) -> TrainState:
    """A TrainState at step 0: `params`, the optimiser's fresh state for them, step = 0."""
    return TrainState(params=params, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32))


# --- gradient accumulation ----------------------------------------------------------------
#
# A step can run its forward and backward passes over a few microbatches, one after the
# other in a lax.scan, and add up their gradients: the gradient of the whole batch (up to
# float rounding), with the activations of one microbatch alive at a time. On GPUs this is
# how a batch too large for memory is trained. On a CPU it is a speed-up: the working set
# of a 512-token microbatch stays in the caches, and XLA:CPU's scratch buffer for the step
# stays small enough for malloc to reuse it, where a whole-batch buffer (118 MB there) is
# mapped and zero-filled afresh by the kernel at every step (benchmarks/README.md, "Where the time
# goes": about 1.4x faster steps at bench_lm.py's config).


def num_microbatches(rows: int, tokens_per_row: int, max_tokens: int) -> int:
    """The fewest microbatches that split `rows` evenly with at most `max_tokens` each.

    Only divisors of `rows` split evenly, so a row count with few divisors can give much
    smaller microbatches than the budget (62 rows of 64 tokens, budget 512: 31 of 128);
    a single row longer than the budget is one microbatch on its own.

    Args:
        rows: examples in the (per-device) batch, >= 1.
        tokens_per_row: tokens in one example (T, or K*T for a ranking of K sequences), >= 1.
        max_tokens: the budget of one microbatch; 0 means one microbatch, the whole batch.
    Returns:
        n dividing `rows`, with (rows / n) * tokens_per_row <= max_tokens where possible,
        else `rows` (one example per microbatch).
    """
    if rows < 1 or tokens_per_row < 1:
        raise ValueError(f"num_microbatches needs rows >= 1 and tokens_per_row >= 1, got "
                         f"rows={rows}, tokens_per_row={tokens_per_row}")
    if max_tokens <= 0:
        return 1
    for n in range(1, rows + 1):
        if rows % n == 0 and (rows // n) * tokens_per_row <= max_tokens:
            return n
    return rows


def accumulate_gradients(loss_fn, params, batch, n: int, unroll: int = 1):
    """`jax.value_and_grad(loss_fn, has_aux=True)`, summed over n microbatches of `batch`.

        ((L, aux), g) = sum_m ((L_m, aux_m), dL_m/dparams),  m = 1..n

    The microbatches are consecutive slices of the leading axis, processed in a `lax.scan`
    (tests/test_optim.py checks it equal to a Python loop and to the whole batch at once).
    With `unroll` = k, each iteration of the scan holds k microbatches: their forward and
    backward passes do not depend on each other, so XLA may run them side by side (on
    CPU, on different cores: `parallel.microbatches_at_once`). The sums are added in the
    same order either way: the result is the same up to float rounding.

    For the sum to be the whole batch's value, `loss_fn` must return sums over the
    microbatch's examples, normalised by a constant of the whole batch (e.g. sum of NLLs /
    number of targets in the batch), never means over the microbatch. Inside `shard_map`,
    its loss and aux must be the same on every device (psum'd, as the train steps' are):
    the scan's running total starts as zeros, which are.

    Args:
        loss_fn: (params, microbatch) -> (loss, aux), aux a pytree of arrays.
        params: the parameter pytree.
        batch: a pytree of arrays whose leading axis (examples) is divisible by n.
        n: number of microbatches; 1 is a plain `value_and_grad` over the whole batch.
        unroll: microbatches per iteration of the scan (`lax.scan`'s unroll), >= 1.
    Returns:
        ((loss, aux), grads), as `jax.value_and_grad(loss_fn, has_aux=True)` returns them.
    """
    try:
        at_once = operator.index(unroll)  # an int or a NumPy integer, not 1.5
    except TypeError:
        at_once = 0
    if at_once < 1:
        raise ValueError(f"accumulate_gradients needs unroll >= 1 (microbatches per scan "
                         f"iteration), got {unroll!r}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if n == 1:
        return grad_fn(params, batch)
    leading = {a.shape[0] for a in jax.tree.leaves(batch)}
    if len(leading) != 1:
        raise ValueError(f"every array of the batch needs the same leading (example) axis, "
                         f"got sizes {sorted(leading)}")
    rows = leading.pop()
    if n < 1 or rows % n:
        raise ValueError(f"a batch of {rows} examples does not split into {n} microbatches")
    micro = jax.tree.map(lambda a: a.reshape(n, rows // n, *a.shape[1:]), batch)

    def add_one(total, microbatch):
        return jax.tree.map(jnp.add, total, grad_fn(params, microbatch)), None

    first = jax.tree.map(lambda a: a[0], micro)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(grad_fn, params, first))
    total, _ = jax.lax.scan(add_one, zeros, micro, unroll=at_once)
    return total
