"""DPO: the loss by hand and as Bradley-Terry on the implicit rewards, IPO and label smoothing
by hand, a gradient check, response-only log-probs, a frozen reference, the run end to end
(resume, refusals that write nothing), and 4 devices = 1."""

import dataclasses
import json
import math
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from minirlhf.dpo import (DPOConfig, encode_pairs, evaluate_pairs, likelihood_displacement,
                          pair_logprobs, sequence_logprobs, train_dpo)
from minirlhf.losses import bradley_terry_loss, dpo_implicit_rewards, dpo_loss
from minirlhf.model import ModelConfig, forward, init_model
from minirlhf.optim import OptimConfig
from minirlhf.preference_data import Comparison, write_preferences
from minirlhf.tokenizer import CharTokenizer

# Two pairs: log pi(chosen), log pi(rejected), log pi_ref(chosen), log pi_ref(rejected).
LC, LR, RC, RR = (jnp.array([-3.0, -5.0]), jnp.array([-4.0, -2.0]),
                  jnp.array([-3.5, -4.0]), jnp.array([-3.5, -3.0]))


def test_dpo_loss_by_hand():
    beta = 0.5
    # pair 1: 0.5 * ((-3 + 3.5) - (-4 + 3.5)) = 0.5;  pair 2: 0.5 * ((-5 + 4) - (-2 + 3)) = -1
    by_hand = np.mean([-math.log(1 / (1 + math.exp(-0.5))), -math.log(1 / (1 + math.exp(1.0)))])
    assert float(dpo_loss(LC, LR, RC, RR, beta)) == pytest.approx(by_hand, rel=1e-6)
    assert np.allclose(dpo_implicit_rewards(LC, RC, beta), [0.25, -0.5])
    # The policy equal to the reference: every implicit reward is 0, the loss ln 2.
    assert float(dpo_loss(RC, RR, RC, RR, beta)) == pytest.approx(math.log(2), rel=1e-6)


def test_dpo_loss_is_bradley_terry_on_the_implicit_rewards():
    k = jax.random.split(jax.random.key(0), 4)
    lc, lr, rc, rr = (jax.random.normal(x, (16,)) * 3 for x in k)
    mask = jnp.arange(16) % 3 != 0
    for beta in (0.05, 0.1, 1.0):
        r_c, r_r = dpo_implicit_rewards(lc, rc, beta), dpo_implicit_rewards(lr, rr, beta)
        assert float(dpo_loss(lc, lr, rc, rr, beta, mask=mask)) == pytest.approx(
            float(bradley_terry_loss(r_c, r_r, mask=mask)), rel=1e-6)
        assert float(dpo_loss(lc, lr, rc, rr, beta, label_smoothing=0.2)) == pytest.approx(
            float(bradley_terry_loss(r_c, r_r, 0.8)), rel=1e-6)


def test_ipo_and_label_smoothing_by_hand():
    beta = 0.5
    # log-ratio margins h = 1 and -2; IPO's target 1 / (2 beta) = 1.
    assert float(dpo_loss(LC, LR, RC, RR, beta, "ipo")) == pytest.approx(
        ((1 - 1) ** 2 + (-2 - 1) ** 2) / 2, rel=1e-6)
    eps = 0.1
    sig = lambda x: 1 / (1 + math.exp(-x))
    by_hand = np.mean([-(1 - eps) * math.log(sig(g)) - eps * math.log(sig(-g))
                       for g in (0.5, -1.0)])
    assert float(dpo_loss(LC, LR, RC, RR, beta, label_smoothing=eps)) == pytest.approx(
        by_hand, rel=1e-6)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_gradient_check(loss_type):
    f = lambda lc, lr: dpo_loss(lc, lr, RC, RR, 0.5, loss_type, 0.1 * (loss_type == "sigmoid"))
    check_grads(f, (LC, LR), order=1, modes=["rev"], eps=1e-2, atol=1e-3, rtol=1e-3)
    # Raising the chosen response's probability lowers the DPO loss, the rejected's raises it.
    g_c, g_r = jax.grad(f, argnums=(0, 1))(LC, LR)
    if loss_type == "sigmoid":
        assert bool(jnp.all(g_c < 0)) and bool(jnp.all(g_r > 0))


def test_dpo_loss_refuses_bad_arguments():
    with pytest.raises(ValueError, match="beta > 0, got 0"):
        dpo_loss(LC, LR, RC, RR, 0.0)
    with pytest.raises(ValueError, match="unknown DPO loss_type 'kto'"):
        dpo_loss(LC, LR, RC, RR, 0.1, "kto")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\)"):
        dpo_loss(LC, LR, RC, RR, 0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="DPOConfig.beta must be a number > 0, got -1"):
        DPOConfig(beta=-1)
    with pytest.raises(ValueError, match="DPOConfig.loss_type must be one of"):
        DPOConfig(loss_type="hinge")
    with pytest.raises(ValueError, match="label_smoothing=0.1 does nothing with loss_type='ipo'"):
        DPOConfig(loss_type="ipo", label_smoothing=0.1)


