"""Speed of a GRPO iteration, minirlhf against Hugging Face TRL's GRPOTrainer, in completions/s.

    python benchmarks/bench_grpo.py                  # the stated config: ~1 min on 2 CPU cores
    python benchmarks/bench_grpo.py --skip-trl       # minirlhf only (no torch needed)
    python benchmarks/bench_grpo.py --json out.json  # also write the figures as JSON

One GRPO iteration is the whole of what `minirlhf.grpo.train_grpo` does per iteration:
draw B prompts, sample G completions of each at temperature 1, score them (the policy's
and the frozen reference's log-probs of every completion token, since beta > 0, and a
reward computed by a Python function on the decoded text), form the group advantages and
take M gradient steps (one epoch of M minibatches). Completions/s = B*G divided by the
wall time of one iteration.

The stated config (every number can be changed by a flag): a randomly initialised
transformer of minirlhf's default architecture -- 2 layers, d_model 128, 4 heads, MLP 4 x D
with GELU, learned positions (max_len 128), tied embeddings -- over the arithmetic task's
character vocabulary (34 tokens); B = 8 prompts from `make_task("arithmetic").prompts`,
G = 8 completions each, N = 48 tokens per completion, M = 2 gradient steps, beta 0.04,
clip 0.2, Adam at lr 1e-4 with gradient clipping at 1.0.

1. minirlhf: `grpo.make_iteration` under `jax.jit` with the state donated, called as
   `train_grpo` calls it (prompts drawn and encoded on the host, the metrics read back),
   on one XLA CPU device by default (--cpu-devices; one device is how `train_grpo` runs
   unless JAX_NUM_CPU_DEVICES is set). `truncation="penalty"` with a penalty of 0, so that
   every completion (all are cut at N tokens, see below) counts in the loss, as in TRL.
2. TRL: `trl.GRPOTrainer` on `transformers.GPT2LMHeadModel` of the same architecture and
   parameter count (benchmarks/baselines/trl_grpo.py), on the CPU in float32, one
   iteration being `steps_per_generation = M` optimiser steps of B*G/M completions; its
   time is that of its M steps (`on_step_begin` to `on_step_end`). loss_type "grpo"
   (minirlhf's "sequence_mean"), group-scaled advantages, no gradient checkpointing.

Same work on both sides: the same B, G, N, M, beta, clip, learning rate, temperature 1, and
the same reward function on text (the task's verifier plus the share of digits in the
completion, so that rewards differ within a group and the updates are not all zero). Every
completion is exactly N tokens long on both sides: TRL is given `min_new_tokens = N` (EOS
is masked until then); minirlhf's `generate` has no such option, so its random model is
initialised never to pick EOS (`suppress_eos`). The script counts the completion tokens of
every timed iteration on both sides and stops if they are not B*G*N.

Timing: minirlhf's iteration is compiled and run twice before the timed rounds, TRL runs
--warmup iterations first (its first steps allocate and start thread pools). Each of
--rounds rounds then runs --iterations iterations of minirlhf and then as many of TRL in
the same process (minirlhf's runs from a TrainerCallback between TRL's steps, outside
TRL's timed steps), so a change in the machine's load hits both. Each of TRL's timed
iterations is run twice in a row, with torch's default thread count (one per physical
core) and with one thread, and counts at the faster of the two (--torch-threads fixes the
count instead): two threads are faster on an idle machine, one thread several times
faster when another process holds a core. minirlhf runs once, as it is, XLA choosing its
threads. Each figure is the median iteration, and the ratio is minirlhf's completions/s
over TRL's; each round's own ratio (its medians) is printed as a range.

Then, to show where minirlhf's time goes (--skip-breakdown skips it), each part of its
iteration is jitted and timed alone, with the iteration's shapes, in --rounds rounds:
generation (whose log-probs are pi_old's), the reference's scoring forward, the reward
(the host callback), and the update.

Every figure printed is measured on the machine at hand; none is typed in. Timings on a
shared machine are noisy: the load average is printed so a busy run can be recognised.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # for common and baselines.trl_grpo

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minirlhf.advantages import group_advantages  # noqa: E402
from minirlhf.envs import make_task  # noqa: E402
from minirlhf.generate import SamplingConfig, generate  # noqa: E402
from minirlhf.grpo import (GroupBatch, GRPOConfig, make_grpo_update,  # noqa: E402
                           make_iteration, make_optimizer, rule_reward)
from minirlhf.model import ModelConfig, count_params, init_model  # noqa: E402
from minirlhf.optim import TrainState  # noqa: E402
from minirlhf.parallel import (make_mesh, microbatches_at_once, replicate,  # noqa: E402
                               shard_batch)
from minirlhf.rollout import response_outputs  # noqa: E402
from minirlhf.tokenizer import EOS_ID, CharTokenizer  # noqa: E402
from common import print_load, write_figures  # noqa: E402

TASK = "arithmetic"
INSTALL_TRL = "pip install -e '.[bench]'  (torch, transformers, trl, datasets)"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="L: transformer blocks")
    p.add_argument("--d-model", type=int, default=128, help="D: model width")
    p.add_argument("--heads", type=int, default=4, help="H: attention heads")
    p.add_argument("--max-len", type=int, default=128,
                   help="the model's max_len (GPT-2's n_positions): sizes the position table")
    p.add_argument("--prompts", type=int, default=8, help="B: prompts per iteration")
    p.add_argument("--group-size", type=int, default=8, help="G: completions per prompt")
    p.add_argument("--new-tokens", type=int, default=48, help="N: tokens per completion")
    p.add_argument("--minibatches", type=int, default=2,
                   help="M: gradient steps per iteration (one epoch of M minibatches)")
    p.add_argument("--beta", type=float, default=0.04,
                   help="KL weight (> 0: both compute the reference's log-probs)")
    p.add_argument("--rounds", type=int, default=6,
                   help="timed rounds; each runs --iterations of minirlhf, then of TRL")
    p.add_argument("--iterations", type=int, default=5,
                   help="timed iterations of each implementation per round")
    p.add_argument("--warmup", type=int, default=2,
                   help="TRL iterations run before the timed rounds (not reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-devices", type=int, default=1,
                   help="XLA devices the CPU is split into for minirlhf (jax_num_cpu_devices); "
                        "the prompts are split over them")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch's intra-op threads for TRL; default: each TRL iteration is "
                        "run with torch's own (one per physical core) and with 1, and counts "
                        "at the faster")
    p.add_argument("--skip-breakdown", action="store_true",
                   help="skip timing each part of minirlhf's iteration alone")
    p.add_argument("--skip-trl", action="store_true", help="skip the TRL baseline")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("layers", "d_model", "heads", "max_len", "prompts", "group_size",
                 "new_tokens", "minibatches", "rounds", "iterations", "warmup", "cpu_devices",
                 "torch_threads"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, "
                    f"got {getattr(args, name)}")
    if args.group_size < 2:
        p.error(f"--group-size must be >= 2, got {args.group_size}")
    if not args.beta > 0:
        p.error(f"--beta must be > 0 (the reference's log-probs are part of the work), "
                f"got {args.beta}")
    rows = args.prompts * args.group_size
    if rows % args.minibatches or (rows // args.minibatches) % args.group_size:
        p.error(f"B x G = {rows} completions must split into --minibatches "
                f"{args.minibatches} steps of whole groups of {args.group_size} (TRL needs "
                "whole groups in a step)")
    if args.prompts % args.cpu_devices:
        p.error(f"--prompts {args.prompts} must be divisible by --cpu-devices "
                f"{args.cpu_devices}")
    return args


def plural(n: int, noun: str) -> str:
    """"1 step", "2 steps"."""
    return f"{n} {noun}{'s' * (n != 1)}"


# --- the shared work -------------------------------------------------------------------------


def make_reward(task):
    """The reward both implementations compute, a plain Python function of text."""
    def verifier_and_digits(prompts: list[str], responses: list[str]) -> np.ndarray:
        """The task's verifier (1 for a right answer, plus 0.5 for the format) plus the share
        of digits in the response. A random model earns the verifier's 0 on almost every
        response, so the digits make rewards differ within each group: the advantages, and
        so the updates, are not all zero."""
        digits = [sum(c.isdigit() for c in r) / max(len(r), 1) for r in responses]
        return task.reward(prompts, responses) + np.asarray(digits, np.float32)

    return verifier_and_digits


def suppress_eos(params, eos_id: int, margin: float = 16.0):
    """The parameters of a randomly initialised model changed so that it never samples EOS.

    With tied embeddings the logit of token v is h . E_v, where h = gamma * n + b is the
    final LayerNorm of the residual stream: n has zero mean over its D features, gamma is
    1 and b is 0 at initialisation. Setting E_eos to all -1 and b to all margin / D makes
    EOS's logit -sum(gamma * n) - margin = -margin (exactly, at initialisation), while
    every other logit moves by margin / D * sum(E_v), about 0.03 for margin 16 and D 128
    (E_v ~ N(0, 0.02)). EOS then has probability below 1e-8 per token: every completion runs to
    N tokens, as TRL's `min_new_tokens = N` makes its completions. The few Adam steps of a
    benchmark move gamma by ~1e-4 each, far from closing the margin.
    """
    d_model = params["ln_f"]["bias"].shape[0]
    embed = params["embed"]["embedding"]
    embed.set_value(embed.get_value().at[eos_id].set(-1.0))
    params["ln_f"]["bias"].set_value(jnp.full((d_model,), margin / d_model, jnp.float32))
    return params


# --- minirlhf --------------------------------------------------------------------------------


def setup_minirlhf(args, task, tokenizer, reward_fn):
    """The jitted GRPO iteration, its state, and `run()`: one iteration as `train_grpo`
    runs it. Returns (run, parts, info): run() -> (seconds, response tokens); parts() ->
    the pieces of the iteration for the breakdown (`iteration_parts`)."""
    P = 1 + task.max_prompt_chars  # BOS + the longest prompt, as train_grpo pads them
    if P + args.new_tokens > args.max_len:
        sys.exit(f"prompt length {P} + --new-tokens {args.new_tokens} exceeds --max-len "
                 f"{args.max_len}")
    try:
        model_cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_len=args.max_len,
                                d_model=args.d_model, n_heads=args.heads, n_layers=args.layers)
    except ValueError as err:
        sys.exit(f"bad model config: {err}")
    cfg = GRPOConfig(seed=args.seed, prompts_per_iteration=args.prompts,
                     group_size=args.group_size, max_new_tokens=args.new_tokens,
                     beta=args.beta, update_epochs=1, num_minibatches=args.minibatches,
                     # Every completion is cut at N (no EOS): keep them all in the loss, as
                     # TRL does (mask_truncated_completions=False), unpenalised.
                     truncation="penalty", truncation_penalty=0.0)
    graphdef, params = init_model(model_cfg, jax.random.key(args.seed))
    params = suppress_eos(params, EOS_ID)
    ref_params = jax.tree.map(jnp.copy, params)  # the reference: the policy at the start
    optimizer = make_optimizer(cfg)
    reward = rule_reward(reward_fn, tokenizer)
    mesh = make_mesh()
    state = replicate(TrainState(params=params, opt_state=optimizer.init(params),
                                 step=jnp.asarray(0, jnp.int32)), mesh)
    ref_dev = replicate(ref_params, mesh)
    unroll = microbatches_at_once(mesh.shape["data"])  # as train_grpo builds it
    iteration = jax.jit(make_iteration(cfg, graphdef, graphdef, reward, optimizer, unroll),
                        donate_argnums=(0,))
    key = jax.random.key(args.seed)
    carry = {"state": state, "it": 0}

    def run() -> tuple[float, int]:
        """One iteration, as train_grpo's loop runs it, from drawing the prompts to reading
        the metrics back (which waits for the iteration)."""
        it = carry["it"]
        start = time.perf_counter()
        prompts = task.prompts(args.prompts, seed=args.seed * 1_000_003 + it + 1)
        prompt, prompt_mask = tokenizer.encode_batch(prompts, bos=True, padding="left",
                                                     length=P)
        batch = shard_batch((prompt, prompt_mask), mesh)
        # The state is donated: always carry on with the returned one.
        carry["state"], metrics, _, mask, _ = iteration(carry["state"], ref_dev, None, *batch,
                                                        jax.random.fold_in(key, it))
        record = {k: float(v) for k, v in metrics.items()}
        seconds = time.perf_counter() - start
        carry["it"] += 1
        if reward.errors:
            raise RuntimeError(f"the reward failed in minirlhf's iteration: {reward.errors[0]}")
        if not all(np.isfinite(v) for v in record.values()):
            raise RuntimeError(f"minirlhf's iteration gave non-finite metrics: {record}")
        return seconds, int(np.sum(mask))

    def parts():
        return iteration_parts(args, cfg, graphdef, carry["state"].params, ref_dev, reward,
                               optimizer, task, tokenizer, mesh, P, unroll)

    info = {"params": count_params(params), "devices": mesh.shape["data"], "prompt_len": P,
            "vocab": tokenizer.vocab_size}
    return run, parts, info


def iteration_parts(args, cfg, graphdef, params, ref_params, reward, optimizer, task,
                    tokenizer, mesh, P, unroll) -> dict:
    """Each part of `make_iteration`'s body jitted alone, with the iteration's shapes, for
    the breakdown: {name: fn() that runs the part once and blocks}. The update's state is
    not donated: every call starts from the same parameters."""
    G = cfg.group_size
    prompts = task.prompts(args.prompts, seed=args.seed + 99)
    prompt, prompt_mask = tokenizer.encode_batch(prompts, bos=True, padding="left", length=P)
    prompt, prompt_mask = shard_batch((np.repeat(prompt, G, 0), np.repeat(prompt_mask, G, 0)),
                                      mesh)
    key = jax.random.key(args.seed + 99)
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens)
    # jax.jit around each call, as the iteration's own jit compiles them (generate's CPU
    # compile options apply only to a top-level call, not inside the iteration).
    gen_fn = jax.jit(lambda p, pr, m, k: generate(graphdef, p, pr, m, k, sampling))
    gen = jax.block_until_ready(gen_fn(params, prompt, prompt_mask, key))

    @jax.jit
    def score(ref_params, prompt, prompt_mask, tokens, mask):
        return response_outputs(graphdef, ref_params, prompt, prompt_mask, tokens, mask).logprobs

    reward_fn = jax.jit(lambda pr, m, t, tm: reward.fn(None, pr, m, t, tm))
    ref_logprobs = jax.block_until_ready(score(ref_params, prompt, prompt_mask, gen.tokens,
                                               gen.mask))
    # Through the host, then split like the rest of the batch: the callback's result sits on
    # one device, which eager ops on several devices do not accept.
    rewards = np.asarray(reward_fn(prompt, prompt_mask, gen.tokens, gen.mask))
    adv = shard_batch(np.asarray(group_advantages(rewards.reshape(-1, G), cfg.advantage,
                                                  cfg.std_floor)).reshape(-1), mesh)
    batch = GroupBatch(prompt=prompt, prompt_mask=prompt_mask, tokens=gen.tokens,
                       mask=gen.mask, logprobs=gen.logprobs, ref_logprobs=ref_logprobs,
                       advantages=adv, loss_mask=gen.mask)
    update = jax.jit(make_grpo_update(cfg, graphdef, optimizer, unroll))
    state = TrainState(params=params, opt_state=optimizer.init(params),
                       step=jnp.asarray(0, jnp.int32))
    return {
        "generation": lambda: jax.block_until_ready(gen_fn(params, prompt, prompt_mask, key)),
        "scoring forward (reference)": lambda: jax.block_until_ready(
            score(ref_params, prompt, prompt_mask, gen.tokens, gen.mask)),
        "reward (host callback)": lambda: jax.block_until_ready(
            reward_fn(prompt, prompt_mask, gen.tokens, gen.mask)),
        f"update ({plural(cfg.num_minibatches, 'gradient step')})": lambda: jax.block_until_ready(
            update(state, batch, key)),
    }


def bench_breakdown(parts: dict, repeats: int) -> dict:
    """Median seconds of each part over `repeats` rounds (each part compiled first)."""
    for fn in parts.values():
        fn()  # compile
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# --- the rounds ------------------------------------------------------------------------------


def load_trl():
    """The TRL baseline's (TRLGRPOSetup, run_grpo), or None and why it cannot be imported."""
    try:
        from baselines.trl_grpo import TRLGRPOSetup, run_grpo
    except ImportError as err:  # torch, transformers, trl or datasets missing
        return None, str(err)
    return (TRLGRPOSetup, run_grpo), None


