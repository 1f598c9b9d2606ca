"""KV-cached autoregressive sampling in jitted `jax.lax.scan`s: greedy, temperature, top-k, top-p.

The deck's picture of generation (deck "Large Language Models and RL from Human Feedback",
slide "Preliminaries: Language Models"): the model turns the tokens so far into "the logits
vector", we pick a token from it, append it, and repeat. Picking the highest-probability
token is greedy decoding; the other strategies reshape the distribution first:

* temperature tau: sample from softmax(logits / tau); tau -> 0 is greedy, tau > 1 flattens;
* top-k (Fan et al. 2018): keep the k most likely tokens;
* top-p / nucleus (Holtzman et al. 2020): keep the smallest set of most likely tokens whose
  probability mass reaches p.

Recomputing the whole prefix for every new token costs O(T^2) token-passes; a KV cache
keeps each layer's keys and values so a step only processes the one new token. The loop
runs as a few `lax.scan`s in one `jax.jit` (`decode_chunks`): the cache grows before each,
so a step's attention reads the slots up to the end of its chunk, not all P + N.

Notation: B batch, P prompt length, N new tokens, V vocabulary, S cache slots (P + N at
the end).
"""

from __future__ import annotations

from dataclasses import dataclass

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from minirlhf.distributions import token_logprobs
from minirlhf.model import (KVCache, extend_cache, forward_cached, init_cache,
                            last_real_index, positions_from_mask)
