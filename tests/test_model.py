import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minirlhf.model import (ModelConfig, forward, init_model, last_real_index,
                            positions_from_mask)


def _batch(key, B=3, T=12, V=45):
    tokens = jax.random.randint(key, (B, T), 3, V)
    return tokens, jnp.ones((B, T), bool)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_causality_future_tokens_never_change_past_logits(positions):
    cfg = ModelConfig(max_len=32, d_model=32, n_heads=4, n_layers=2, positions=positions)
    g, p = init_model(cfg, jax.random.key(1))
    tokens, mask = _batch(jax.random.key(2))
    t = 7
    changed = tokens.at[:, t:].set((tokens[:, t:] + 5) % 45)
    a = forward(g, p, tokens, mask).logits
    b = forward(g, p, changed, mask).logits
    np.testing.assert_allclose(a[:, :t], b[:, :t], atol=1e-5)
    assert not np.allclose(a[:, t:], b[:, t:], atol=1e-3)  # the change is visible later


@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize("padding", ["left", "right", "middle"])
def test_padded_equals_unpadded(positions, padding):
    cfg = ModelConfig(max_len=32, d_model=32, n_heads=2, n_layers=2, positions=positions,
                      value_head=True, scalar_head=True)
    g, p = init_model(cfg, jax.random.key(3))
    seq = jax.random.randint(jax.random.key(4), (1, 6), 3, 45)
    ref = forward(g, p, seq, jnp.ones((1, 6), bool))
    pad = jnp.zeros((1, 4), jnp.int32)
    if padding == "left":
        tokens, real = jnp.concatenate([pad, seq], 1), np.r_[[False] * 4, [True] * 6]
    elif padding == "right":
        tokens, real = jnp.concatenate([seq, pad], 1), np.r_[[True] * 6, [False] * 4]
    else:  # PAD inside the sequence, as when a right-padded prompt is followed by a response
        tokens = jnp.concatenate([seq[:, :3], pad, seq[:, 3:]], 1)
        real = np.r_[[True] * 3, [False] * 4, [True] * 3]
    out = forward(g, p, tokens, jnp.asarray(real)[None])
    np.testing.assert_allclose(out.logits[0, real], ref.logits[0], atol=1e-5)
    np.testing.assert_allclose(out.values[0, real], ref.values[0], atol=1e-5)
    np.testing.assert_allclose(out.scalar, ref.scalar, atol=1e-5)


def test_positions_and_last_real_index_by_hand():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(positions_from_mask(mask),
                                  [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 0, 0, 1, 2]])
    np.testing.assert_array_equal(last_real_index(mask), [4, 2, 4])


def test_heads_shapes_and_scalar_read_at_last_real_token():
    cfg = ModelConfig(max_len=16, d_model=16, n_heads=2, n_layers=1, value_head=True,
                      scalar_head=True, tie_embeddings=False)
    g, p = init_model(cfg, jax.random.key(0))
    # A non-zero score head, so the check below is not 0 == 0.
    p["score"]["kernel"].set_value(jax.random.normal(jax.random.key(9), (16, 1)))
    tokens, mask = _batch(jax.random.key(5), B=2, T=8)
    mask = mask.at[1, 5:].set(False)
    out = forward(g, p, tokens, mask)
    assert out.logits.shape == (2, 8, 45) and out.values.shape == (2, 8)
    assert out.scalar.shape == (2,) and out.hidden.shape == (2, 8, 16)
    import flax.nnx as nnx
    model = nnx.merge(g, p)
    expected = model.score(out.hidden[jnp.arange(2), jnp.array([7, 4])])[:, 0]
    np.testing.assert_allclose(out.scalar, expected, rtol=1e-6)


def test_forward_is_jittable_and_equals_eager(small_model):
    g, p = small_model
    tokens, mask = _batch(jax.random.key(6), T=10)
    eager = forward(g, p, tokens, mask).logits
    jitted = jax.jit(forward, static_argnums=0)(g, p, tokens, mask).logits
    np.testing.assert_allclose(eager, jitted, atol=1e-5)


def test_untrained_loss_is_near_log_vocab(small_model):
    from minirlhf.losses import next_token_loss
    g, p = small_model
    tokens, mask = _batch(jax.random.key(7), B=8, T=20)
    loss = next_token_loss(forward(g, p, tokens, mask).logits, tokens, mask)
    assert abs(float(loss) - np.log(45)) < 0.1


@pytest.mark.parametrize("field,value,match", [
    ("n_heads", 3, "n_heads=3 must divide d_model=128"),
    ("d_model", 0, "d_model must be a positive integer"),
    ("positions", "sinusoid", "positions must be 'learned' or 'rope'"),
])
def test_invalid_config_names_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{field: value})


def test_bad_inputs_name_the_problem(small_model):
    g, p = small_model
    with pytest.raises(AssertionError, match="rank"):
        forward(g, p, jnp.zeros((5,), jnp.int32), jnp.ones((5,), bool))
    with pytest.raises(TypeError, match="integer ids"):
        forward(g, p, jnp.zeros((1, 5)), jnp.ones((1, 5), bool))
    with pytest.raises(TypeError, match="mask must be bool"):
        forward(g, p, jnp.zeros((1, 5), jnp.int32), jnp.ones((1, 5)))
    with pytest.raises(ValueError, match="exceeds ModelConfig.max_len=64"):
        forward(g, p, jnp.zeros((1, 65), jnp.int32), jnp.ones((1, 65), bool))


def test_causal_attention_mask_by_hand():
    from minirlhf.model import causal_attention_mask

    m = causal_attention_mask(jnp.array([[False, True, True]]))
    np.testing.assert_array_equal(m[0], [[0, 0, 0], [0, 1, 0], [0, 1, 1]])