def bench(args, trl) -> dict:
    """Compile minirlhf's iteration, then the alternating rounds (TRL's only if `trl`, the
    pair `load_trl` returns, is given), then the breakdown (unless --skip-breakdown)."""
    task = make_task(TASK)
    tokenizer = CharTokenizer(task.alphabet)
    reward_fn = make_reward(task)
    run, parts, info = setup_minirlhf(args, task, tokenizer, reward_fn)
    completions = args.prompts * args.group_size
    expected_tokens = completions * args.new_tokens

    start = time.perf_counter()
    run()  # compiles the whole iteration: one XLA program
    first_s = time.perf_counter() - start
    run()  # a second call, in case anything about the returned state recompiles
    print(f"      minirlhf's iteration compiled and run in {first_s:.1f} s "
          f"({info['params']:,} parameters, {info['devices']} XLA device(s))", flush=True)

    jax_rounds: list[list[float]] = []
    jax_tokens: list[int] = []

    def jax_round(r: int) -> None:
        """Round r of minirlhf: --iterations timed iterations."""
        times = []
        for _ in range(args.iterations):
            seconds, tokens = run()
            times.append(seconds)
            jax_tokens.append(tokens)
        jax_rounds.append(times)

    trl_res = None
    if trl is None:
        for r in range(args.rounds):
            jax_round(r)
    else:
        TRLGRPOSetup, run_grpo = trl
        setup = TRLGRPOSetup(prompts_per_iteration=args.prompts, group_size=args.group_size,
                             max_new_tokens=args.new_tokens, num_minibatches=args.minibatches,
                             beta=args.beta, vocab_size=tokenizer.vocab_size,
                             max_len=args.max_len, d_model=args.d_model, n_heads=args.heads,
                             n_layers=args.layers, seed=args.seed)
        # Fresh prompts for every iteration: the warm-up, and each timed one run twice (at
        # two thread counts).
        iterations = args.warmup + 2 * args.rounds * args.iterations
        prompts = task.prompts(args.prompts * iterations, seed=args.seed + 1)
        start = time.perf_counter()
        # TRL's warm-up, then its rounds, minirlhf's round r running just before TRL's
        # round r (from TRL's callback, outside its timed steps).
        trl_res = run_grpo(setup, task.alphabet, prompts, reward_fn, args.warmup, args.rounds,
                           args.iterations, between_rounds=jax_round,
                           torch_threads=args.torch_threads)
        trl_res["wall_s"] = time.perf_counter() - start
        if trl_res["params"] != info["params"]:
            raise RuntimeError(f"the models differ in size: minirlhf {info['params']:,} "
                               f"parameters, TRL's GPT-2 {trl_res['params']:,}")
        if any(t != expected_tokens for t in trl_res["completion_tokens"]):
            raise RuntimeError(f"TRL's completions were not all {args.new_tokens} tokens long: "
                               f"{trl_res['completion_tokens']} tokens per iteration")
    if any(t != expected_tokens for t in jax_tokens):
        raise RuntimeError(f"minirlhf's completions were not all {args.new_tokens} tokens long "
                           f"(an EOS was sampled): {jax_tokens} tokens per iteration")

    jax_s = statistics.median(t for times in jax_rounds for t in times)
    res = {"minirlhf": {"iteration_s": jax_s, "completions_per_s": completions / jax_s,
                        "tokens_per_s": expected_tokens / jax_s, "first_call_s": first_s,
                        "round_s": jax_rounds, **info},
           "completions_per_iteration": completions, "tokens_per_iteration": expected_tokens}
    if trl_res is not None:
        trl_s = statistics.median(trl_res["timed_iteration_s"])
        # Each round's own ratio: its two medians, measured within seconds of each other.
        per_round = [(statistics.median(t) / statistics.median(j))
                     for j, t in zip(jax_rounds, trl_res["round_s"])]
        res["trl"] = {**trl_res, "iteration_s": trl_s, "completions_per_s": completions / trl_s,
                      "tokens_per_s": expected_tokens / trl_s}
        res["ratio_minirlhf_over_trl"] = trl_s / jax_s
        res["round_ratios"] = per_round
    if not args.skip_breakdown:
        print("      timing each part of minirlhf's iteration alone ...", flush=True)
        res["minirlhf"]["parts_s"] = bench_breakdown(parts(), args.rounds)
    return res


