"""Speed of an RLHF rollout, with and without a KV cache, in response tokens/s.

    python benchmarks/bench_rlhf.py                           # the rollout: minutes on 2 cores
    python benchmarks/bench_rlhf.py --pipeline --preset tiny  # also the whole recipe, per stage
    python benchmarks/bench_rlhf.py --json out.json           # also write the figures as JSON

Measures, for the default model (`minirlhf.model.ModelConfig` defaults: 2 layers, D 128,
4 heads, max_len 128, the reviews task's character vocabulary), B = 64 prompts of the
reviews task left-padded to 1 + task.max_prompt_chars tokens, and N = 64 new tokens:

1. The rollout of PPO's experience exactly as `minirlhf.rollout.rollout` does it, jitted as
   the RLHF iteration jits it: KV-cached sampling in chunked `lax.scan`s
   (`minirlhf.generate.generate`), one full forward of the policy (value head included) and
   one of the frozen reference over prompt + response, the reward model's score, and the
   KL-shaped rewards.
2. The same rollout without a KV cache: `tests.references.naive_generate`, which re-runs a
   *jitted* full forward over the whole sequence for every new token from a Python loop
   (bench_lm.py's naive baseline), then the same scoring forwards (policy, reference,
   reward model, shaped rewards) in one jitted function. Both paths sample at temperature 1
   with the same key; the script checks that they produce the same tokens and the same
   experience (log-probs, values, scores, rewards), so they do the same work.
3. For where the time goes: the KV-cached generation alone (`generate`, as the rollout
   starts with it) against the uncached generation alone, and the uncached path's scoring.

Response tokens/s = the sum of the response mask (tokens up to and including each row's
EOS) divided by the wall time of one rollout; the B*N slots are reported too (both paths
still run all N steps when rows stop early). Each path is compiled and run once before the
timed rounds; the rounds alternate (cached, uncached, cached, ...) so a change in the
machine's load hits both, and the median round is reported. The models are randomly
initialised: throughput does not depend on what they have learned, only on the tokens they
sample (the count of response tokens), which the script reports.

With --pipeline, the script also runs `minirlhf.pipeline.run_pipeline(preset(--preset))`
into a temporary folder and prints the seconds of each stage and the total wall time.

Every figure printed is measured on the machine at hand; none is typed in. Timings on a
shared machine are noisy: the load average is printed so a busy run can be recognised.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.references (the naive generation reference)
sys.path.insert(0, str(REPO / "benchmarks"))  # for common

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minirlhf.envs import make_task  # noqa: E402
from minirlhf.generate import SamplingConfig, generate, with_response  # noqa: E402
from minirlhf.model import ModelConfig, count_params, forward, init_model  # noqa: E402
from minirlhf.pipeline import PRESETS, preset, run_pipeline  # noqa: E402
from minirlhf.reward_model import make_reward_fn  # noqa: E402
from minirlhf.rlhf import RLHFConfig  # noqa: E402
from minirlhf.rollout import (LMRollout, kl_shaped_rewards, response_outputs,  # noqa: E402
                              rollout)
from minirlhf.tokenizer import CharTokenizer  # noqa: E402
from tests.references import naive_generate  # noqa: E402
from common import finish  # noqa: E402

TASK = "reviews"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--layers", type=int, default=ModelConfig.n_layers, help="L: transformer blocks")
    p.add_argument("--d-model", type=int, default=ModelConfig.d_model, help="D: model width")
    p.add_argument("--heads", type=int, default=ModelConfig.n_heads, help="H: attention heads")
    p.add_argument("--max-len", type=int, default=ModelConfig.max_len,
                   help="the models' max_len (prompt + response must fit)")
    p.add_argument("--batch", type=int, default=64, help="B: prompts per rollout")
    p.add_argument("--new-tokens", type=int, default=64, help="N: max_new_tokens of the rollout")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed rounds (one rollout of each path per round); the median is "
                        "reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-rollout", action="store_true",
                   help="skip the rollout benchmark (with --pipeline: the pipeline only)")
    p.add_argument("--pipeline", action="store_true",
                   help="also run minirlhf.pipeline.run_pipeline and report its stage times")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="the pipeline preset (with --pipeline); 'default' takes minutes")
    p.add_argument("--pipeline-dir", type=Path, default=None, metavar="DIR",
                   help="run the pipeline into this new (or empty) folder and keep it; "
                        "default: a temporary folder, deleted afterwards")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("layers", "d_model", "heads", "max_len", "batch", "new_tokens", "repeats"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, "
                    f"got {getattr(args, name)}")
    if args.skip_rollout and not args.pipeline:
        p.error("--skip-rollout leaves nothing to run without --pipeline")
    if args.pipeline_dir is not None and args.pipeline_dir.exists() and \
            any(args.pipeline_dir.iterdir()):
        # run_pipeline resumes from what it finds there: its stage times would be meaningless.
        p.error(f"--pipeline-dir {args.pipeline_dir} is not empty (the pipeline would resume "
                "from it instead of running)")
    return args


# --- the rollout, with and without a KV cache ----------------------------------------------


def setup_rollout(args):
    """Models, prompts and the two rollout paths.

    Returns (kv, naive, kv_generate, info): kv() and naive() each run one complete rollout,
    block until it is done and return (LMRollout, {stage: seconds}); kv_generate() runs only
    the KV-cached generation that kv() starts with and returns (Generation, seconds).
    """
    task = make_task(TASK)
    tokenizer = CharTokenizer(task.alphabet)
    P = 1 + task.max_prompt_chars  # BOS + the longest prompt, as rlhf.py pads them
    if P + args.new_tokens > args.max_len:
        sys.exit(f"prompt length {P} + --new-tokens {args.new_tokens} exceeds --max-len "
                 f"{args.max_len}")
    try:
        base = ModelConfig(vocab_size=tokenizer.vocab_size, max_len=args.max_len,
                           d_model=args.d_model, n_heads=args.heads, n_layers=args.layers)
    except ValueError as err:
        sys.exit(f"bad model config: {err}")
    key = jax.random.key(args.seed)
    # The policy has PPO's value head. The reference is the same transformer without it,
    # initialised from the same key (so it has the policy's weights, as the SFT model has
    # at PPO's start); the reward model has a scalar head. Random weights are fine: the
    # time of a rollout depends only on the shapes and on how many tokens are sampled.
    graphdef, params = init_model(dataclasses.replace(base, value_head=True), key)
    ref_graphdef, ref_params = init_model(base, key)
    rm_graphdef, rm_params = init_model(dataclasses.replace(base, scalar_head=True),
                                        jax.random.fold_in(key, 1))
    rlhf_cfg = RLHFConfig()
    cfg = dataclasses.replace(rlhf_cfg.rollout, max_new_tokens=args.new_tokens)
    beta = rlhf_cfg.beta
    normalization = {"mean": 0.0, "std": 1.0}

    prompts = task.prompts(args.batch, seed=args.seed + 1)
    prompt, prompt_mask = map(jnp.asarray, tokenizer.encode_batch(
        prompts, bos=True, padding="left", length=P))
    sample_key = jax.random.key(args.seed + 2)

    # KV cache: minirlhf.rollout.rollout, jitted whole as the RLHF iteration jits it.
    @jax.jit
    def kv_rollout(params, ref_params, rm_params, prompt, prompt_mask, key):
        reward_fn = make_reward_fn(rm_graphdef, rm_params, normalization)
        return rollout(graphdef, params, ref_graphdef, ref_params, reward_fn, prompt,
                       prompt_mask, key, cfg, beta)

    # No KV cache: generation re-runs a jitted full forward over the whole sequence per
    # token (compiled once per sequence length), then the scoring part of `rollout`.
    full_forward = jax.jit(lambda p, t, m: forward(graphdef, p, t, m).logits)
    sampling = SamplingConfig(max_new_tokens=args.new_tokens)  # rollout's: temperature 1

    @jax.jit
    def score(params, ref_params, rm_params, prompt, prompt_mask, gen):
        """What `rollout` does after `generate`, step for step."""
        reward_fn = make_reward_fn(rm_graphdef, rm_params, normalization)
        pol = response_outputs(graphdef, params, prompt, prompt_mask, gen.tokens, gen.mask)
        values = jnp.zeros_like(pol.logprobs) if pol.values is None else pol.values
        ref = response_outputs(ref_graphdef, ref_params, prompt, prompt_mask, gen.tokens,
                               gen.mask)
        truncated = ~gen.finished
        score = reward_fn(*with_response(prompt, prompt_mask, gen))
        penalised = score - cfg.missing_eos_penalty * truncated.astype(score.dtype)
        rewards, kl = kl_shaped_rewards(pol.logprobs, ref.logprobs, penalised, gen.mask, beta,
                                        cfg.kl_estimator)
        return LMRollout(prompt=prompt, prompt_mask=prompt_mask, tokens=gen.tokens,
                         mask=gen.mask, logprobs=pol.logprobs, ref_logprobs=ref.logprobs,
                         values=values, score=score, truncated=truncated, kl=kl,
                         rewards=rewards)

    def kv():
        start = time.perf_counter()
        ro = jax.block_until_ready(kv_rollout(params, ref_params, rm_params, prompt,
                                              prompt_mask, sample_key))
        return ro, {"total": time.perf_counter() - start}

    def kv_generate():
        start = time.perf_counter()
        gen = jax.block_until_ready(generate(graphdef, params, prompt, prompt_mask, sample_key,
                                             sampling))
        return gen, time.perf_counter() - start

    def naive():
        start = time.perf_counter()
        gen = jax.block_until_ready(naive_generate(graphdef, params, prompt, prompt_mask,
                                                   sample_key, sampling,
                                                   forward_fn=full_forward))
        mid = time.perf_counter()
        ro = jax.block_until_ready(score(params, ref_params, rm_params, prompt, prompt_mask,
                                         gen))
        end = time.perf_counter()
        return ro, {"total": end - start, "generate": mid - start, "score": end - mid}

    info = {"prompt_len": P, "vocab": tokenizer.vocab_size, "beta": beta,
            "kl_estimator": cfg.kl_estimator, "missing_eos_penalty": cfg.missing_eos_penalty,
            "policy_params": count_params(params), "ref_params": count_params(ref_params),
            "rm_params": count_params(rm_params)}
    return kv, naive, kv_generate, info


def check_same(kv_ro: LMRollout, naive_ro: LMRollout) -> dict:
    """Both paths must have sampled the same tokens and computed the same experience."""
    if not (np.array_equal(kv_ro.tokens, naive_ro.tokens)
            and np.array_equal(kv_ro.mask, naive_ro.mask)):
        rows = int(np.sum(np.any(np.asarray(kv_ro.tokens) != np.asarray(naive_ro.tokens), 1)))
        raise AssertionError(f"the KV-cached and the uncached rollout sampled different tokens "
                             f"with the same key ({rows} of {kv_ro.tokens.shape[0]} rows differ)")
    diffs = {}
    for name in ("logprobs", "ref_logprobs", "values", "score", "kl", "rewards"):
        a, b = np.asarray(getattr(kv_ro, name)), np.asarray(getattr(naive_ro, name))
        diffs[name] = float(np.max(np.abs(a - b)))
        if not np.allclose(a, b, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"the rollouts' {name} differ (max |diff| {diffs[name]:.2e})")
    if not np.array_equal(kv_ro.truncated, naive_ro.truncated):
        raise AssertionError("the rollouts' truncated flags differ")
    return diffs


def bench_rollout(args) -> dict:
    kv, naive, kv_generate, info = setup_rollout(args)
    start = time.perf_counter()
    kv_ro, _ = kv()  # compiles generate's scan and the scoring forwards, as one program
    kv_first_s = time.perf_counter() - start
    start = time.perf_counter()
    naive_ro, _ = naive()  # compiles the full forward once per sequence length, and scoring
    naive_first_s = time.perf_counter() - start
    diffs = check_same(kv_ro, naive_ro)
    if not np.array_equal(kv_generate()[0].tokens, kv_ro.tokens):  # compiles generate alone
        raise AssertionError("generate alone sampled other tokens than inside the rollout")

    rounds = {"kv": [], "naive": []}
    for _ in range(args.repeats):  # alternate, so a change in load hits both paths
        rounds["kv"].append({**kv()[1], "generate": kv_generate()[1]})
        rounds["naive"].append(naive()[1])
    tokens = int(np.sum(kv_ro.mask))
    kv_s = statistics.median(r["total"] for r in rounds["kv"])
    naive_s = statistics.median(r["total"] for r in rounds["naive"])
    kv_tps, naive_tps = tokens / kv_s, tokens / naive_s
    kv_gen_s = statistics.median(r["generate"] for r in rounds["kv"])
    naive_gen_s = statistics.median(r["generate"] for r in rounds["naive"])
    return {
        "response_tokens": tokens, "slots": args.batch * args.new_tokens,
        "finished_rows": int(np.sum(~np.asarray(kv_ro.truncated))),
        "kv_tokens_per_s": kv_tps, "naive_tokens_per_s": naive_tps,
        "ratio_kv_over_naive": kv_tps / naive_tps,
        "kv_s": kv_s, "naive_s": naive_s,
        "kv_generate_s": kv_gen_s, "naive_generate_s": naive_gen_s,
        "ratio_generate_kv_over_naive": naive_gen_s / kv_gen_s,
        "naive_score_s": statistics.median(r["score"] for r in rounds["naive"]),
        "kv_rounds_s": [r["total"] for r in rounds["kv"]],
        "naive_rounds_s": [r["total"] for r in rounds["naive"]],
        "kv_first_call_s": kv_first_s, "naive_first_call_s": naive_first_s,
        "max_abs_diff": diffs, **info,
    }


# --- the whole pipeline --------------------------------------------------------------------


def bench_pipeline(args) -> dict:
    cfg = preset(args.preset)
    if args.pipeline_dir is None:
        with tempfile.TemporaryDirectory(prefix="bench_rlhf_") as tmp:
            start = time.perf_counter()
            summary = run_pipeline(cfg, tmp)
            wall_s = time.perf_counter() - start
    else:
        start = time.perf_counter()
        summary = run_pipeline(cfg, args.pipeline_dir)
        wall_s = time.perf_counter() - start
    return {"preset": args.preset, "seconds": dict(summary["seconds"]), "wall_s": wall_s}


# --- report --------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = (f"L={args.layers} D={args.d_model} H={args.heads} max_len={args.max_len} "
              f"B={args.batch} N={args.new_tokens} task={TASK}")
    machine = (f"{platform.machine()} {os.cpu_count()} CPU cores, jax {jax.__version__} on "
               f"{jax.default_backend()}, python {platform.python_version()}")
    print(f"config:  {config}")
    print(f"machine: {machine}")
    load_before = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_before:.2f}", flush=True)
    figures = {"config": {k: (str(v) if isinstance(v, Path) else v)
                          for k, v in vars(args).items()},
               "machine": machine}
    steps = (0 if args.skip_rollout else 1) + (1 if args.pipeline else 0)
    step = 0

    if not args.skip_rollout:
        step += 1
        print(f"\n[{step}/{steps}] rollout of {args.new_tokens} tokens for {args.batch} prompts: "
              f"KV cache vs none, alternating ...", flush=True)
        ro = bench_rollout(args)
        figures["rollout"] = ro
        print(f"      same tokens and experience on both paths: True (max |diff| "
              f"{max(ro['max_abs_diff'].values()):.1e})", flush=True)
        rows = [
            ("config", config),
            ("prompt length P (left-padded)", str(ro["prompt_len"])),
            ("params: policy / reference / RM",
             f"{ro['policy_params']:,} / {ro['ref_params']:,} / {ro['rm_params']:,}"),
            ("response tokens / B*N slots",
             f"{ro['response_tokens']} / {ro['slots']} ({ro['finished_rows']} of "
             f"{args.batch} rows ended with EOS)"),
            ("KV-cached rollout tokens/s", f"{ro['kv_tokens_per_s']:,.0f}"),
            ("no-cache rollout tokens/s", f"{ro['naive_tokens_per_s']:,.0f}"),
            ("ratio KV / no cache (rollout)", f"{ro['ratio_kv_over_naive']:.1f}x"),
            ("KV-cached rollout time", f"{ro['kv_s'] * 1e3:,.0f} ms (its generation "
             f"alone: {ro['kv_generate_s'] * 1e3:,.0f} ms)"),
            ("no-cache rollout time", f"{ro['naive_s'] * 1e3:,.0f} ms "
             f"(generation {ro['naive_generate_s'] * 1e3:,.0f} ms + scoring "
             f"{ro['naive_score_s'] * 1e3:,.0f} ms)"),
            ("ratio KV / no cache (generation alone)",
             f"{ro['ratio_generate_kv_over_naive']:.1f}x"),
            ("first call (compile + run) KV / no cache",
             f"{ro['kv_first_call_s']:.1f} s / {ro['naive_first_call_s']:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        print("\n" + "-" * (width + 50))
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        print("-" * (width + 50), flush=True)

    if args.pipeline:
        step += 1
        print(f"\n[{step}/{steps}] the whole pipeline, preset {args.preset!r} ...", flush=True)
        pipe = bench_pipeline(args)
        figures["pipeline"] = pipe
        rows = [(f"stage {name}", f"{s:.1f} s") for name, s in pipe["seconds"].items()]
        rows.append(("stages, summed", f"{sum(pipe['seconds'].values()):.1f} s"))
        rows.append(("total wall time (incl. sampling, summary)", f"{pipe['wall_s']:.1f} s"))
        width = max(len(name) for name, _ in rows)
        print(f"\npipeline preset {args.preset!r}:")
        print("-" * (width + 20))
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        print("-" * (width + 20))

    return finish(load_before, figures, args.json)


if __name__ == "__main__":
    main()
