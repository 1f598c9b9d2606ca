"""N devices = 1 device: data-parallel train steps on 4 fake CPU devices give the parameters
of the same steps on 1 device, and of a plain jax.grad + optax update of the pure loss; the
RLHF iteration and generation on 4 devices give what they give on 1.

The batch's rows have unequal lengths, so the shards hold unequal numbers of target tokens:
averaging per-device means (instead of psum(sum) / psum(count)) would fail this test, and
so would a pmean on the gradient (N times too large)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import os, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    from minirlhf.model import ModelConfig, init_model, forward
    from minirlhf.losses import next_token_loss
    from minirlhf.optim import OptimConfig, init_train_state, make_optimizer
    from minirlhf.parallel import make_mesh, data_parallel, shard_batch, replicate
    from minirlhf.lm_training import LMBatch, make_train_step

    assert jax.device_count() == 4, jax.devices()
    g, p = init_model(ModelConfig(max_len=16, d_model=32, n_heads=2, n_layers=2),
                      jax.random.key(0))
    # Plain SGD: parameters then differ exactly as gradients do. (Adam divides by sqrt(v),
    # which turns float noise in near-zero gradients into lr-sized differences.)
    opt = optax.sgd(0.5)
    B, T = 8, 12
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (B, T), 3, 45), np.int32)
    lengths = np.array([12, 3, 7, 12, 5, 9, 2, 11])  # shards hold unequal token counts
    mask = np.arange(T)[None] < lengths[:, None]
    batch = LMBatch(tokens, mask, mask & (np.arange(T)[None] > 0))

    def run(n, microbatch_tokens=0):
        mesh = make_mesh(n)
        step = data_parallel(make_train_step(g, opt, microbatch_tokens), mesh)
        state = replicate(init_train_state(p, opt), mesh)
        for i in range(2):
            state, metrics = step(state, shard_batch(batch, mesh), jax.random.key(i))
        return state.params, float(metrics["loss"])

    p4, loss4 = run(4)
    p1, loss1 = run(1)
    # With gradient accumulation, one row (12 tokens) per microbatch: 2 microbatches on
    # each of 4 devices, against the whole batch at once on 1 device.
    p4_micro, loss4_micro = run(4, microbatch_tokens=12)
    # Independent reference: the pure loss on the whole batch, jax.grad, optax.
    params, opt_state = p, opt.init(p)
    for i in range(2):
        loss_fn = lambda q: next_token_loss(forward(g, q, jnp.asarray(tokens), jnp.asarray(mask)).logits,
                                            jnp.asarray(tokens), jnp.asarray(batch.loss_mask))
        ref_loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    moved = diff(p1, p)
    # The whole training loop on 4 devices (placement, donation, evaluation, checkpoints)
    # against the same loop on 1 device.
    import tempfile
    from minirlhf.checkpoint import load_model
    from minirlhf.pretrain import PretrainConfig, pretrain
    loop = dict(steps=4, batch_size=8, n_train=64, n_val=16, eval_every=2, checkpoint_every=2,
                model=ModelConfig(max_len=112, d_model=32, n_heads=2, n_layers=1))
    tmp = tempfile.mkdtemp()
    _, loop4, _, hist4 = pretrain(PretrainConfig(n_devices=4, **loop), tmp + "/four")
    _, loop1, _, hist1 = pretrain(PretrainConfig(n_devices=1, **loop), tmp + "/one")
    _, loaded, _, _ = load_model(tmp + "/four")
    # The reward model's Bradley-Terry step (rankings of K = 3): 4 devices = 1 = plain grad.
    from minirlhf.losses import ranking_loss
    from minirlhf.reward_model import PreferenceBatch, make_reward_step, scores
    rg, rp = init_model(ModelConfig(max_len=16, d_model=32, n_heads=2, n_layers=1,
                                    scalar_head=True), jax.random.key(2))
    rtok = np.asarray(jax.random.randint(jax.random.key(3), (8, 3, T), 3, 45), np.int32)
    rlen = np.asarray(jax.random.randint(jax.random.key(4), (8, 3), 2, T + 1))
    rmask = np.arange(T)[None, None] < rlen[..., None]
    rbatch = PreferenceBatch(rtok, rmask)

    def run_rm(n, microbatch_tokens=0):
        mesh = make_mesh(n)
        step = data_parallel(make_reward_step(rg, opt, microbatch_tokens), mesh)
        state = replicate(init_train_state(rp, opt), mesh)
        for i in range(2):
            state, m = step(state, shard_batch(rbatch, mesh), jax.random.key(i))
        return state.params, float(m["loss"])

    rp4, rloss4 = run_rm(4)
    rp1, rloss1 = run_rm(1)
    rp4_micro, _ = run_rm(4, microbatch_tokens=3 * T)  # one ranking per microbatch
    rparams, ropt = rp, opt.init(rp)
    for i in range(2):
        rl = lambda q: ranking_loss(scores(rg, q, jnp.asarray(rtok), jnp.asarray(rmask)))
        rref_loss, grads = jax.value_and_grad(rl)(rparams)
        updates, ropt = opt.update(grads, ropt, rparams)
        rparams = optax.apply_updates(rparams, updates)
    print(json.dumps({"rm_d41": diff(rp4, rp1), "rm_d1ref": diff(rp1, rparams),
                      "rm_d41_micro": diff(rp4_micro, rp1),
                      "rm_moved": diff(rp1, rp), "rm_loss4": rloss4, "rm_loss1": rloss1,
                      "rm_ref_loss": float(rref_loss),
                      "d41": diff(p4, p1), "d1ref": diff(p1, params), "moved": moved,
                      "d41_micro": diff(p4_micro, p1), "loss4_micro": loss4_micro,
                      "loss4": loss4, "loss1": loss1, "ref_loss": float(ref_loss),
                      "loop_d41": diff(loop4, loop1), "loop_loaded": diff(loop4, loaded),
                      "loop_val4": hist4[-1]["val_loss"], "loop_val1": hist1[-1]["val_loss"]}))
""")


