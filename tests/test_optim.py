"""Gradient accumulation: microbatches in a scan = a Python loop = the whole batch at once,
for the language-model and Bradley-Terry steps."""

import jax
import numpy as np
import optax
import pytest

from minirlhf import parallel
from minirlhf.distributions import masked_sum
from minirlhf.losses import next_token_nll
from minirlhf.model import ModelConfig, forward, init_model
from minirlhf.optim import accumulate_gradients, init_train_state, num_microbatches
from minirlhf.parallel import data_parallel, make_mesh, replicate, shard_batch
from minirlhf.lm_training import LMBatch, make_train_step
from minirlhf.pretrain import PretrainConfig
from minirlhf.reward_model import PreferenceBatch, make_reward_step

CFG = ModelConfig(max_len=16, d_model=32, n_heads=2, n_layers=1)
B, T = 8, 12


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def lm_batch():
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (B, T), 3, 45), np.int32)
    lengths = np.array([12, 3, 7, 12, 5, 9, 2, 11])  # microbatches hold unequal token counts
    mask = np.arange(T)[None] < lengths[:, None]
    return LMBatch(tokens, mask, mask & (np.arange(T)[None] > 0))


@pytest.mark.parametrize("rows,tokens,budget,expected", [
    (64, 64, 512, 8),    # bench_lm.py's config: 8 sequences of 64 tokens per microbatch
    (64, 64, 0, 1),      # 0: no accumulation
    (64, 64, 4096, 1),   # the whole batch fits
    (6, 100, 250, 3),    # 2 rows = 200 tokens fit, 3 rows do not
    (10, 100, 350, 5),   # 3 rows would fit, but 3 does not divide 10: 2 rows each
    (5, 100, 50, 5),     # not even one row fits: one row per microbatch
    (62, 64, 512, 31),   # few divisors: 2 rows (128 tokens) per microbatch
])
def test_num_microbatches_by_hand(rows, tokens, budget, expected):
    assert num_microbatches(rows, tokens, budget) == expected


def test_num_microbatches_refuses_an_empty_batch():
    with pytest.raises(ValueError, match="rows >= 1 and tokens_per_row >= 1, got rows=0"):
        num_microbatches(0, 64, 512)


@pytest.mark.parametrize("n", [2, 8])  # 8: one row per microbatch, one of them has 1 target
def test_accumulate_gradients_equals_loop_and_whole_batch(lm_batch, n):
    g, params = init_model(CFG, jax.random.key(0))
    count = lm_batch.loss_mask[:, 1:].sum()

    def loss_fn(p, micro):  # a sum over the microbatch / a constant of the whole batch
        logits = forward(g, p, micro.tokens, micro.mask).logits
        nll = next_token_nll(logits, micro.tokens)
        return masked_sum(nll, micro.loss_mask[:, 1:]) / count, {"targets": micro.loss_mask.sum()}

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    whole = grad_fn(params, lm_batch)
    scanned = jax.jit(accumulate_gradients, static_argnums=(0, 3))(loss_fn, params,
                                                                   lm_batch, n)
    # The plain-Python reference: one value_and_grad per slice, summed.
    rows = B // n
    parts = [grad_fn(params, jax.tree.map(lambda a: a[i * rows:(i + 1) * rows], lm_batch))
             for i in range(n)]
    loop = jax.tree.map(lambda *xs: sum(np.asarray(x) for x in xs), *parts)
    assert _max_diff(scanned, loop) < 1e-6
    assert _max_diff(scanned, whole) < 1e-6
    assert int(scanned[0][1]["targets"]) == int(lm_batch.loss_mask.sum())
    assert _max_diff(whole[1], jax.tree.map(np.zeros_like, whole[1])) > 0.01  # a real gradient
    with pytest.raises(ValueError, match="8 examples does not split into 3 microbatches"):
        accumulate_gradients(loss_fn, params, lm_batch, 3)
    ragged = LMBatch(lm_batch.tokens, lm_batch.mask[:4], lm_batch.loss_mask)
    with pytest.raises(ValueError, match=r"same leading \(example\) axis, got sizes \[4, 8\]"):
        accumulate_gradients(loss_fn, params, ragged, 2)