# --- report ----------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Before any JAX operation: the CPU's device count is fixed when the backend starts.
    try:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    except RuntimeError as err:  # main() called in a process that has already used JAX
        sys.exit(f"--cpu-devices {args.cpu_devices}: this process has already started JAX "
                 f"({err}); run bench_grpo.py in a fresh process")
    config = (f"L={args.layers} D={args.d_model} H={args.heads} max_len={args.max_len} "
              f"task={TASK} B={args.prompts} G={args.group_size} N={args.new_tokens} "
              f"M={args.minibatches} beta={args.beta}")
    machine = (f"{platform.machine()} {os.cpu_count()} CPU cores, jax {jax.__version__} on "
               f"{jax.default_backend()}, python {platform.python_version()}")
    print(f"config:  {config}")
    print(f"machine: {machine}")
    load_before = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_before:.2f}", flush=True)
    trl, trl_missing = (None, None) if args.skip_trl else load_trl()
    print(f"\n{args.rounds} rounds of {args.iterations} minirlhf GRPO iterations"
          f"{'' if trl is None else ', then as many of TRL'} "
          f"({args.prompts * args.group_size} completions of {args.new_tokens} tokens "
          f"each) ...", flush=True)
    res = bench(args, trl)
    res["trl_missing"] = trl_missing

    jx, trl = res["minirlhf"], res.get("trl")
    width_ms = lambda s: f"{s * 1e3:,.0f} ms"
    rows = [("config", config),
            ("completions per iteration",
             f"{res['completions_per_iteration']} ({args.prompts} prompts x {args.group_size}), "
             f"every one {args.new_tokens} tokens long (checked"
             f"{'' if trl is None else ', on both sides'})")]
    if trl is not None:
        rows.append(("parameters: minirlhf / TRL's GPT-2",
                     f"{jx['params']:,} / {trl['params']:,}"))
    rows += [("minirlhf iteration time", f"{width_ms(jx['iteration_s'])}  (median of "
              f"{args.rounds} x {args.iterations}; {jx['devices']} XLA device(s))"),
             ("minirlhf completions/s", f"{jx['completions_per_s']:,.0f}"),
             ("minirlhf response tokens/s", f"{jx['tokens_per_s']:,.0f}")]
    if trl is not None:
        v = trl["versions"]
        rows += [("TRL iteration time", f"{width_ms(trl['iteration_s'])}  "
                  f"({plural(args.minibatches, 'optimiser step')}; trl {v['trl']}, "
                  f"transformers {v['transformers']}, "
                  f"torch {v['torch']}, {trl['attention']} attention)"),
                 ("TRL completions/s", f"{trl['completions_per_s']:,.0f}"),
                 ("TRL response tokens/s", f"{trl['tokens_per_s']:,.0f}"),
                 ("ratio minirlhf / TRL (completions/s)",
                  f"{res['ratio_minirlhf_over_trl']:.2f}x  (rounds: "
                  f"{min(res['round_ratios']):.2f}-{max(res['round_ratios']):.2f}x)  "
                  f"aim >= 2x")]
    else:
        why = "skipped (--skip-trl)" if args.skip_trl else \
            f"not installed ({trl_missing}); install it with: {INSTALL_TRL}"
        rows.append(("TRL baseline", why))
    rows.append(("minirlhf first call (compile + run)", f"{jx['first_call_s']:.1f} s"))
    if trl is not None:
        rows.append(("TRL warm-up iterations", ", ".join(width_ms(s) for s in trl["warmup_s"])))
        counts = list(trl["tries"][0])
        if len(counts) > 1:  # each iteration tried at two thread counts
            wins = {n: sum(min(t, key=t.get) == n for t in trl["tries"]) for n in counts}
            rows.append(("TRL torch threads: median iteration",
                         ", ".join(f"{plural(n, 'thread')} "
                                   f"{width_ms(statistics.median(t[n] for t in trl['tries']))}"
                                   f" (faster in {wins[n]} of {len(trl['tries'])})"
                                   for n in counts)))
    if "parts_s" in jx:
        for name, s in jx["parts_s"].items():
            rows.append((f"  minirlhf part alone: {name}", width_ms(s)))
        rows.append(("  parts summed / whole iteration",
                     f"{width_ms(sum(jx['parts_s'].values()))} / "
                     f"{width_ms(jx['iteration_s'])}"))
    width = max(len(name) for name, _ in rows)
    print("\n" + "-" * (width + 60))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 60))

    load_after = os.getloadavg()[0]
    print_load(load_before, load_after)
    figures = {"config": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items()},
               "machine": machine, "load_average": [load_before, load_after], **res}
    write_figures(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