from minirlhf.parallel import CPU_DECODE_OPTIONS, jit_with_cpu_options
from minirlhf.tokenizer import EOS_ID, PAD_ID


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick each next token."""

    max_new_tokens: int = 64
    """N: stop after this many tokens if no EOS came (the response is then truncated)."""
    temperature: float = 1.0
    """tau: divide logits by tau before sampling; 0 means greedy (argmax)."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 keeps all."""
    top_p: float = 1.0
    """Keep the smallest set of most likely tokens with total probability >= top_p; 1 keeps all."""

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0:
            raise ValueError(
                f"SamplingConfig.max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"SamplingConfig.temperature must be >= 0, got {self.temperature!r}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"SamplingConfig.top_k must be an integer >= 0, got {self.top_k!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"SamplingConfig.top_p must be in (0, 1], got {self.top_p!r}")


@struct.dataclass
class Generation:
    """Sampled responses.

    Attributes:
        tokens: (B, N) response token ids; PAD after a row's EOS.
        logprobs: (B, N) log pi(a_t | s_t) of each sampled token under the model itself
            (temperature 1, no filtering) -- the quantity PPO's ratio and the KL penalty
            need; 0 where mask is False.
        mask: (B, N) bool, True on response tokens up to and including EOS.
        finished: (B,) bool, True if the row emitted EOS (False: cut at max_new_tokens).
    """

    tokens: jax.Array
    logprobs: jax.Array
    mask: jax.Array
    finished: jax.Array


def filter_logits(logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """Temperature-scale, then drop tokens outside the top-k / top-p support (set to -inf).

    Ties at the cut-off are kept, so the support can exceed k when logits are equal.

    Args:
        logits: (B, V).
    Returns:
        (B, V) logits / tau, -inf outside the support. With tau = 0 the logits are returned
        unscaled (greedy takes their argmax).
    """
    x = logits.astype(jnp.float32)
    if cfg.temperature > 0:
        x = x / cfg.temperature
    if cfg.top_k > 0 and cfg.top_k < x.shape[-1]:
        kth = jax.lax.top_k(x, cfg.top_k)[0][..., -1:]  # (B, 1) the k-th largest logit
        x = jnp.where(x >= kth, x, -jnp.inf)
    if cfg.top_p < 1.0:
        # BEGIN SOLUTION
        sorted_x = jnp.sort(x, axis=-1)[..., ::-1]  # (B, V) descending
        probs = jax.nn.softmax(sorted_x, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly likelier tokens
        keep = mass_before < cfg.top_p  # always keeps the most likely token
        cutoff = jnp.min(jnp.where(keep, sorted_x, jnp.inf), axis=-1, keepdims=True)
        x = jnp.where(x >= cutoff, x, -jnp.inf)
        # END SOLUTION
    return x


def pick_token(u: jax.Array, logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """Pick one token per row with a given uniform draw: argmax if temperature == 0, else
    sample the filtered softmax by inverting its CDF at u.

    Inverse-CDF sampling: token j is chosen when CDF(j-1) < (1 - u) * CDF(V-1) <= CDF(j),
    which happens with probability p_j; a token outside the top-k / top-p support has
    p_j = 0 and is never chosen. One uniform per row (rather than V Gumbel draws, as
    `jax.random.categorical` uses) lets `generate` draw all of them before its loop.

    Args:
        u: (B,) uniforms in [0, 1). logits: (B, V).
    Returns:
        (B,) int32 token ids.
    """
    if cfg.temperature == 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    probs = jax.nn.softmax(filter_logits(logits, cfg), axis=-1)  # (B, V), 0 off the support
    cdf = jnp.cumsum(probs, axis=-1)
    target = (1.0 - u)[:, None] * cdf[:, -1:]  # in (0, total]: never picks a p_j = 0 token
    token = jnp.sum(cdf < target, axis=-1)
    return jnp.minimum(token, logits.shape[-1] - 1).astype(jnp.int32)


def sample_token(key: jax.Array, logits: jax.Array, cfg: SamplingConfig) -> jax.Array:
    """Pick one token per row: argmax if temperature == 0, else sample the filtered softmax.

    Args:
        key: PRNG key. logits: (B, V).
    Returns:
        (B,) int32 token ids.
    """
    return pick_token(jax.random.uniform(key, logits.shape[:1]), logits, cfg)


def sampling_uniforms(key: jax.Array, steps: int, batch: int) -> jax.Array:
    """The uniforms generation consumes: row i is step i's draw for each sequence. (N, B)."""
    return jax.random.uniform(key, (steps, batch))


@struct.dataclass
class DecodeCarry:
    """The loop state of generation: the cache, the logits for the next token, and so on."""

    cache: KVCache
    logits: jax.Array  # (B, V) logits of the next token
    position: jax.Array  # (B,) position the next token will take
    done: jax.Array  # (B,) the row has emitted EOS


@struct.dataclass
class DecodeStep:
    """What one step emits (stacked over the scan into (N, B) arrays)."""

    token: jax.Array
    logprob: jax.Array
    mask: jax.Array


# Decoding runs in chunks, each a `lax.scan` whose cache holds only the slots written so far
# plus the chunk's own: a step's attention reads every slot of the cache, so on CPU (where
# that read is most of attention's cost) a cache that grows chunk by chunk saves the reads
# of slots that are still empty. Each chunk is compiled apart, so chunks are kept long.
MIN_DECODE_CHUNK = 16
"""Fewest decoding steps in a chunk: generations shorter than 2 x this run as one scan."""
MAX_DECODE_CHUNKS = 4
"""Most chunks a generation is split into (each one more scan body to compile)."""


def decode_chunks(n_steps: int) -> list[tuple[int, int]]:
    """The (start, stop) steps of each decoding chunk: at most MAX_DECODE_CHUNKS chunks of at
    least MIN_DECODE_CHUNK steps (one chunk when n_steps is small), as equal as can be.

    E.g. 48 -> [(0, 16), (16, 32), (32, 48)]; 20 -> [(0, 20)]; 100 -> four chunks of 25.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    n = max(1, min(MAX_DECODE_CHUNKS, n_steps // MIN_DECODE_CHUNK))
    bounds = [round(c * n_steps / n) for c in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _generate(graphdef, params, prompt, prompt_mask, key, cfg: SamplingConfig,
              eos_id: int, pad_id: int, chunks: tuple[tuple[int, int], ...]) -> Generation:
    B, P = prompt.shape
    N = cfg.max_new_tokens
    model_cfg = nnx.merge(graphdef, params).cfg
    if P + N > model_cfg.max_len:
        raise ValueError(
            f"prompt length {P} + max_new_tokens {N} = {P + N} exceeds ModelConfig.max_len="
            f"{model_cfg.max_len}")
    starts, stops = [a for a, _ in chunks], [b for _, b in chunks]
    if not chunks or starts != [0, *stops[:-1]] or stops[-1] != N or \
            any(b <= a for a, b in chunks):
        raise ValueError(f"decoding chunks {chunks} must split the steps 0..{N} into "
                         f"consecutive non-empty (start, stop) ranges")

    # Prefill: run the whole prompt once, filling a cache of P slots. Each decoding chunk
    # below then adds the slots it writes (the prompt's attention need not scan N slots
    # that are still empty, nor a step's attention those of later chunks).
    positions = positions_from_mask(prompt_mask)  # (B, P)
    out = forward_cached(graphdef, params, prompt, prompt_mask, positions,
                         init_cache(model_cfg, B, P), 0)
    last = last_real_index(prompt_mask)  # (B,) works for left and right padding
    carry = DecodeCarry(
        cache=out.cache,
        logits=out.logits[jnp.arange(B), last],  # (B, V)
        position=jnp.sum(prompt_mask, axis=-1).astype(jnp.int32),
        done=jnp.zeros((B,), bool),
    )
    # Every random number the loop needs, drawn at once: one uniform per row and step
    # (N x B numbers, whatever V is). A draw inside the loop would run the PRNG's own small
    # loop at every step, a large share of a decoding step's time on CPU.
    uniforms = sampling_uniforms(key, N, B)

    def step(carry: DecodeCarry, xs):
        i, u = xs
        token = pick_token(u, carry.logits, cfg)  # (B,)
        live = ~carry.done
        token = jnp.where(live, token, pad_id)
        logprob = jnp.where(live, token_logprobs(carry.logits, token), 0.0)
        # Write the new token into slot P + i and get the logits that follow it.
        out = forward_cached(graphdef, params, token[:, None], live[:, None],
                             carry.position[:, None], carry.cache, P + i)
        new = DecodeCarry(cache=out.cache, logits=out.logits[:, 0],
                          position=carry.position + live.astype(jnp.int32),
                          done=carry.done | (token == eos_id))
        return new, DecodeStep(token=token, logprob=logprob, mask=live)

    per_chunk = []
    for start, stop in chunks:
        # Slots P + start .. P + stop - 1 are the ones this chunk writes.
        carry = carry.replace(cache=extend_cache(carry.cache, stop - start))
        carry, steps = jax.lax.scan(step, carry, (jnp.arange(start, stop), uniforms[start:stop]))
        per_chunk.append(steps)
    steps = jax.tree.map(lambda *parts: jnp.concatenate(parts), *per_chunk)  # (N, B) each
    return Generation(tokens=steps.token.T, logprobs=steps.logprob.T, mask=steps.mask.T,
                      finished=carry.done)


_generate_jit = jit_with_cpu_options(_generate, CPU_DECODE_OPTIONS,
                                     static_argnames=("graphdef", "cfg", "eos_id", "pad_id",
                                                      "chunks"))


def generate(graphdef: nnx.GraphDef, params: nnx.State, prompt: jax.Array,
             prompt_mask: jax.Array, key: jax.Array, cfg: SamplingConfig,
             eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Generation:
    """Sample responses to a batch of prompts with a KV cache, in one jit: a prefill of the
    prompt, then the decoding steps as up to 4 chunked scans (`decode_chunks`).

    Each row stops at its own EOS: later tokens are PAD with mask False. The same key gives
    the same samples.

    Data parallel: with prompt and prompt_mask split over a mesh's devices
    (`parallel.shard_batch`) and the parameters replicated (`parallel.replicate`), XLA runs
    each device's rows on that device, and the result comes back split the same way. The
    samples are those of one device (rows never interact, and the uniforms do not depend
    on the sharding; tests/test_parallel.py checks this on 4 devices). On a CPU split into
    one device per core (`jax.config.update("jax_num_cpu_devices", n)` before any JAX
    operation, or JAX_NUM_CPU_DEVICES=n), this is what puts decoding on more than one core:
    a decoding step's matmuls have only B rows, and on the CPUs measured one XLA device ran
    them on one core (benchmarks/README.md, "Decoding on both cores").

    Args:
        graphdef, params: the policy (`nnx.split` of a Transformer).
        prompt: (B, P) int ids, left- or right-padded.
        prompt_mask: (B, P) bool, True on real prompt tokens; every row needs at least one.
        key: PRNG key.
        cfg: SamplingConfig (static: changing it recompiles).
    Returns:
        Generation with tokens, logprobs, mask of shape (B, N) and finished (B,).
    """
    chex.assert_rank(prompt, 2)
    chex.assert_equal_shape([prompt, prompt_mask])
    # Checked only on concrete values: under an outer jit (a rollout) the mask is a tracer.
    if not isinstance(prompt_mask, jax.core.Tracer) and \
            not np.asarray(prompt_mask, bool).any(axis=-1).all():
        raise ValueError("every prompt needs at least one real token (e.g. BOS); a row of "
                         "prompt_mask is all False")
    return _generate_jit(graphdef, params, jnp.asarray(prompt, jnp.int32),
                         jnp.asarray(prompt_mask, bool), key,
                         cfg, eos_id, pad_id, tuple(decode_chunks(cfg.max_new_tokens)))


def with_response(prompt: jax.Array, prompt_mask: jax.Array,
                  gen: Generation) -> tuple[jax.Array, jax.Array]:
    """Prompt and response as one sequence for scoring: ((B, P+N) tokens, (B, P+N) mask).

    PAD inside the sequence (a right-padded prompt) is masked, and positions come from the
    mask, so a full `forward` on it reproduces the logits seen during generation.
    """
    tokens = jnp.concatenate([prompt, gen.tokens], axis=1)
    mask = jnp.concatenate([prompt_mask, gen.mask], axis=1)
    return tokens, mask
