"""The token MDP: KL-shaped rewards, rollouts against fresh forwards, per-token GAE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.generate import SamplingConfig, generate
from minirlhf.model import ModelConfig, forward, init_model
from minirlhf.rollout import (RolloutConfig, kl_shaped_rewards, response_outputs, rollout,
                              token_gae)

PROMPTS = ["the pizza was", "i thought the film was", "my car", "this song is"]
# The reference forwards, jitted once for the module: run eagerly, each new row length
# would recompile every op (20 s for one test).
_forward = jax.jit(forward, static_argnums=0)


def test_kl_shaped_rewards_by_hand():
    logp = jnp.array([[-1.0, -2.0, -0.5, 0.0], [-0.2, -0.4, -3.0, -1.0]])
    ref = jnp.array([[-1.5, -1.0, -0.5, -9.0], [-0.2, -1.4, -2.0, -2.0]])
    mask = jnp.array([[True, True, True, False], [True, True, True, True]])
    score = jnp.array([2.0, -1.0])
    rewards, kl = kl_shaped_rewards(logp, ref, score, mask, beta=0.1)
    # k1 = logp - ref: row 0: 0.5, -1, 0 (last entry is padding); row 1: 0, 1, -1, 1.
    np.testing.assert_allclose(kl, [[0.5, -1.0, 0.0, 0.0], [0.0, 1.0, -1.0, 1.0]])
    # r_t = -0.1 * k1_t, plus the score on the last real token (index 2 and 3).
    np.testing.assert_allclose(rewards, [[-0.05, 0.1, 2.0, 0.0],
                                         [0.0, -0.1, 0.1, -1.1]], atol=1e-6)
    # The shaped return is score - beta * (log-ratio of the whole response).
    np.testing.assert_allclose(rewards.sum(1), score - 0.1 * kl.sum(1), atol=1e-6)


def test_kl_shaped_rewards_with_other_estimators():
    logp = jnp.array([[-1.0, -2.0]])
    ref = jnp.array([[-1.5, -1.0]])
    mask = jnp.ones((1, 2), bool)
    _, k2 = kl_shaped_rewards(logp, ref, jnp.zeros(1), mask, 1.0, "k2")
    _, k3 = kl_shaped_rewards(logp, ref, jnp.zeros(1), mask, 1.0, "k3")
    # log r = ref - logp = -0.5, 1.0
    np.testing.assert_allclose(k2, [[0.125, 0.5]], rtol=1e-6)
    np.testing.assert_allclose(k3, [[np.exp(-0.5) - 1 + 0.5, np.e - 1 - 1.0]], rtol=1e-6)


def _toy_reward(tokens, mask):
    """A deterministic, jittable stand-in for a reward model: never 0."""
    return 1.0 + 0.01 * jnp.sum(jnp.where(mask, tokens, 0), axis=-1).astype(jnp.float32)


@pytest.fixture(scope="module")
def policy_and_ref(tokenizer):
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_len=48, d_model=32, n_heads=2,
                      n_layers=2, value_head=True)
    g, p = init_model(cfg, jax.random.key(1))
    # A value head that is not zero, so values are a real output.
    p["value"]["kernel"] = jax.random.normal(jax.random.key(2), p["value"]["kernel"].shape)
    rg, rp = init_model(ModelConfig(**{**cfg.__dict__, "value_head": False}),
                        jax.random.key(3))
    return g, p, rg, rp


@pytest.mark.parametrize("padding", ["left", "right"])
def test_rollout_logprobs_equal_fresh_unpadded_forwards(policy_and_ref, tokenizer, padding):
    g, p, rg, rp = policy_and_ref
    prompt, pmask = tokenizer.encode_batch(PROMPTS, bos=True, padding=padding)
    cfg = RolloutConfig(max_new_tokens=12, missing_eos_penalty=0.5)
    ro = rollout(g, p, rg, rp, _toy_reward, prompt, pmask, jax.random.key(5), cfg, 0.1)
    # The sampler's own log-probs (KV cache) match the rollout's full forward.
    gen = generate(g, p, prompt, pmask, jax.random.key(5), SamplingConfig(max_new_tokens=12))
    np.testing.assert_array_equal(ro.tokens, gen.tokens)
    np.testing.assert_allclose(ro.logprobs, gen.logprobs, atol=1e-5)
    # Against one row at a time, no padding anywhere: BOS + prompt + response.
    for b in range(len(PROMPTS)):
        ids = np.asarray(prompt[b])[np.asarray(pmask[b])]
        resp = np.asarray(ro.tokens[b])[np.asarray(ro.mask[b])]
        seq = jnp.asarray(np.concatenate([ids, resp]))[None]
        ones = jnp.ones(seq.shape, bool)
        for name, (gd, pr) in {"policy": (g, p), "ref": (rg, rp)}.items():
            out = _forward(gd, pr, seq, ones)
            logp = jax.nn.log_softmax(out.logits[0], -1)
            want = [float(logp[len(ids) - 1 + t, resp[t]]) for t in range(len(resp))]
            got = ro.logprobs if name == "policy" else ro.ref_logprobs
            np.testing.assert_allclose(np.asarray(got[b])[:len(resp)], want, atol=1e-5,
                                       err_msg=f"{name} row {b}")
            if name == "policy":
                np.testing.assert_allclose(np.asarray(ro.values[b])[:len(resp)],
                                           out.values[0, len(ids) - 1:len(ids) - 1 + len(resp)],
                                           atol=1e-5)
        assert float(ro.score[b]) == pytest.approx(float(_toy_reward(seq, ones)[0]), abs=1e-5)
    # Everything off the mask is zero.
    for x in (ro.logprobs, ro.ref_logprobs, ro.values, ro.kl, ro.rewards):
        assert float(jnp.abs(jnp.where(ro.mask, 0.0, x)).max()) == 0.0


@pytest.mark.parametrize("padding", ["left", "right"])
def test_with_beta_zero_only_the_last_real_token_is_rewarded(policy_and_ref, tokenizer,
                                                             padding):
    g, p, rg, rp = policy_and_ref
    prompt, pmask = tokenizer.encode_batch(PROMPTS * 4, bos=True, padding=padding)
    cfg = RolloutConfig(max_new_tokens=10, missing_eos_penalty=0.5)
    ro = rollout(g, p, rg, rp, _toy_reward, prompt, pmask, jax.random.key(0), cfg, 0.0)
    lengths = np.asarray(ro.mask.sum(1))
    # Both kinds of ending occur: EOS before the limit, and truncation at it.
    assert ro.truncated.any() and (~ro.truncated).any()
    assert (lengths[np.asarray(ro.truncated)] == 10).all()
    rewards = np.asarray(ro.rewards)
    for b, n in enumerate(lengths):
        expected = np.zeros(10)
        expected[n - 1] = float(ro.score[b]) - 0.5 * bool(ro.truncated[b])
        np.testing.assert_allclose(rewards[b], expected, atol=1e-6)


def test_a_policy_and_itself_have_zero_kl(policy_and_ref, tokenizer):
    g, p, _, _ = policy_and_ref
    prompt, pmask = tokenizer.encode_batch(PROMPTS, bos=True, padding="left")
    ro = rollout(g, p, g, p, _toy_reward, prompt, pmask, jax.random.key(0),
                 RolloutConfig(max_new_tokens=8), 1.0)
    np.testing.assert_allclose(ro.kl, 0.0, atol=1e-6)
    np.testing.assert_allclose(ro.logprobs, ro.ref_logprobs, atol=1e-6)


def test_response_outputs_do_not_depend_on_prompt_padding(policy_and_ref, tokenizer):
    g, p, _, _ = policy_and_ref
    left = tokenizer.encode_batch(PROMPTS, bos=True, padding="left")
    right = tokenizer.encode_batch(PROMPTS, bos=True, padding="right")
    tokens = jax.random.randint(jax.random.key(0), (len(PROMPTS), 6), 3, tokenizer.vocab_size)
    mask = jnp.arange(6)[None, :] < jnp.array([[6], [3], [1], [5]])
    a = response_outputs(g, p, *left, tokens, mask)
    b = response_outputs(g, p, *right, tokens, mask)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
    np.testing.assert_allclose(a.values, b.values, atol=1e-5)
    np.testing.assert_allclose(a.entropy, b.entropy, atol=1e-5)


def _gae_loop(rewards, values, mask, gamma, lam):
    """Per row, over its real tokens only, with V = 0 after the last one."""
    adv = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        running = 0.0
        for t in reversed(range(n)):
            next_v = values[b, t + 1] if t + 1 < n else 0.0
            delta = rewards[b, t] + gamma * next_v - values[b, t]
            running = delta + gamma * lam * running
            adv[b, t] = running
    return adv, np.where(mask, adv + values, 0.0)


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (1.0, 0.95), (0.9, 0.5)])
def test_token_gae_equals_a_loop_over_each_response(gamma, lam):
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(3, 5)).astype(np.float32)
    values = rng.normal(size=(3, 5)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], bool)
    rewards, values = np.where(mask, rewards, 0), np.where(mask, values, 7.0)  # junk in padding
    adv, ret = token_gae(jnp.asarray(rewards), jnp.asarray(values), jnp.asarray(mask),
                         gamma, lam)
    want_adv, want_ret = _gae_loop(rewards, np.where(mask, values, 0), mask, gamma, lam)
    np.testing.assert_allclose(adv, want_adv, atol=1e-5)
    np.testing.assert_allclose(ret, want_ret, atol=1e-5)


def test_token_gae_by_hand_monte_carlo():
    # gamma = lam = 1: A_t = (sum of rewards from t on) - V(s_t).
    rewards = jnp.array([[0.0, -0.1, 1.0]])
    values = jnp.array([[0.5, 0.2, 0.4]])
    adv, ret = token_gae(rewards, values, jnp.ones((1, 3), bool), 1.0, 1.0)
    np.testing.assert_allclose(adv, [[0.9 - 0.5, 0.9 - 0.2, 1.0 - 0.4]], atol=1e-6)
    np.testing.assert_allclose(ret, [[0.9, 0.9, 1.0]], atol=1e-6)


def test_rollout_config_rejects_bad_values():
    with pytest.raises(ValueError, match="kl_estimator"):
        RolloutConfig(kl_estimator="k4")
    with pytest.raises(ValueError, match="max_new_tokens"):
        RolloutConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="missing_eos_penalty"):
        RolloutConfig(missing_eos_penalty=-1.0)


def test_jitted_rollout_equals_eager(policy_and_ref, tokenizer):
    g, p, rg, rp = policy_and_ref
    prompt, pmask = tokenizer.encode_batch(PROMPTS, bos=True, padding="left")
    cfg = RolloutConfig(max_new_tokens=8, kl_estimator="k3")
    args = (prompt, pmask, jax.random.key(9), cfg, 0.3)
    eager = rollout(g, p, rg, rp, _toy_reward, *args)
    jitted = jax.jit(rollout, static_argnums=(0, 2, 4, 8))(g, p, rg, rp, _toy_reward, *args)
    np.testing.assert_array_equal(eager.tokens, jitted.tokens)
    for name in ("logprobs", "ref_logprobs", "values", "score", "kl", "rewards"):
        np.testing.assert_allclose(getattr(eager, name), getattr(jitted, name), atol=1e-5,
                                   err_msg=name)
