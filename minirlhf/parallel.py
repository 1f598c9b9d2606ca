"""The one place that knows about devices: a 1-D mesh named "data" and a data-parallel wrapper.

Data parallelism: every device holds the same parameters and a slice of the batch. We wrap a
whole train step in `jax.shard_map` (the successor of `pmap`): the batch is split along its
first axis, parameters and keys are replicated, and the loss is normalised with `psum`s over
the "data" axis so that it is exactly the loss of the whole batch.

Why psum on the loss and not on the gradient: inside shard_map, the gradient of a loss with
respect to a replicated parameter is already summed over devices (the transpose of the
implicit broadcast of the parameters is a psum). A loss written as
psum(local sum) / psum(local count) therefore gets exactly the single-device gradient; a
further pmean/psum on the gradient would multiply it by the number of devices.
tests/test_parallel.py checks that 4 devices give the parameters 1 device gives.

On one device the mesh has one entry and the same code runs. On CPU, fake several devices
with XLA_FLAGS=--xla_force_host_platform_device_count=4 set before jax is imported.
Multi-host runs would call `jax.distributed.initialize()` first and use the same mesh.
"""

from __future__ import annotations

import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = "data"


def make_mesh(n_devices: int | None = None) -> Mesh:
    """A 1-D mesh named "data" over the first `n_devices` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if n_devices is None else n_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"n_devices={n_devices} but only {len(devices)} device(s) are available")
    return Mesh(np.array(devices[:n]), (DATA,))


def check_divisible(batch_size: int, mesh: Mesh | int, what: str = "batch_size") -> None:
    """Raise unless the batch splits evenly over the mesh's devices (or over `mesh` devices)."""
    n = mesh if isinstance(mesh, int) else mesh.shape[DATA]
    if batch_size % n:
        raise ValueError(f"{what}={batch_size} must be divisible by the number of devices ({n})")


def data_parallel(step: Callable, mesh: Mesh) -> Callable:
    """Jit `step(state, batch, key) -> (state, metrics)` data-parallel over `mesh`.

    `batch` is a pytree whose leaves have the batch as their first axis; it is split over
    the devices. `state` and `key` are replicated, and so are the outputs: `step` must make
    its results device-independent (psum / pmean over `DATA`), which the training losses do.
    On a mesh of CPU devices the step is compiled with `CPU_OPTIONS`; call the result at
    the top level (a jit with compiler options does not nest inside another jit).
    """
    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(DATA), P()),
                            out_specs=(P(), P()))
    on_cpu = all(d.platform == "cpu" for d in mesh.devices.flat)
    key = tuple(sorted(CPU_OPTIONS.items()))
    options = CPU_OPTIONS if on_cpu and _options_supported(key) else None
    return jax.jit(sharded, donate_argnums=(0,), compiler_options=options)


def shard_batch(batch, mesh: Mesh):
    """Place a host batch on the devices, split along the first axis."""
    return jax.device_put(batch, NamedSharding(mesh, P(DATA)))


def replicate(tree, mesh: Mesh):
    """A copy of a pytree on every device of the mesh.

    Always a copy: the train step donates its state, and must never consume the caller's
    own arrays (e.g. a pretrained model the caller still holds).
    """
    # An explicit copy: device_put(..., may_alias=False) still reuses the caller's buffer for
    # one of the replicas when the mesh has several devices (jax 0.10, seen in our tests).
    tree = jax.tree.map(lambda x: jnp.array(x, copy=True), tree)
    return jax.device_put(tree, NamedSharding(mesh, P()))


def default_microbatch_tokens() -> int:
    """Tokens per gradient-accumulation microbatch when a config asks for the default (-1).

    512 on CPU, where a microbatch's activations stay in cache and XLA's scratch buffer
    stays small enough to be reused rather than mapped afresh at each step (a training
    step of benchmarks/bench_lm.py's config, 64 x 64 tokens, measured about 1.4x faster
    in 8 microbatches); 0 (the whole device batch at once) on GPU and TPU, where one
    large batch keeps the accelerator busy.
    """
    return 512 if jax.default_backend() == "cpu" else 0