def run_script(script: str) -> dict:
    """Run a script in a fresh CPU-only Python (it chooses its own device count) and return
    the JSON object its last line prints."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def result():
    return run_script(SCRIPT)


def test_four_devices_equal_one_device(result):
    assert result["moved"] > 1e-3  # the step really changed the parameters
    assert result["d41"] < 1e-5, result
    assert abs(result["loss4"] - result["loss1"]) < 1e-5


def test_four_devices_with_microbatches_equal_one_device(result):
    assert result["d41_micro"] < 1e-5, result
    assert abs(result["loss4_micro"] - result["loss1"]) < 1e-5


def test_training_loop_on_four_devices_equals_one_device(result):
    # Adam over 4 steps amplifies float noise in near-zero gradients; the tolerance allows
    # that, and is far below the change training makes.
    assert result["loop_d41"] < 1e-3, result
    assert result["loop_loaded"] == 0.0  # the checkpoint holds exactly the final parameters
    assert abs(result["loop_val4"] - result["loop_val1"]) < 1e-3


def test_data_parallel_step_equals_plain_gradient_step(result):
    assert result["d1ref"] < 1e-5, result
    assert abs(result["loss1"] - result["ref_loss"]) < 1e-5


def test_batch_must_divide_over_devices_and_devices_must_exist():
    from minirlhf.parallel import check_divisible, make_mesh

    check_divisible(7, make_mesh(1))  # one device takes any batch
    check_divisible(8, 4)
    with pytest.raises(ValueError, match=r"batch_size=6 must be divisible by the number of devices \(4\)"):
        check_divisible(6, 4)
    with pytest.raises(ValueError, match="n_devices=99 but only"):
        make_mesh(99)


def test_reward_model_step_on_four_devices_equals_one_and_plain_gradient(result):
    assert result["rm_moved"] > 1e-3, result
    assert result["rm_d41"] < 1e-5, result
    assert result["rm_d41_micro"] < 1e-5, result
    assert result["rm_d1ref"] < 1e-5, result
    assert abs(result["rm_loss4"] - result["rm_loss1"]) < 1e-5
    assert abs(result["rm_loss1"] - result["rm_ref_loss"]) < 1e-5


RLHF_SCRIPT = textwrap.dedent("""
    import os, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    from minirlhf.model import ModelConfig, init_model
    from minirlhf.optim import TrainState
    from minirlhf.parallel import make_mesh, shard_batch, replicate
    from minirlhf.rlhf import Frozen, RLHFConfig, RLHFState, make_iteration
    from minirlhf.rollout import RolloutConfig
    from minirlhf.tokenizer import CharTokenizer
    from minirlhf.envs import make_task

    assert jax.device_count() == 4, jax.devices()
    task = make_task("reviews")
    tok = CharTokenizer(task.alphabet)
    base = dict(vocab_size=tok.vocab_size, max_len=40, d_model=32, n_heads=2, n_layers=1)
    g, p = init_model(ModelConfig(**base), jax.random.key(0))
    cg, cp = init_model(ModelConfig(**base, value_head=True), jax.random.key(3))  # the critic
    rg, rp = init_model(ModelConfig(**base), jax.random.key(0))
    mg, mp = init_model(ModelConfig(**base, scalar_head=True), jax.random.key(1))
    mp["score"]["kernel"] = jax.random.normal(jax.random.key(2), mp["score"]["kernel"].shape)
    cfg = RLHFConfig(batch_size=8, num_minibatches=2, update_epochs=2, beta=0.1,
                     kl_control="adaptive", rollout=RolloutConfig(max_new_tokens=12))
    opt = optax.sgd(0.05)
    prompt, mask = tok.encode_batch(task.prompts(8, seed=0), bos=True, padding="left")

    def run(n):
        mesh = make_mesh(n)
        it = jax.jit(make_iteration(cfg, g, rg, mg, {"mean": 0.0, "std": 1.0}, opt, cg))
        params = {"policy": p, "critic": cp}
        state = replicate(RLHFState(TrainState(params, opt.init(params), jnp.int32(0)),
                                    jnp.float32(cfg.beta)), mesh)
        frozen = replicate(Frozen(rp, mp), mesh)
        out = []
        for i in range(2):
            state, m, tokens, tmask = it(state, frozen, *shard_batch((prompt, mask), mesh),
                                         jax.random.key(i))
            out.append(np.asarray(tokens).tolist())
        return state, {k: float(v) for k, v in m.items()}, out

    s4, m4, t4 = run(4)
    s1, m1, t1 = run(1)
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({"d41": diff(s4.train.params, s1.train.params),
                      "moved": diff(s1.train.params["policy"], p),
                      "critic_moved": diff(s1.train.params["critic"], cp), "same_tokens": t4 == t1,
                      "beta4": float(s4.beta), "beta1": float(s1.beta), "m4": m4, "m1": m1}))
