"""The language model as a token MDP: prompts in, scored and KL-shaped experience out.

The decks' view of RLHF (deck "Large Language Models and RL from Human Feedback", slide
"How to model as an MDP?"): the prompt is the initial state s_0, each action a_t is the next
token, the transition appends it (deterministic), and the episode ends at EOS or at the
length limit. The only outside reward is the reward model's score r_phi(x, y) of the
finished response; the KL penalty to the frozen reference (SFT) model pi_0 is spread over
the tokens (slide "Reward shaping"; Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022, eq. 2):

    r_t = -beta * (log pi(a_t|s_t) - log pi_0(a_t|s_t))     for every response token t
    r_T += r_phi(x, y)                                      at the last response token T

Summed over the response this is r_phi(x, y) - beta * log(pi(y|x) / pi_0(y|x)), whose
expectation is the InstructGPT objective r_phi - beta KL(pi || pi_0). Without the penalty the
policy drifts to text the reward model was never trained on and over-rates (slide
"Controlling Divergence": over-optimisation, reward hacking).

A response cut off at `max_new_tokens` without EOS is flagged `truncated`; its score can be
lowered by a fixed penalty (lm-human-preferences and TRL do so): the reward model never saw
unfinished responses, and a policy can otherwise learn to ramble to the limit.

    ro = rollout(policy, params, ref, ref_params, reward_fn, prompt, prompt_mask, key, cfg, beta)
    adv, ret = token_gae(ro.rewards, ro.values, ro.mask, gamma, lam)

Notation: B prompts, P prompt length, N response tokens (max_new_tokens), V vocabulary.
Arrays are batch-major (B, N) here; `token_gae` transposes to the time-major layout of
`advantages.gae`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import chex
import jax
import jax.numpy as jnp
from flax import nnx, struct

from minirlhf.advantages import gae
from minirlhf.distributions import KL_ESTIMATORS, entropy, kl_estimate, token_logprobs
from minirlhf.generate import SamplingConfig, generate, with_response
from minirlhf.model import forward, last_real_index


@dataclass(frozen=True)
class RolloutConfig:
    """How responses are sampled and rewarded."""

    max_new_tokens: int = 64
    """N: the longest response; a response that reaches it without EOS is truncated."""
    missing_eos_penalty: float = 1.0
    """Subtracted from the reward model's score of a truncated response (0: no penalty)."""
    kl_estimator: str = "k1"
    """Per-token KL estimate in the shaped reward: "k1" (log-ratio; its sum over a response
    is the sequence's log-ratio, the usual choice), "k2" or "k3" (see distributions.py)."""

    def __post_init__(self):
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens <= 0:
            raise ValueError("RolloutConfig.max_new_tokens must be a positive integer, got "
                             f"{self.max_new_tokens!r}")
        if self.missing_eos_penalty < 0:
            raise ValueError("RolloutConfig.missing_eos_penalty must be >= 0, got "
                             f"{self.missing_eos_penalty!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"RolloutConfig.kl_estimator must be one of {KL_ESTIMATORS}, got "
                             f"{self.kl_estimator!r}")


@struct.dataclass
class LMRollout:
    """A batch of episodes of the token MDP.

    Attributes:
        prompt: (B, P) int32 prompt ids (left- or right-padded). prompt_mask: (B, P) bool.
        tokens: (B, N) int32 response ids; PAD after EOS.
        mask: (B, N) bool, True on response tokens up to and including EOS.
        logprobs: (B, N) log pi(a_t|s_t) under the policy that sampled (0 off the mask).
        ref_logprobs: (B, N) log pi_0(a_t|s_t) under the frozen reference (0 off the mask).
        values: (B, N) V(s_t), the value head before action a_t (0 off the mask, and
            everywhere for a policy without a value head).
        score: (B,) the reward model's score r_phi(x, y) (before any truncation penalty).
        truncated: (B,) bool, the response hit max_new_tokens without EOS.
        kl: (B, N) the per-token KL estimate (0 off the mask).
        rewards: (B, N) r_t, the KL-shaped reward, truncation penalty included (0 off
            the mask).
    """

    prompt: jax.Array
    prompt_mask: jax.Array
    tokens: jax.Array
    mask: jax.Array
    logprobs: jax.Array
    ref_logprobs: jax.Array
    values: jax.Array
    score: jax.Array
    truncated: jax.Array
    kl: jax.Array
    rewards: jax.Array