@pytest.mark.parametrize("n, unroll", [(8, 2), (8, 3), (2, 2)])  # 3: a remainder of 2
def test_accumulate_gradients_unrolled_equals_one_at_a_time(lm_batch, n, unroll):
    g, params = init_model(CFG, jax.random.key(0))
    count = lm_batch.loss_mask[:, 1:].sum()

    def loss_fn(p, micro):
        nll = next_token_nll(forward(g, p, micro.tokens, micro.mask).logits, micro.tokens)
        return masked_sum(nll, micro.loss_mask[:, 1:]) / count, ()

    acc = jax.jit(accumulate_gradients, static_argnums=(0, 3, 4))
    # The same sums added in the same order: equal up to XLA fusing them differently.
    assert _max_diff(acc(loss_fn, params, lm_batch, n, unroll),
                     acc(loss_fn, params, lm_batch, n, 1)) < 1e-7
    # ... and the scan really holds `unroll` microbatches per iteration.
    jaxpr = jax.make_jaxpr(accumulate_gradients, static_argnums=(0, 3, 4))(
        loss_fn, params, lm_batch, n, np.int64(unroll))
    scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
    assert [e.params["unroll"] for e in scans] == [unroll]
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=f"needs unroll >= 1 .*, got {bad}"):
            accumulate_gradients(loss_fn, params, lm_batch, n, bad)


def test_microbatches_at_once_follows_the_cores(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.microbatches_at_once(1) == 2  # a second core for a second microbatch
    assert parallel.microbatches_at_once(2) == 1  # one core a device: one at a time
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    assert parallel.microbatches_at_once(1) == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # one microbatch there
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    assert parallel.microbatches_at_once(1) == 1


def _run(step, params, batch, opt, steps=2):
    mesh = make_mesh(1)
    fn = data_parallel(step, mesh)
    state = replicate(init_train_state(params, opt), mesh)
    for i in range(steps):
        state, metrics = fn(state, shard_batch(batch, mesh), jax.random.key(i))
    return state.params, metrics


@pytest.mark.parametrize("unroll", [1, 2, None])  # one at a time, two side by side, the rule
def test_lm_step_with_microbatches_equals_whole_batch(lm_batch, unroll):
    g, params = init_model(CFG, jax.random.key(0))
    opt = optax.sgd(0.5)  # parameters then differ exactly as gradients do
    whole, m_whole = _run(make_train_step(g, opt, microbatch_tokens=0), params, lm_batch, opt)
    assert int(m_whole["microbatches"]) == 1
    # 12 tokens per row: 2 rows per microbatch, 4 microbatches.
    for budget in (24,):
        micro, m_micro = _run(make_train_step(g, opt, microbatch_tokens=budget, unroll=unroll),
                              params, lm_batch, opt)
        assert int(m_micro["microbatches"]) == 4  # the accumulation really ran
        assert _max_diff(micro, whole) < 1e-5
        assert abs(float(m_micro["loss"]) - float(m_whole["loss"])) < 1e-6
        assert int(m_micro["tokens"]) == int(lm_batch.loss_mask[:, 1:].sum())
    assert _max_diff(whole, params) > 1e-3  # the steps really moved the parameters


def test_reward_step_with_microbatches_equals_whole_batch():
    g, params = init_model(ModelConfig(max_len=16, d_model=32, n_heads=2, n_layers=1,
                                       scalar_head=True), jax.random.key(2))
    tokens = np.asarray(jax.random.randint(jax.random.key(3), (8, 3, T), 3, 45), np.int32)
    lengths = np.asarray(jax.random.randint(jax.random.key(4), (8, 3), 2, T + 1))
    batch = PreferenceBatch(tokens, np.arange(T)[None, None] < lengths[..., None])
    opt = optax.sgd(0.5)
    whole, m_whole = _run(make_reward_step(g, opt, microbatch_tokens=0), params, batch, opt)
    micro, m_micro = _run(make_reward_step(g, opt, microbatch_tokens=3 * T), params, batch, opt)
    assert (int(m_whole["microbatches"]), int(m_micro["microbatches"])) == (1, 8)
    assert _max_diff(micro, whole) < 1e-5
    for name in ("loss", "accuracy"):
        assert abs(float(m_micro[name]) - float(m_whole[name])) < 1e-6
    assert _max_diff(whole, params) > 1e-3


@pytest.mark.parametrize("value", [-2, 1.5, True])
def test_bad_microbatch_tokens_is_refused(value):
    with pytest.raises(ValueError, match="PretrainConfig.microbatch_tokens must be an integer"):
        PretrainConfig(microbatch_tokens=value)