""")


def test_rlhf_iteration_on_four_devices_equals_one_device():
    r = run_script(RLHF_SCRIPT)
    assert r["same_tokens"]  # sampling does not depend on how the batch is sharded
    assert r["moved"] > 1e-3 and r["critic_moved"] > 1e-3, r
    assert r["d41"] < 1e-5, r
    assert r["beta4"] == pytest.approx(r["beta1"], rel=1e-6) and r["beta1"] != 0.1
    for k in ("score", "kl", "policy_loss", "value_loss", "clip_fraction"):
        assert r["m4"][k] == pytest.approx(r["m1"][k], rel=1e-4, abs=1e-6), k


GRPO_SCRIPT = textwrap.dedent("""
    import os, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    from minirlhf.envs import make_task
    from minirlhf.grpo import GRPOConfig, make_iteration, model_reward, rule_reward
    from minirlhf.model import ModelConfig, init_model
    from minirlhf.optim import TrainState
    from minirlhf.parallel import make_mesh, replicate, shard_batch
    from minirlhf.tokenizer import CharTokenizer

    assert jax.device_count() == 4, jax.devices()
    task = make_task("arithmetic")
    tok = CharTokenizer(task.alphabet)
    base = dict(vocab_size=tok.vocab_size, max_len=40, d_model=32, n_heads=2, n_layers=1)
    g, p = init_model(ModelConfig(**base), jax.random.key(0))
    mg, mp = init_model(ModelConfig(**base, scalar_head=True), jax.random.key(1))
    mp["score"]["kernel"] = jax.random.normal(jax.random.key(2), mp["score"]["kernel"].shape)
    # Microbatches of 64 tokens (2 responses of 23): accumulation on the sharded batch too.
    cfg = GRPOConfig(prompts_per_iteration=8, group_size=4, max_new_tokens=12,
                     num_minibatches=2, update_epochs=2, beta=0.1, clip_eps_high=0.28,
                     microbatch_tokens=64)
    opt = optax.sgd(0.05)
    prompt, mask = tok.encode_batch(task.prompts(8, seed=0), bos=True, padding="left",
                                    length=1 + task.max_prompt_chars)
    # Rewards on the host (a rule of text) and on the devices (a reward model).
    length = lambda ps, rs: np.array([len(r) % 3 for r in rs], np.float32)
    rewards = {"rule": (rule_reward(length, tok), None),
               "model": (model_reward(mg, {"mean": 0.0, "std": 1.0}), mp)}

    def run(n, kind):
        mesh = make_mesh(n)
        reward, reward_params = rewards[kind]
        it = jax.jit(make_iteration(cfg, g, g, reward, opt))
        state = replicate(TrainState(p, opt.init(p), jnp.int32(0)), mesh)
        ref = replicate(p, mesh)
        rp = None if reward_params is None else replicate(reward_params, mesh)
        out = []
        for i in range(2):
            state, m, tokens, tmask, r = it(state, ref, rp, *shard_batch((prompt, mask), mesh),
                                            jax.random.key(i))
            out.append((np.asarray(tokens).tolist(), np.asarray(r).tolist()))
        shards = len(tokens.sharding.device_set)
        return state, {k: float(v) for k, v in m.items()}, out, shards

    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
                            zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    result = {}
    for kind in rewards:
        s4, m4, o4, shards = run(4, kind)
        s1, m1, o1, _ = run(1, kind)
        result[kind] = {"d41": diff(s4.params, s1.params), "moved": diff(s1.params, p),
                        "same": o4 == o1, "shards": shards, "m4": m4, "m1": m1}
    print(json.dumps(result))