@pytest.fixture(scope="module")
def tiny():
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,!:/0123456789")
    g, p = init_model(ModelConfig(vocab_size=tok.vocab_size, max_len=32, d_model=32,
                                  n_heads=2, n_layers=1), jax.random.key(0))
    return tok, g, p


def test_sequence_logprobs_count_only_the_response(tiny):
    tok, g, p = tiny
    pairs = [Comparison("the pizza", (" was great", " bad")), Comparison("a", (" ok", " no!"))]
    data = encode_pairs(tok, pairs, 32)
    logp = np.asarray(sequence_logprobs(g, p, data.tokens, data.mask, data.response_mask))
    logits = np.asarray(forward(g, p, data.tokens.reshape(4, -1), data.mask.reshape(4, -1)).logits)
    logsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    for i, (prompt, response) in enumerate((c.prompt, t) for c in pairs for t in c.ranking):
        ids = tok.encode(prompt + response, bos=True, eos=True)
        start = 1 + len(prompt)  # BOS, the prompt: context only
        by_hand = sum(logsm[i, t - 1, ids[t]] for t in range(start, len(ids)))
        assert logp.reshape(-1)[i] == pytest.approx(by_hand, rel=1e-5, abs=1e-4)
    # The sum above starts after the prompt: had the prompt's own log-probs entered, it would
    # differ. The mask says the same: nothing before the response's first token.
    assert not data.response_mask[0, :, :1 + len("the pizza")].any()
    # pair_logprobs in chunks (with padding rows) agrees with one call.
    assert np.allclose(pair_logprobs(g, p, data, chunk=3), logp, atol=1e-5)


def test_likelihood_displacement_is_both_falling():
    rec = lambda c, r: {"val_chosen_logp": c, "val_rejected_logp": r}
    assert likelihood_displacement([rec(-10, -12), rec(-11, -20)])
    assert not likelihood_displacement([rec(-10, -12), rec(-9, -20)])
    assert not likelihood_displacement([rec(-10, -12)])


@pytest.fixture(scope="module")
def sft_and_prefs(tmp_path_factory):
    """A tiny SFT run folder (a few steps) and a preference file of 40 pairs."""
    from minirlhf.configs import override
    from minirlhf.pretrain import PretrainConfig, pretrain
    from minirlhf.sft import SFTConfig, sft

    root = tmp_path_factory.mktemp("dpo")
    model = {"d_model": 32, "n_heads": 2, "n_layers": 1, "max_len": 112}
    pretrain(override(PretrainConfig(), {"steps": 4, "batch_size": 8, "n_train": 64, "n_val": 16,
                                         "eval_every": 4, "checkpoint_every": 4,
                                         **{f"model.{k}": v for k, v in model.items()}}),
             root / "pretrain")
    sft(override(SFTConfig(), {"init": str(root / "pretrain"), "steps": 2, "batch_size": 8,
                               "n_train": 32, "n_val": 8, "eval_every": 2,
                               "checkpoint_every": 2}), root / "sft")
    rng = np.random.default_rng(0)
    good = [" great. i loved the crust. rating: 5/5", " nice. a superb plot. rating: 4/5"]
    bad = [" awful. i hated the crust. rating: 1/5", " dull. rating: 2/5"]
    cmp = [Comparison("the pizza was", (good[i % 2], bad[int(rng.integers(2))]))
           for i in range(40)]
    write_preferences(root / "prefs.jsonl", cmp)
    return root


def _cfg(root, **kw):
    return DPOConfig(init=str(root / "sft"), preferences=str(root / "prefs.jsonl"), n_val=8,
                     steps=6, batch_size=8, eval_every=3, checkpoint_every=3, **kw)


def test_dpo_run_learns_the_pairs_resumes_exactly_and_keeps_the_reference_fixed(sft_and_prefs):
    from minirlhf.checkpoint import load_model
    from minirlhf.logging import read_metrics

    root = sft_and_prefs
    cfg = _cfg(root, beta=0.5, optim=OptimConfig(lr=3e-3, warmup_steps=0))
    g, p, summary = train_dpo(cfg, root / "run")
    assert summary["start"]["val_loss"] == pytest.approx(math.log(2), abs=1e-5)  # pi = pi_ref
    assert summary["val_reward_accuracy"] > 0.5 and summary["val_loss"] < math.log(2)
    assert summary["val_reward_margin"] > 0
    history = read_metrics(root / "run" / "metrics.jsonl")
    logged = [r for r in history if "loss" in r]
    assert logged and {"reward_accuracy", "chosen_logp", "rejected_logp"} <= set(logged[-1])
    # The reference is the SFT model, fixed: the final policy's held-out loss, recomputed
    # against SFT's log-probs, is the logged one.
    sg, sp, tok, meta = load_model(root / "sft")
    from minirlhf.preference_data import load_preferences
    val = encode_pairs(tok, load_preferences(root / "prefs.jsonl")[-8:], meta["model"]["max_len"])
    val = val.replace(ref_logp=pair_logprobs(sg, sp, val))
    assert evaluate_pairs(g, p, val, cfg)["val_loss"] == pytest.approx(summary["val_loss"],
                                                                      rel=1e-5)
    # Interrupted after 3 steps and resumed: the same parameters as the straight run.
    train_dpo(cfg, root / "resumed", stop_after=3)
    g2, p2, _ = train_dpo(cfg, root / "resumed")
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in
               zip(jax.tree.leaves(p), jax.tree.leaves(p2))) < 1e-6
    # A finished run is read back, not redone.
    assert train_dpo(cfg, root / "run")[2] == json.loads((root / "run" / "summary.json")
                                                         .read_text())