@struct.dataclass
class ResponseOutputs:
    """A model's outputs at the states where each response token was chosen, all (B, N)."""

    logprobs: jax.Array
    entropy: jax.Array
    values: jax.Array | None


def response_outputs(graphdef: nnx.GraphDef, params: nnx.State, prompt: jax.Array,
                     prompt_mask: jax.Array, tokens: jax.Array,
                     mask: jax.Array) -> ResponseOutputs:
    """One full forward over prompt + response, read at the states s_t that chose a_t.

    The logits that chose response token t sit one position before it: at the last real
    prompt token for t = 0 (wherever the padding put it), at response token t - 1 after.
    Reading them there gives the same log-probs as the sampler computed incrementally with
    its KV cache, for left- and right-padded prompts.

    Args:
        graphdef, params: a transformer (with a value head for `values`).
        prompt, prompt_mask: (B, P). tokens, mask: (B, N) the response.
    Returns:
        ResponseOutputs with logprobs, entropy and values (None without a value head), each
        (B, N) and 0 off the mask.
    """
    chex.assert_equal_shape([prompt, prompt_mask])
    chex.assert_equal_shape([tokens, mask])
    B, P = prompt.shape
    seq, seq_mask = jnp.concatenate([prompt, tokens], 1), jnp.concatenate([prompt_mask, mask], 1)
    out = forward(graphdef, params, seq, seq_mask)
    # (B, N) index of the state before each response token.
    first = last_real_index(prompt_mask)[:, None]  # (B, 1)
    later = P + jnp.arange(tokens.shape[1] - 1)[None, :]  # (1, N-1)
    before = jnp.concatenate([first, jnp.broadcast_to(later, (B, later.shape[1]))], 1)
    take = lambda x: jnp.take_along_axis(x, before.reshape(B, -1, *([1] * (x.ndim - 2))), 1)
    logits = take(out.logits)  # (B, N, V)
    zero = lambda x: jnp.where(mask, x, 0.0)
    values = None if out.values is None else zero(take(out.values))
    return ResponseOutputs(logprobs=zero(token_logprobs(logits, tokens)),
                           entropy=zero(entropy(logits)), values=values)


def kl_shaped_rewards(logprobs: jax.Array, ref_logprobs: jax.Array, score: jax.Array,
                      mask: jax.Array, beta: jax.Array | float,
                      kl_estimator: str = "k1") -> tuple[jax.Array, jax.Array]:
    """r_t = -beta * kl_t on every response token, plus the score at the last one.

    kl_t is the per-token estimate of KL(pi || pi_0) from the sampled token (k1: the
    log-ratio log pi(a_t|s_t) - log pi_0(a_t|s_t)). The score lands on the last token where
    `mask` is True, so right-padding after EOS never moves it. The code's r_t is the reward
    of taking a_t in s_t (the decks' r(s, a); Sutton & Barto write R_{t+1} for it).

    Args:
        logprobs, ref_logprobs: (B, N) log-probs of the sampled tokens under pi and pi_0.
        score: (B,) the reward model's score (penalties included).
        mask: (B, N) bool response mask; every row needs at least one True.
        beta: the KL coefficient (a float or a traced scalar: the adaptive controller's).
        kl_estimator: "k1", "k2" or "k3".
    Returns:
        (rewards, kl): each (B, N), 0 off the mask.
    """
    chex.assert_equal_shape([logprobs, ref_logprobs, mask])
    chex.assert_shape(score, (logprobs.shape[0],))
    # BEGIN SOLUTION
    kl = jnp.where(mask, kl_estimate(logprobs, ref_logprobs, kl_estimator), 0.0)
    last = last_real_index(mask)  # (B,)
    at_end = jnp.arange(mask.shape[1])[None, :] == last[:, None]  # (B, N)
    rewards = -beta * kl + jnp.where(at_end & mask, score[:, None], 0.0)
    return rewards, kl
    # END SOLUTION


