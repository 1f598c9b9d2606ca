import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.generate import (SamplingConfig, _generate_jit, decode_chunks, filter_logits,
                               generate, pick_token, sample_token, with_response)
from minirlhf.distributions import token_logprobs
from minirlhf.model import ModelConfig, extend_cache, forward, init_cache
from minirlhf.tokenizer import EOS_ID, PAD_ID

from tests.references import naive_generate, naive_generate_scan

PROMPTS = ["the pizza was", "i thought the film was", "my car"]


@pytest.mark.parametrize("padding", ["left", "right", None])
def test_kv_cache_equals_naive_reference_greedy(small_model, tokenizer, padding):
    g, p = small_model
    texts = PROMPTS if padding else PROMPTS[:1] * 3  # None: no padding at all
    prompt, mask = tokenizer.encode_batch(texts, padding=padding or "right")
    assert padding is None or not mask.all()
    cfg = SamplingConfig(max_new_tokens=16, temperature=0.0)
    fast = generate(g, p, prompt, mask, jax.random.key(0), cfg)
    slow = naive_generate(g, p, prompt, mask, jax.random.key(0), cfg)
    np.testing.assert_array_equal(fast.tokens, slow.tokens)
    np.testing.assert_array_equal(fast.mask, slow.mask)
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=1e-5)


@pytest.mark.parametrize("cfg", [SamplingConfig(max_new_tokens=12),
                                 SamplingConfig(max_new_tokens=12, temperature=0.7, top_k=5),
                                 SamplingConfig(max_new_tokens=12, top_p=0.9)])
def test_kv_cache_equals_naive_reference_sampling(small_model, tokenizer, cfg):
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="left")
    fast = generate(g, p, prompt, mask, jax.random.key(3), cfg)
    slow = naive_generate(g, p, prompt, mask, jax.random.key(3), cfg)
    np.testing.assert_array_equal(fast.tokens, slow.tokens)
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=1e-5)


@pytest.mark.parametrize("positions,tied", [("rope", True), ("learned", False)])
def test_kv_cache_equals_naive_reference_other_architectures(tokenizer, positions, tied):
    from minirlhf.model import ModelConfig, init_model

    cfg = ModelConfig(max_len=48, d_model=32, n_heads=2, n_layers=2, positions=positions,
                      tie_embeddings=tied)
    g, p = init_model(cfg, jax.random.key(11))
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="right")
    sc = SamplingConfig(max_new_tokens=10)
    fast = generate(g, p, prompt, mask, jax.random.key(4), sc)
    slow = naive_generate(g, p, prompt, mask, jax.random.key(4), sc)
    np.testing.assert_array_equal(fast.tokens, slow.tokens)
    np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=1e-5)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_kv_cache_equals_the_jitted_fixed_buffer_naive_reference(small_model, tokenizer,
                                                                 padding):
    """The benchmark's second baseline (one scan, a full forward over a fixed buffer) samples
    exactly what `generate` samples: the future slots it carries are masked, never seen."""
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding=padding)
    naive_scan = jax.jit(naive_generate_scan, static_argnames=("graphdef", "cfg"))
    for cfg in (SamplingConfig(max_new_tokens=12, temperature=0.0),
                SamplingConfig(max_new_tokens=12, top_p=0.9)):
        fast = generate(g, p, prompt, mask, jax.random.key(5), cfg)
        slow = naive_scan(g, p, jnp.asarray(prompt), jnp.asarray(mask), jax.random.key(5), cfg)
        np.testing.assert_array_equal(fast.tokens, slow.tokens)
        np.testing.assert_array_equal(fast.mask, slow.mask)
        np.testing.assert_array_equal(fast.finished, slow.finished)
        np.testing.assert_allclose(fast.logprobs, slow.logprobs, atol=1e-5)