""")


def test_grpo_iteration_on_four_devices_equals_one_device():
    for kind, r in run_script(GRPO_SCRIPT).items():
        assert r["same"], kind  # the same responses and rewards, however the batch is split
        assert r["shards"] == 4, kind  # and the responses really were split over 4 devices
        assert r["moved"] > 1e-3 and r["d41"] < 1e-5, (kind, r)
        for k in ("loss", "reward", "kl", "entropy", "flat_groups", "clip_high"):
            assert r["m4"][k] == pytest.approx(r["m1"][k], rel=1e-4, abs=1e-6), (kind, k)


GENERATE_SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil
    import jax
    import minirlhf, minirlhf.envs
    # Importing every module of the package must leave JAX's backends unstarted, so that a
    # program can still choose its devices afterwards (this update raises once they run).
    for pkg in (minirlhf, minirlhf.envs):
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            importlib.import_module(mod.name)
    jax.config.update("jax_num_cpu_devices", 4)
    import jax.numpy as jnp, numpy as np
    from minirlhf.generate import SamplingConfig, generate
    from minirlhf.model import ModelConfig, init_model
    from minirlhf.parallel import make_mesh, replicate, shard_batch

    assert jax.device_count() == 4, jax.devices()
    g, p = init_model(ModelConfig(max_len=32, d_model=32, n_heads=2, n_layers=2),
                      jax.random.key(0))
    B, P = 8, 6
    lengths = np.array([6, 1, 3, 6, 2, 5, 4, 1])  # real tokens per row, BOS included
    tokens = np.asarray(jax.random.randint(jax.random.key(1), (B, P), 3, 45), np.int32)
    left = np.arange(P)[None] >= P - lengths[:, None]
    right = np.arange(P)[None] < lengths[:, None]
    mesh = make_mesh(4)
    out = {}
    for padding, mask in (("left", left), ("right", right)):
        prompt = np.where(mask, tokens, 0).astype(np.int32)
        for name, cfg in (("greedy", SamplingConfig(max_new_tokens=20, temperature=0.0)),
                          ("sampled", SamplingConfig(max_new_tokens=20)),
                          ("top_p", SamplingConfig(max_new_tokens=20, temperature=1.3,
                                                   top_k=10, top_p=0.9))):
            key = jax.random.key(2)
            one = generate(g, p, jnp.asarray(prompt), jnp.asarray(mask), key, cfg)
            four = generate(g, replicate(p, mesh), *shard_batch((prompt, mask), mesh), key,
                            cfg)
            out[padding + "_" + name] = {
                "same_tokens": bool(np.array_equal(one.tokens, four.tokens)),
                "same_mask": bool(np.array_equal(one.mask, four.mask)),
                "same_finished": bool(np.array_equal(one.finished, four.finished)),
                "logprob_diff": float(np.max(np.abs(np.asarray(one.logprobs)
                                                    - np.asarray(four.logprobs)))),
                "generated": int(np.asarray(four.mask).sum()),
                # Data parallel for real: the result lies in 4 shards of B / 4 rows.
                "devices": len(four.tokens.sharding.device_set),
                "shard_rows": sorted({s.data.shape[0] for s in four.tokens.addressable_shards}),
            }
    print(json.dumps(out))
""")