def test_bad_preference_file_is_refused_by_line_before_anything_is_written(sft_and_prefs,
                                                                           tmp_path):
    root = sft_and_prefs
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": " b", "rejected": " c"}\n'
                   '{"prompt": "a", "chosen": " b"}\n')
    cfg = dataclasses.replace(_cfg(root), preferences=str(bad))
    with pytest.raises(ValueError, match=r"bad.jsonl, line 2: missing field 'rejected'"):
        train_dpo(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    few = dataclasses.replace(_cfg(root), n_val=40)
    with pytest.raises(ValueError, match="holds 40 comparisons; need more than "
                                         "DPOConfig.n_val=40"):
        train_dpo(few, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="DPOConfig.init="):
        train_dpo(dataclasses.replace(_cfg(root), init=str(tmp_path)), tmp_path / "out")


FOUR_DEVICES = textwrap.dedent("""
    import os, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    from minirlhf.dpo import DPOConfig, encode_pairs, make_dpo_step, pair_logprobs
    from minirlhf.losses import dpo_loss
    from minirlhf.dpo import sequence_logprobs
    from minirlhf.model import ModelConfig, init_model
    from minirlhf.optim import TrainState
    from minirlhf.parallel import data_parallel, make_mesh, replicate, shard_batch
    from minirlhf.preference_data import Comparison
    from minirlhf.tokenizer import CharTokenizer

    assert jax.device_count() == 4
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,!:/0123456789")
    g, p = init_model(ModelConfig(vocab_size=tok.vocab_size, max_len=40, d_model=32,
                                  n_heads=2, n_layers=1), jax.random.key(0))
    words = ["great", "bad", "a superb plot", "no", "okay then", "dull", "fine", "wow"]
    pairs = [Comparison("the " + w[:3], (" " + w, " " + words[(i + 3) % 8] + "!" * i))
             for i, w in enumerate(words)]  # unequal lengths: unequal tokens per shard
    data = encode_pairs(tok, pairs, 40)
    _, rp = init_model(ModelConfig(vocab_size=tok.vocab_size, max_len=40, d_model=32,
                                   n_heads=2, n_layers=1), jax.random.key(1))
    data = data.replace(ref_logp=pair_logprobs(g, rp, data))
    cfg = DPOConfig(beta=0.5)
    opt = optax.sgd(0.5)

    def run(n, micro=0):
        mesh = make_mesh(n)
        step = data_parallel(make_dpo_step(cfg)(g, opt, micro), mesh)
        state = replicate(TrainState(p, opt.init(p), jnp.int32(0)), mesh)
        state, m = step(state, shard_batch(data, mesh), jax.random.key(0))
        return state.params, {k: float(v) for k, v in m.items()}

    def plain():
        def loss(params):
            lp = sequence_logprobs(g, params, data.tokens, data.mask, data.response_mask)
            return dpo_loss(lp[:, 0], lp[:, 1], data.ref_logp[:, 0], data.ref_logp[:, 1], 0.5)
        l, grads = jax.value_and_grad(loss)(p)
        return optax.apply_updates(p, opt.update(grads, opt.init(p), p)[0]), float(l)

    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    p4, m4 = run(4)
    p1, m1 = run(1)
    p4m, m4m = run(4, micro=60)
    ref, ref_loss = plain()
    print(json.dumps({"d41": diff(p4, p1), "d41_micro": diff(p4m, p1), "d1ref": diff(p1, ref),
                      "moved": diff(p1, p), "loss4": m4["loss"], "loss1": m1["loss"],
                      "ref_loss": ref_loss, "micro": m4m["microbatches"]}))
""")


def test_dpo_step_on_four_devices_equals_one_and_the_plain_gradient():
    proc = subprocess.run([sys.executable, "-c", FOUR_DEVICES], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["moved"] > 1e-3, r
    assert r["d41"] < 1e-5 and r["d41_micro"] < 1e-5 and r["d1ref"] < 1e-5, r
    assert r["micro"] > 1, r  # the microbatched run really accumulated
    assert abs(r["loss4"] - r["loss1"]) < 1e-5 and abs(r["loss1"] - r["ref_loss"]) < 1e-5