def test_generate_runs_inside_an_outer_jit(small_model, tokenizer):
    """As the RLHF rollout calls it: inside another jit (a plain one, whose compile options
    apply), with several decoding chunks, the same tokens as a top-level call."""
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="left")
    cfg = SamplingConfig(max_new_tokens=32, temperature=0.0)
    assert len(decode_chunks(32)) == 2
    inner = jax.jit(lambda p, t, m: generate(g, p, t, m, jax.random.key(0), cfg).tokens)
    np.testing.assert_array_equal(inner(p, prompt, mask),
                                  generate(g, p, prompt, mask, jax.random.key(0), cfg).tokens)


def test_logprobs_equal_a_fresh_forward_on_the_sampled_sequence(small_model, tokenizer):
    g, p = small_model
    prompt, pmask = tokenizer.encode_batch(PROMPTS, padding="right")
    gen = generate(g, p, prompt, pmask, jax.random.key(1), SamplingConfig(max_new_tokens=10))
    tokens, mask = with_response(jnp.asarray(prompt), jnp.asarray(pmask), gen)
    logits = forward(g, p, tokens, mask).logits
    P = prompt.shape[1]
    # the logits that chose response token i sit at the last real position before it
    idx = jnp.stack([jnp.max(jnp.where(mask[:, :P + i], jnp.arange(P + i), -1), axis=1)
                     for i in range(10)], 1)  # (B, N)
    chosen = jnp.take_along_axis(logits, idx[..., None], axis=1)  # (B, N, V)
    fresh = jnp.where(gen.mask, token_logprobs(chosen, gen.tokens), 0.0)
    np.testing.assert_allclose(gen.logprobs, fresh, atol=1e-5)


def test_top_k_keeps_exactly_the_k_most_likely():
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    kept = np.isfinite(filter_logits(logits, SamplingConfig(top_k=2)))
    np.testing.assert_array_equal(kept, [[False, True, False, True, False]])
    kept = np.isfinite(filter_logits(logits, SamplingConfig(top_k=4)))
    np.testing.assert_array_equal(kept, [[False, True, True, True, True]])


@pytest.mark.parametrize("top_p,support", [
    (0.3, [0, 1, 0, 0, 0]),  # 0.4 alone reaches 0.3
    (0.69, [0, 1, 0, 1, 0]),  # 0.4 + 0.3 = 0.7 reaches 0.69
    (0.71, [0, 1, 0, 1, 1]),  # needs 0.15 more
    (0.9, [0, 1, 1, 1, 1]),  # 0.4 + 0.3 + 0.15 + 0.1 = 0.95 >= 0.9
    (1.0, [1, 1, 1, 1, 1]),
])
def test_top_p_keeps_the_smallest_nucleus(top_p, support):
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    kept = np.isfinite(filter_logits(logits, SamplingConfig(top_p=top_p)))
    np.testing.assert_array_equal(kept, np.array([support], bool))


def test_filtered_samples_stay_in_the_support():
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]])).repeat(2000, 0)
    draws = sample_token(jax.random.key(0), logits, SamplingConfig(top_k=2))
    assert set(np.unique(draws)) == {1, 3}
    freq = np.mean(draws == 1)  # renormalised: 0.4 / 0.7
    assert abs(freq - 4 / 7) < 0.04


def test_inverse_cdf_pick_by_hand():
    """CDF of [0.1, 0, 0.6, 0.3] is [0.1, 0.1, 0.7, 1.0]: token j is picked when
    CDF(j-1) < 1 - u <= CDF(j); the zero-probability token 1 never is, even at the edges."""
    probs = jnp.array([[0.1, 0.0, 0.6, 0.3]])
    logits = jnp.log(probs)
    cfg = SamplingConfig()
    for u, token in [(0.0, 3), (0.25, 3), (0.31, 2), (0.85, 2), (0.89, 2), (0.91, 0), (0.95, 0),
                     (0.999999, 0)]:
        assert int(pick_token(jnp.array([u]), logits, cfg)[0]) == token, u
    # top_k=1 keeps token 2 only, whatever u is
    for u in (0.0, 0.5, 0.999999):
        assert int(pick_token(jnp.array([u]), logits, SamplingConfig(top_k=1))[0]) == 2