def test_generation_on_four_devices_equals_one_device():
    """Prompts split over 4 devices (and the parameters replicated) are generated
    data-parallel, one quarter of the rows on each device, and give what one device gives:
    the same tokens and masks, the same log-probs, for greedy, sampled and top-k/top-p
    decoding with left and right padding. The script also checks that importing minirlhf
    does not start JAX's backends (the device count is set after the imports)."""
    r = run_script(GENERATE_SCRIPT)
    assert len(r) == 6, r
    for case, got in r.items():
        assert got["same_tokens"] and got["same_mask"] and got["same_finished"], (case, got)
        assert got["logprob_diff"] < 1e-5, (case, got)
        assert got["devices"] == 4 and got["shard_rows"] == [2], (case, got)
        assert got["generated"] > 8, (case, got)  # not every row stopped at its first token


def test_cpu_compiler_options_change_speed_not_results():
    """`jit_with_cpu_options`: same values as a plain jit, under an outer jit too, and a
    compile option this XLA does not know falls back to a plain jit instead of failing."""
    import jax
    import jax.numpy as jnp

    from minirlhf.model import ModelConfig, forward, init_model
    from minirlhf.parallel import CPU_OPTIONS, _options_supported, jit_with_cpu_options

    g, p = init_model(ModelConfig(max_len=16, d_model=32, n_heads=2), jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (4, 16), 3, 45)
    mask = jnp.ones((4, 16), bool)
    logits = lambda params, t: forward(g, params, t, mask).logits
    plain = jax.jit(logits)(p, tokens)
    tuned = jit_with_cpu_options(logits, CPU_OPTIONS)
    np.testing.assert_allclose(tuned(p, tokens), plain, atol=1e-5)
    nested = jax.jit(lambda params, t: tuned(params, t) * 2.0)(p, tokens)
    np.testing.assert_allclose(nested, 2.0 * plain, atol=1e-5)

    # The decoding options: the same values again, and the pass they name really is off
    # (an XLA that renamed it would ignore the name silently; this test would then fail).
    from minirlhf.parallel import CPU_DECODE_OPTIONS

    assert _options_supported(tuple(sorted(CPU_DECODE_OPTIONS.items())))  # else a plain jit
    decode = jit_with_cpu_options(logits, CPU_DECODE_OPTIONS)
    np.testing.assert_allclose(decode(p, tokens), plain, atol=1e-5)
    long_sum = lambda x: jnp.max(x, axis=-1)
    x = jnp.ones((64, 4096))
    hlo = {name: jax.jit(long_sum, compiler_options=o).lower(x).compile().as_text()
           for name, o in (("train", CPU_OPTIONS), ("decode", CPU_DECODE_OPTIONS))}
    assert "reduce-window" in hlo["train"] and "reduce-window" not in hlo["decode"]

    unknown = {"xla_cpu_no_such_option_in_any_version": ""}
    assert not _options_supported(tuple(unknown.items()))
    np.testing.assert_allclose(jit_with_cpu_options(logits, unknown)(p, tokens), plain, atol=1e-5)