def rollout(graphdef: nnx.GraphDef, params: nnx.State, ref_graphdef: nnx.GraphDef,
            ref_params: nnx.State, reward_fn: Callable[[jax.Array, jax.Array], jax.Array],
            prompt: jax.Array, prompt_mask: jax.Array, key: jax.Array, cfg: RolloutConfig,
            beta: jax.Array | float) -> LMRollout:
    """Sample one response per prompt from the policy and turn it into PPO's experience.

    The policy samples at temperature 1 with no top-k/top-p filtering: PPO's ratio
    pi/pi_old is only right if the data comes from pi_old itself. The log-probs and values
    come from one full forward after sampling (the same computation the update
    differentiates, so the first ratio is exactly 1); the reference's from another.

    Args:
        graphdef, params: the policy, a transformer (with a value head for PPO).
        ref_graphdef, ref_params: the frozen reference pi_0 (the SFT model).
        reward_fn: (tokens (B, T), mask (B, T)) -> (B,) scores of BOS + prompt + response.
        prompt, prompt_mask: (B, P); every row needs a real token (BOS).
        key: PRNG key of the sampling.
        cfg: RolloutConfig (static).
        beta: KL coefficient.
    Returns:
        LMRollout.
    """
    gen = generate(graphdef, params, prompt, prompt_mask, key,
                   SamplingConfig(max_new_tokens=cfg.max_new_tokens))
    pol = response_outputs(graphdef, params, prompt, prompt_mask, gen.tokens, gen.mask)
    # A policy without a value head (the SFT model, evaluated as a baseline) gets zeros.
    values = jnp.zeros_like(pol.logprobs) if pol.values is None else pol.values
    ref = response_outputs(ref_graphdef, ref_params, prompt, prompt_mask, gen.tokens, gen.mask)
    truncated = ~gen.finished
    score = reward_fn(*with_response(prompt, prompt_mask, gen))  # (B,)
    penalised = score - cfg.missing_eos_penalty * truncated.astype(score.dtype)
    rewards, kl = kl_shaped_rewards(pol.logprobs, ref.logprobs, penalised, gen.mask, beta,
                                    cfg.kl_estimator)
    return LMRollout(prompt=prompt, prompt_mask=prompt_mask, tokens=gen.tokens, mask=gen.mask,
                     logprobs=pol.logprobs, ref_logprobs=ref.logprobs, values=values,
                     score=score, truncated=truncated, kl=kl, rewards=rewards)


def token_gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, gamma: float,
              lam: float) -> tuple[jax.Array, jax.Array]:
    """GAE over each response, with the episode ending at its last real token.

    next_value of token t is V(s_{t+1}), the value at token t + 1, and 0 after the last
    token: the episode is over there -- EOS or not, the reward model has given its score and
    nothing follows (so a truncated response is *terminated* here, unlike a gym time limit,
    where the world goes on). Padding after the end is cut off by `done` and masked.

    Args:
        rewards, values: (B, N). mask: (B, N) bool response mask.
        gamma, lam: discount and GAE lambda (RLHF uses gamma = 1).
    Returns:
        (advantages, returns), each (B, N), 0 off the mask.
    """
    chex.assert_equal_shape([rewards, values, mask])
    # BEGIN SOLUTION
    values = jnp.where(mask, values, 0.0)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], 1)
    end = jnp.arange(mask.shape[1])[None, :] == last_real_index(mask)[:, None]
    end = end | ~mask  # padding steps are cut off too
    adv, ret = gae(rewards.T, values.T, next_values.T, end.T, end.T, gamma, lam)
    return jnp.where(mask, adv.T, 0.0), jnp.where(mask, ret.T, 0.0)
    # END SOLUTION