def test_inverse_cdf_frequencies_match_the_softmax():
    logits = jnp.array([[1.0, -0.5, 0.3, 2.0, -3.0]])
    u = jax.random.uniform(jax.random.key(1), (40_000,))
    draws = np.asarray(pick_token(u, jnp.repeat(logits, u.shape[0], 0), SamplingConfig()))
    freq = np.bincount(draws, minlength=5) / draws.size
    np.testing.assert_allclose(freq, jax.nn.softmax(logits[0]), atol=0.01)


def test_decode_chunks_by_hand():
    """Short generations run as one scan; longer ones in at most 4 near-equal chunks of at
    least 16 steps that tile 0..N."""
    assert decode_chunks(1) == [(0, 1)]
    assert decode_chunks(31) == [(0, 31)]
    assert decode_chunks(32) == [(0, 16), (16, 32)]
    assert decode_chunks(48) == [(0, 16), (16, 32), (32, 48)]
    assert decode_chunks(100) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    for n in range(1, 300):
        chunks = decode_chunks(n)
        assert chunks[0][0] == 0 and chunks[-1][1] == n and len(chunks) <= 4
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert len(chunks) == 1 or min(b - a for a, b in chunks) >= 16
    with pytest.raises(ValueError, match="n_steps must be positive, got 0"):
        decode_chunks(0)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_chunked_decoding_equals_one_scan_and_the_naive_reference(small_model, tokenizer,
                                                                  padding):
    """Decoding in chunks (a cache that grows chunk by chunk) samples exactly what one scan
    over a cache of all P + N slots samples, and what the cache-free reference samples:
    the slots a chunk leaves out are the empty ones that attention masks anyway."""
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS * 2, padding=padding)
    prompt, mask = jnp.asarray(prompt), jnp.asarray(mask)
    # The cache-free reference jitted once (the Python-loop one would compile 32 shapes).
    naive_scan = jax.jit(naive_generate_scan, static_argnames=("graphdef", "cfg"))
    key = jax.random.key(9)
    for cfg in (SamplingConfig(max_new_tokens=32, temperature=0.0),
                SamplingConfig(max_new_tokens=32, top_p=0.95)):
        assert len(decode_chunks(32)) == 2  # what `generate` runs
        fast = generate(g, p, prompt, mask, key, cfg)
        others = [_generate_jit(g, p, prompt, mask, key, cfg, EOS_ID, PAD_ID, chunks)
                  for chunks in (((0, 32),), ((0, 1), (1, 14), (14, 32)))]
        for other in others + [naive_scan(g, p, prompt, mask, key, cfg)]:
            np.testing.assert_array_equal(fast.tokens, other.tokens)
            np.testing.assert_array_equal(fast.mask, other.mask)
            np.testing.assert_array_equal(fast.finished, other.finished)
            np.testing.assert_allclose(fast.logprobs, other.logprobs, atol=1e-5)
        assert 0 < fast.mask.sum() and not fast.finished.all()  # long rows reach late chunks
    bad = ((0, 10), (12, 32))
    with pytest.raises(ValueError, match=r"decoding chunks \(\(0, 10\), \(12, 32\)\) must split"):
        _generate_jit(g, p, prompt, mask, key, cfg, EOS_ID, PAD_ID, bad)


def test_extend_cache_adds_empty_slots():
    cfg = ModelConfig(n_layers=2, d_model=16, n_heads=2)
    cache = init_cache(cfg, batch=3, slots=4)
    cache = cache.replace(k=tuple(a + 1.0 for a in cache.k),
                          valid=cache.valid.at[:, :2].set(True))
    longer = extend_cache(cache, 5)
    assert len(longer.k) == 2 and longer.k[0].shape == (3, 2, 9, 8)  # (B, H, S, Dh)
    np.testing.assert_array_equal(longer.k[1][:, :, :4], cache.k[1])
    assert not np.asarray(longer.k[1][:, :, 4:]).any()
    np.testing.assert_array_equal(longer.valid[:, :4], cache.valid)
    assert not np.asarray(longer.valid[:, 4:]).any()