def usable_cores() -> int:
    """The CPU cores this process may run on (taskset, a container's cpuset), not the
    machine's."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows lack it
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def microbatches_at_once(devices: int) -> int:
    """Microbatches each device's gradient accumulation runs side by side (its scan unroll).

    2 on CPU when each of the `devices` busy devices has two cores or more to itself, else
    1. One microbatch's forward and backward are a chain of ops mostly too small for
    XLA:CPU to share between cores; two independent microbatches in one scan iteration
    give its executor work for both (the same result, up to float rounding). Measured on
    one device of a 2-core machine (benchmarks/README.md, "Where the time goes", item 5):
    steps of bench_lm.py's config 8-14% faster, of other small configs up to 16%; the
    pipeline's pretraining config about as fast; larger models (4 layers, D = 256) from
    6% slower to 7% faster. No gain pinned to one core, nor on one device per core;
    unrolling by 4 was slower than by 2. On GPU / TPU, 1: they run one microbatch by
    default (`default_microbatch_tokens`).
    """
    if jax.default_backend() != "cpu":
        return 1
    return 2 if usable_cores() >= 2 * devices else 1


# XLA:CPU in jax 0.10 hands chains of matmuls and elementwise ops to YNNPACK fusions. For a
# decoding step, whose matmuls have only B rows, XLA's own kernels are faster: 48 tokens for
# 64 prompts take 42 ms instead of 51 (benchmarks/bench_lm.py, 2 cores). A forward pass
# gains too (53 -> 32 ms at B=64, T=64), and so does a training step in 512-token
# microbatches (bench_lm.py's config: 157-162 ms instead of 170-177, medians of 15 rounds).
CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}

# Decoding also turns off XLA's tree-reduction rewrite, which splits every reduction into a
# reduce-window and a reduce (pairwise summation, for the accuracy of long sums). A decoding
# step's reductions are short (LayerNorm over D, softmaxes over S slots and V tokens) and
# many, and XLA:CPU runs a max through a reduce-window about 4x slower than a plain reduce:
# 48 tokens for 64 prompts measured about 10% faster without it (benchmarks/bench_lm.py's
# config, 2 cores). Training keeps the rewrite: its sums run over whole batches.
CPU_DECODE_OPTIONS = {**CPU_OPTIONS, "xla_disable_hlo_passes": "tree_reduction_rewriter"}


@functools.cache
def _options_supported(options: tuple) -> bool:
    """Whether this XLA accepts these compiler options (XLA-internal names may vanish)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(0.0).compile()
    except Exception:  # an unknown option name or value: compile without them
        return False
    return True


def jit_with_cpu_options(fn: Callable, cpu_options: dict, **jit_kwargs) -> Callable:
    """`jax.jit(fn, **jit_kwargs)`, compiled with XLA `cpu_options` when running on CPU.

    The options only change how XLA compiles `fn`, never what it computes. They are used
    when the default backend is the CPU and this XLA knows them; on GPU / TPU, or inside an
    outer jit (whose own options apply), `fn` is compiled as `jax.jit` would.
    """
    plain = jax.jit(fn, **jit_kwargs)
    tuned = jax.jit(fn, compiler_options=cpu_options, **jit_kwargs)
    key = tuple(sorted(cpu_options.items()))

    @functools.wraps(fn)
    def call(*args, **kwargs):
        traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
        if not traced and jax.default_backend() == "cpu" and _options_supported(key):
            return tuned(*args, **kwargs)
        return plain(*args, **kwargs)  # inside an outer jit, only a plain jit may nest

    return call


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Keep compiled XLA programs on disk so a repeated run skips compilation.

    JAX's persistent compilation cache: the second run of the same program with the same
    shapes loads the executable instead of compiling it (seconds saved on every CLI run).
    The folder is `path`, else $MINIRLHF_CACHE_DIR, else ~/.cache/minirlhf/jax;
    MINIRLHF_CACHE_DIR="" turns it off. Returns the folder used, or None.
    """
    import os

    if path is None:
        path = os.environ.get("MINIRLHF_CACHE_DIR",
                              os.path.join(os.path.expanduser("~"), ".cache", "minirlhf", "jax"))
    if not path:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Cache everything: the programs here compile in seconds, below JAX's default threshold.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