def test_temperature_to_zero_equals_greedy(small_model, tokenizer):
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="left")
    greedy = generate(g, p, prompt, mask, jax.random.key(0), SamplingConfig(24, temperature=0.0))
    cold = generate(g, p, prompt, mask, jax.random.key(5), SamplingConfig(24, temperature=1e-4))
    np.testing.assert_array_equal(greedy.tokens, cold.tokens)


def test_same_key_same_sample_other_key_other_sample(small_model, tokenizer):
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="left")
    cfg = SamplingConfig(max_new_tokens=24)
    a = generate(g, p, prompt, mask, jax.random.key(7), cfg)
    b = generate(g, p, prompt, mask, jax.random.key(7), cfg)
    c = generate(g, p, prompt, mask, jax.random.key(8), cfg)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


def test_stops_at_eos_per_sequence(small_model, tokenizer):
    """Each row stops at its own EOS: mask up to and including it, PAD and no mass after."""
    g, p = small_model
    prompt, mask = tokenizer.encode_batch(PROMPTS * 22, padding="left")  # 66 rows
    gen = generate(g, p, prompt, mask, jax.random.key(0), SamplingConfig(24))
    tokens, m = np.asarray(gen.tokens), np.asarray(gen.mask)
    stopped = 0
    for row in range(tokens.shape[0]):
        hits = np.nonzero(tokens[row] == EOS_ID)[0]
        if hits.size:
            e, stopped = hits[0], stopped + 1
            assert m[row, :e + 1].all() and not m[row, e + 1:].any()
            assert (tokens[row, e + 1:] == PAD_ID).all() and gen.finished[row]
        else:
            assert m[row].all() and not gen.finished[row]
    assert 0 < stopped < tokens.shape[0]  # both kinds of rows occurred
    np.testing.assert_array_equal(np.asarray(gen.logprobs)[~m], 0.0)


def test_eos_masks_the_rest_of_the_row(small_model, tokenizer):
    """A hand-made policy that always says EOS after one step: the mask is [1, 0, 0, ...]."""
    g, p = small_model
    # Zero every weight and set the LM bias through the embedding: all logits equal except
    # EOS, whose embedding row aligns with LayerNorm's output bias.
    q = jax.tree.map(jnp.zeros_like, p)
    q["ln_f"]["bias"].set_value(jnp.ones_like(q["ln_f"]["bias"][...]))
    q["embed"]["embedding"].set_value(q["embed"]["embedding"][...].at[EOS_ID].set(1.0))
    prompt, mask = tokenizer.encode_batch(PROMPTS, padding="right")
    gen = generate(g, q, prompt, mask, jax.random.key(0), SamplingConfig(6, temperature=0.0))
    np.testing.assert_array_equal(gen.tokens[:, 0], EOS_ID)
    np.testing.assert_array_equal(gen.mask, [[1, 0, 0, 0, 0, 0]] * 3)
    np.testing.assert_array_equal(gen.tokens[:, 1:], PAD_ID)
    assert gen.finished.all()


def test_bad_sampling_inputs_are_named(small_model, tokenizer):
    g, p = small_model
    with pytest.raises(ValueError, match="top_p must be in"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        SamplingConfig(temperature=-1.0)
    prompt, mask = tokenizer.encode_batch(PROMPTS)
    with pytest.raises(ValueError, match="exceeds ModelConfig.max_len=64"):
        generate(g, p, prompt, mask, jax.random.key(0), SamplingConfig(max_new_tokens=60))
    with pytest.raises(ValueError, match="at least one real token"):
        generate(g, p, prompt, np.zeros_like(mask), jax.random.key(0), SamplingConfig(4))
