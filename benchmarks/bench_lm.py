"""Speed of the language-model core: training and generation throughput, in tokens/s.

    python benchmarks/bench_lm.py                  # the stated config: minutes on 2 CPU cores
    python benchmarks/bench_lm.py --skip-torch     # without the PyTorch baseline
    python benchmarks/bench_lm.py --json out.json  # also write the figures as JSON
    python benchmarks/bench_lm.py --cpu-devices 1  # everything on one XLA device

On CPU the script first splits the processor into one XLA device per core
(`jax_num_cpu_devices`, --cpu-devices), so that data-parallel code can use every core:
XLA:CPU runs a decoding step's small matmuls on one core, whatever the thread pool holds.
Each figure below is measured both on all devices and on one, in the same rounds.

Measures, for one small config (2 layers, D 128, 4 heads, T 64, B 64, V 45 -- the reviews
task's character vocabulary -- learned positions, tied embeddings, MLP ratio 4, GELU):

1. Training: the real step of minirlhf.pretrain (forward, next-token loss, backward, clipped
   AdamW), wrapped by minirlhf.parallel.data_parallel exactly as `train_lm` runs it, on random
   tokens -- with its default gradient accumulation (512-token microbatches on CPU) over all
   devices and over one, and again over the whole batch at once, to show what the
   accumulation buys; on one device, also one microbatch at a time where it runs two side
   by side by default (`parallel.microbatches_at_once`). Compilation is timed apart; tokens/s = B * T / step time (median of
   rounds).
2. The same training step in eager PyTorch on CPU (benchmarks/baselines/torch_lm.py), if
   torch is installed, timed in rounds that alternate with the JAX rounds, and the ratio
   JAX / torch (> 1: JAX is faster per token).
3. Generation of --new-tokens tokens (48) for B prompts of 4-8 tokens: KV-cached
   `minirlhf.generate.generate` (prefill, then jitted scans over a cache that grows chunk by
   chunk, `generate.decode_chunks`), its prompts split over all devices as the RLHF
   iteration's are (and on one device, for a ratio with both on one device), against the
   naive reference
   `tests.references.naive_generate`, which re-runs a *jitted* full forward over the whole
   sequence for every new token, timed on one device and with the prompts split over all,
   each round's faster of the two counting. All are warmed up (compiled) before the timed
   rounds (--gen-repeats of them, each running every form in both placements once; each
   ratio is the median of the rounds' own ratios);
   tokens/s counts generated tokens (sum of the response mask): rows that sample EOS stop
   early (with V = 45 a random model does so about once in 45 tokens), though both paths
   still run all N steps, so this understates the per-step speed by B*N / generated, and
   the ratio is unaffected (both generate the same tokens). A greedy run of both checks
   that they produce the same tokens. On CPU `generate` is compiled with XLA options
   (`minirlhf.parallel.CPU_DECODE_OPTIONS`), so a second ratio times the naive loop with
   its forward compiled the same way: the like-for-like figure, where the first is against
   a plain `jax.jit` of the forward.
   A third ratio is against `tests.references.naive_generate_scan`, the cache-free loop
   jitted whole as `generate` is: one `lax.scan` whose every step runs a full forward over
   the fixed (B, P + N) buffer (jit needs one shape for all steps), so it pays for the
   empty slots too.

Every figure printed is measured on the machine at hand; none is typed in. Timings on a
shared machine are noisy: the load average is printed so a busy run can be recognised.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.references (the naive generation reference)
sys.path.insert(0, str(REPO / "benchmarks"))  # for baselines.torch_lm

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minirlhf.generate import SamplingConfig, generate  # noqa: E402
from minirlhf.model import ModelConfig, count_params, forward, init_model  # noqa: E402
from minirlhf.optim import (OptimConfig, init_train_state, make_optimizer,  # noqa: E402
                            num_microbatches)
from minirlhf.parallel import (CPU_DECODE_OPTIONS, check_divisible, data_parallel,  # noqa: E402
                               default_microbatch_tokens, jit_with_cpu_options, make_mesh,
                               microbatches_at_once, replicate, shard_batch, usable_cores)
from minirlhf.lm_training import LMBatch, make_train_step  # noqa: E402
from minirlhf.tokenizer import BOS_ID, PAD_ID  # noqa: E402
from tests.references import naive_generate, naive_generate_scan  # noqa: E402
from common import write_figures  # noqa: E402

VOCAB = 45  # the reviews task's character tokenizer: 3 special tokens + 42 characters
FIRST_CHAR_ID = 3  # ids below are PAD, BOS, EOS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--layers", type=int, default=2, help="L: transformer blocks")
    p.add_argument("--d-model", type=int, default=128, help="D: model width")
    p.add_argument("--heads", type=int, default=4, help="H: attention heads")
    p.add_argument("--seq", type=int, default=64, help="T: tokens per training sequence")
    p.add_argument("--batch", type=int, default=64, help="B: sequences per step / prompts")
    p.add_argument("--vocab", type=int, default=VOCAB, help="V: vocabulary size")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per repeat")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed repeats of each measurement; the median is reported")
    p.add_argument("--gen-repeats", type=int, default=7,
                   help="timed rounds of the generation comparison (each runs KV and each "
                        "naive form once in each placement); medians are reported")
    p.add_argument("--new-tokens", type=int, default=48, help="N: tokens generated per prompt")
    p.add_argument("--prompt-len", type=int, default=8, help="P: longest prompt (BOS included)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="XLA devices the CPU platform is split into (jax_num_cpu_devices); "
                        "training and KV-cached generation run data-parallel over them, 1 "
                        "measures all on one device. Default: $JAX_NUM_CPU_DEVICES if set, "
                        "else one per usable core (the most that divide --batch). On a GPU / "
                        "TPU the mesh is its devices and this only sizes the unused CPU one")
    p.add_argument("--skip-torch", action="store_true", help="skip the PyTorch baseline")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.cpu_devices is None and os.environ.get("JAX_NUM_CPU_DEVICES"):
        args.cpu_devices = int(os.environ["JAX_NUM_CPU_DEVICES"])
    elif args.cpu_devices is None and args.batch > 0:
        args.cpu_devices = max(n for n in range(1, usable_cores() + 1) if args.batch % n == 0)
    for name in ("layers", "d_model", "heads", "seq", "batch", "vocab", "steps", "repeats",
                 "gen_repeats", "new_tokens", "prompt_len", "cpu_devices"):
        if getattr(args, name) <= 0:
            flag = "--" + name.replace("_", "-")
            p.error(f"{flag} must be a positive integer, got {getattr(args, name)}")
    if args.batch % args.cpu_devices:
        p.error(f"--batch {args.batch} must be divisible by --cpu-devices {args.cpu_devices}")
    if args.seq < 2:
        p.error(f"--seq must be >= 2 (next-token targets), got {args.seq}")
    if args.vocab <= FIRST_CHAR_ID:
        p.error(f"--vocab must exceed {FIRST_CHAR_ID} (PAD, BOS, EOS + characters), "
                f"got {args.vocab}")
    return args


def timed(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of fn() (fn must block until its work is done)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# --- training ----------------------------------------------------------------------------


def setup_jax_train(model_cfg: ModelConfig, args, microbatch_tokens: int = -1,
                    n_devices: int | None = None, unroll: int | None = None):
    """Compile minirlhf's data-parallel LM train step; return (run, final_loss, info).

    `run(n)` takes n steps on a fixed batch of random tokens and returns their wall-clock
    seconds (blocking on the result); info holds the compile time and the model size.
    `microbatch_tokens` as in `LMTrainConfig` (-1: the default `train_lm` uses);
    `n_devices` as in `make_mesh` (None: all of them, as `train_lm` uses by default);
    `unroll` as in `make_train_step` (None: the default, microbatches_at_once).
    """
    mesh = make_mesh(n_devices)
    check_divisible(args.batch, mesh, "--batch")
    graphdef, params = init_model(model_cfg, jax.random.key(args.seed))
    total_steps = 3 + args.steps * args.repeats
    optimizer = make_optimizer(OptimConfig(), total_steps)
    state = init_train_state(params, optimizer)
    step = data_parallel(make_train_step(graphdef, optimizer, microbatch_tokens, unroll), mesh)

    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(FIRST_CHAR_ID, args.vocab, (args.batch, args.seq), dtype=np.int32)
    ones = np.ones((args.batch, args.seq), bool)
    batch = shard_batch(LMBatch(tokens=tokens, mask=ones, loss_mask=ones), mesh)
    key = jax.random.key(args.seed + 1)

    start = time.perf_counter()
    compiled = step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start

    # The step donates `state`: always carry on with the returned state, never the old one.
    carry = {"state": state, "loss": None}

    def run(n: int) -> float:
        start = time.perf_counter()
        s = carry["state"]
        for i in range(n):
            s, metrics = compiled(s, batch, jax.random.fold_in(key, i))
        jax.block_until_ready((s, metrics))
        carry["state"], carry["loss"] = s, metrics["loss"]
        return time.perf_counter() - start

    def final_loss() -> float:
        return float(carry["loss"])

    local_rows = args.batch // mesh.shape["data"]
    budget = default_microbatch_tokens() if microbatch_tokens < 0 else microbatch_tokens
    n = num_microbatches(local_rows, args.seq, budget)
    at_once = microbatches_at_once(mesh.shape["data"]) if unroll is None else unroll
    return run, final_loss, {"compile_s": compile_s, "devices": mesh.shape["data"],
                             "params": count_params(params), "microbatches": n,
                             "at_once": min(at_once, n)}


def setup_torch_train(args):
    """The PyTorch baseline's (run, info), or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    from baselines.torch_lm import TorchLMConfig, make_timer

    cfg = TorchLMConfig(vocab_size=args.vocab, max_len=args.seq, d_model=args.d_model,
                        n_heads=args.heads, n_layers=args.layers)
    run = make_timer(cfg, args.batch, args.seq, seed=args.seed)
    return run, {"threads": torch.get_num_threads(), "torch_version": torch.__version__}


def bench_train(model_cfg: ModelConfig, args, with_torch: bool) -> dict:
    """Training throughput of JAX and (optionally) torch, measured in alternation.

    The JAX step as `train_lm` runs it on all devices ("jax"); on one device when there are
    several ("jax_one"); without gradient accumulation ("jax_whole"); and on one device
    with one microbatch at a time, when it runs them two at once by default
    ("jax_one_serial"). Each of `--repeats` rounds times `--steps` steps of each, one after
    the other, so a change in the machine's load hits all alike; each figure is its median
    round. Returns {name: figures} for those measured, "torch" included when it was.
    """
    def jax_setup(**options):  # (run, info) of a variant; only the default's loss is checked
        run, _, info = setup_jax_train(model_cfg, args, **options)
        return run, info

    jax_run, jax_loss, jax_info = setup_jax_train(model_cfg, args)
    setups = {"jax": (jax_run, jax_info), "jax_whole": jax_setup(microbatch_tokens=0)}
    if jax_info["devices"] > 1:
        setups["jax_one"] = jax_setup(n_devices=1)
    if setups.get("jax_one", setups["jax"])[1]["at_once"] > 1:
        setups["jax_one_serial"] = jax_setup(n_devices=1, unroll=1)
    if with_torch and (torch_setup := setup_torch_train(args)) is not None:
        setups["torch"] = torch_setup
    runs = {name: run for name, (run, _) in setups.items()}
    for run in runs.values():
        run(2)  # warm-up: first executions (allocations, thread pools)
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(run(args.steps))
    loss = jax_loss()
    if not np.isfinite(loss):
        raise RuntimeError(f"the JAX train step produced a non-finite loss {loss}")

    def figures(name, info):
        step_s = statistics.median(times[name]) / args.steps
        return {"tokens_per_s": args.batch * args.seq / step_s, "step_s": step_s,
                "round_s": times[name], **info}

    return {name: figures(name, info) for name, (_, info) in setups.items()}


# --- generation --------------------------------------------------------------------------


def make_prompts(args) -> tuple[np.ndarray, np.ndarray]:
    """B left-padded prompts: BOS + 3..P-1 random characters. ((B, P) int32, (B, P) bool)."""
    rng = np.random.default_rng(args.seed + 2)
    B, P = args.batch, args.prompt_len
    lengths = rng.integers(max(1, P - 4), P + 1, B)  # real tokens per row, BOS included
    prompt = np.full((B, P), PAD_ID, np.int32)
    mask = np.zeros((B, P), bool)
    for row, n in enumerate(lengths):
        prompt[row, P - n] = BOS_ID
        prompt[row, P - n + 1:] = rng.integers(FIRST_CHAR_ID, args.vocab, n - 1)
        mask[row, P - n:] = True
    return prompt, mask


def bench_generation(model_cfg: ModelConfig, args) -> dict:
    """KV-cached generation against the naive full-forward-per-token reference.

    Every form runs twice over: on one device (the arrays as they are), and with the
    prompts split over all devices of the mesh (`shard_batch`, the parameters replicated),
    as the RLHF iteration samples. With one device the two are the same and only the first
    runs. The headline ratio is KV on all devices against each round's faster placement of
    the naive reference; KV on one device against the naive reference on one device is
    printed beside it.
    """
    graphdef, params = init_model(model_cfg, jax.random.key(args.seed))
    host_prompt, host_mask = make_prompts(args)
    mesh = make_mesh()
    check_divisible(args.batch, mesh, "--batch")
    placements = {"one": (params, jnp.asarray(host_prompt), jnp.asarray(host_mask))}
    if mesh.shape["data"] > 1:
        placements["all"] = (replicate(params, mesh),
                             *shard_batch((host_prompt, host_mask), mesh))
    key = jax.random.key(args.seed + 3)
    sample = SamplingConfig(max_new_tokens=args.new_tokens, temperature=1.0)
    greedy = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.0)
    logits_fn = lambda p, t, m: forward(graphdef, p, t, m).logits
    full_forward = jax.jit(logits_fn)
    # The same forward compiled with the XLA options `generate` uses on CPU: the like-for-like
    # baseline (those options speed up a full forward too).
    tuned_forward = jit_with_cpu_options(logits_fn, CPU_DECODE_OPTIONS)
    # The cache-free loop jitted whole, as `generate` is: one scan, a full forward over the
    # fixed (B, P + N) buffer at every step (same CPU options as `generate`).
    naive_scan_fn = jit_with_cpu_options(naive_generate_scan, CPU_DECODE_OPTIONS,
                                         static_argnames=("graphdef", "cfg"))

    def kv(where, cfg=sample):
        p, prompt, mask = placements[where]
        return jax.block_until_ready(generate(graphdef, p, prompt, mask, key, cfg))

    def naive(where, cfg=sample, forward_fn=full_forward):
        p, prompt, mask = placements[where]
        return jax.block_until_ready(naive_generate(graphdef, p, prompt, mask, key, cfg,
                                                    forward_fn=forward_fn))

    def naive_tuned(where):
        return naive(where, forward_fn=tuned_forward)

    def naive_scan(where):
        p, prompt, mask = placements[where]
        return jax.block_until_ready(naive_scan_fn(graphdef, p, prompt, mask, key, sample))

    forms = {f"{name}_{where}": functools.partial(fn, where)
             for name, fn in (("kv", kv), ("naive", naive), ("tuned", naive_tuned),
                              ("scan", naive_scan))
             for where in placements}
    head_where = "all" if "all" in placements else "one"
    head = f"kv_{head_where}"  # the headline: KV on all devices
    start = time.perf_counter()
    gen = forms[head]()  # compiles the prefill + decoding scans
    kv_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    naive_gen = forms["naive_one"]()  # compiles the full forward once per sequence length
    naive_warmup_s = time.perf_counter() - start
    outputs = {name: f() for name, f in forms.items()}  # the rest compile; all warm

    # Rounds run every form once, so that a change in the machine's load hits all alike;
    # each time is its median round. Each ratio is the median of the rounds' own ratios:
    # a round's calls run within seconds of each other, so the machine's speed, which
    # drifts by 10-20% over minutes on a shared VM, cancels out of each. The order rotates
    # from round to round, so no form always runs right after the same other one.
    names = list(forms)
    rounds = []  # per round: {form: seconds}
    for r in range(args.gen_repeats):
        seconds = {}
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            seconds[name] = timed(forms[name], 1)[0]
        rounds.append(seconds)
    median_s = {name: statistics.median(r[name] for r in rounds) for name in names}
    kv_tokens, naive_tokens = int(gen.mask.sum()), int(naive_gen.mask.sum())

    def best(r, form):
        """A round's time of the naive `form` at its faster placement."""
        return min(r[f"{form}_{where}"] for where in placements)

    # tokens/s of KV over tokens/s of a naive form, per round (the token counts are equal
    # when the sampled runs agree, which the script checks and reports).
    speed = lambda kv_s, other_s: (kv_tokens / kv_s) / (naive_tokens / other_s)
    per_round = {name: [speed(r[head], best(r, name)) for r in rounds]
                 for name in ("naive", "tuned", "scan")}
    per_round["one_device"] = [speed(r["kv_one"], r["naive_one"]) for r in rounds]

    greedy_kv, greedy_naive = kv(head_where, greedy), naive("one", greedy)
    greedy_match = bool(jnp.array_equal(greedy_kv.tokens, greedy_naive.tokens)
                        and jnp.array_equal(greedy_kv.mask, greedy_naive.mask))
    sampled_match = all(bool(jnp.array_equal(gen.tokens, other.tokens))
                        for other in outputs.values())
    ratio = {name: statistics.median(r) for name, r in per_round.items()}
    return {"devices": mesh.shape["data"],
            "kv_tokens_per_s": kv_tokens / median_s[head],
            "kv_one_device_tokens_per_s": kv_tokens / median_s["kv_one"],
            "naive_tokens_per_s": naive_tokens / min(median_s[f"naive_{w}"] for w in placements),
            "ratio_kv_over_naive": ratio["naive"],
            "ratio_kv_over_naive_one_device": ratio["one_device"],
            "ratio_kv_over_naive_tuned": ratio["tuned"],
            "ratio_kv_over_naive_scan": ratio["scan"],
            "median_s": median_s, "round_s": rounds, "round_ratios": per_round,
            "kv_tokens": kv_tokens, "naive_tokens": naive_tokens,
            "kv_compile_s": kv_compile_s, "naive_warmup_s": naive_warmup_s,
            "greedy_match": greedy_match, "sampled_match": sampled_match}


# --- report ------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Before any JAX operation: the CPU's device count is fixed when the backend starts.
    try:
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    except RuntimeError as err:  # main() called in a process that has already used JAX
        sys.exit(f"--cpu-devices {args.cpu_devices}: this process has already started JAX "
                 f"({err}); run bench_lm.py in a fresh process")
    max_len = max(args.seq, args.prompt_len + args.new_tokens)
    try:
        model_cfg = ModelConfig(vocab_size=args.vocab, max_len=max_len, d_model=args.d_model,
                                n_heads=args.heads, n_layers=args.layers, mlp_ratio=4,
                                positions="learned", tie_embeddings=True)
    except ValueError as err:
        sys.exit(f"bad model config: {err}")
    config = (f"L={args.layers} D={args.d_model} H={args.heads} T={args.seq} B={args.batch} "
              f"V={args.vocab} mlp=4x GELU, learned positions, tied embeddings")
    machine = (f"{platform.machine()} {os.cpu_count()} CPU cores, jax {jax.__version__} on "
               f"{jax.device_count()} {jax.default_backend()} device(s), "
               f"python {platform.python_version()}")
    print(f"config:  {config}")
    print(f"machine: {machine}")
    load_before = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_before:.2f}", flush=True)

    print("\n[1/2] training: JAX step and PyTorch baseline, alternating ...", flush=True)
    trained = bench_train(model_cfg, args, with_torch=not args.skip_torch)
    train, whole, torch_res = trained["jax"], trained["jax_whole"], trained.get("torch")
    train_one, serial = trained.get("jax_one"), trained.get("jax_one_serial")
    print(f"      JAX   {train['tokens_per_s']:,.0f} tokens/s  "
          f"({train['step_s'] * 1e3:.1f} ms/step on {train['devices']} device(s), "
          f"{train['microbatches']} microbatches each, {train['at_once']} at once, "
          f"compile {train['compile_s']:.1f} s, {train['params']:,} params)", flush=True)
    if train_one is not None:
        print(f"      JAX   {train_one['tokens_per_s']:,.0f} tokens/s  "
              f"({train_one['step_s'] * 1e3:.1f} ms/step on one device, "
              f"{train_one['microbatches']} microbatches, {train_one['at_once']} at once)",
              flush=True)
    if serial is not None:
        print(f"      JAX   {serial['tokens_per_s']:,.0f} tokens/s  "
              f"({serial['step_s'] * 1e3:.1f} ms/step on one device, one microbatch at a "
              f"time)", flush=True)
    print(f"      JAX   {whole['tokens_per_s']:,.0f} tokens/s  "
          f"({whole['step_s'] * 1e3:.1f} ms/step, the whole batch at once)", flush=True)
    if args.skip_torch:
        print("      torch skipped (--skip-torch)")
    elif torch_res is None:
        print("      torch not installed, skipped (pip install -e '.[bench]')")
    else:
        print(f"      torch {torch_res['tokens_per_s']:,.0f} tokens/s  "
              f"({torch_res['step_s'] * 1e3:.1f} ms/step, torch {torch_res['torch_version']}, "
              f"{torch_res['threads']} threads)", flush=True)

    print(f"[2/2] generation of {args.new_tokens} tokens (KV cache vs naive) ...", flush=True)
    gen = bench_generation(model_cfg, args)
    print(f"      greedy outputs identical: {gen['greedy_match']}; sampled (same key, every "
          f"form and placement) identical: {gen['sampled_match']}", flush=True)
    load_after = os.getloadavg()[0]

    ratio = None if torch_res is None else train["tokens_per_s"] / torch_res["tokens_per_s"]
    if torch_res is not None:
        torch_cell = f"{torch_res['tokens_per_s']:,.0f}"
    else:
        torch_cell = "skipped" if args.skip_torch else "n/a (torch not installed)"
    ratio_cell = "n/a" if ratio is None else f"{ratio:.2f}x"
    ratio_one = None if torch_res is None or train_one is None else \
        train_one["tokens_per_s"] / torch_res["tokens_per_s"]
    one_cell = "" if train_one is None else \
        f"  ({train['devices']} devices; {train_one['tokens_per_s']:,.0f} on one)"
    several = gen["devices"] > 1
    one = train_one or train  # the step on one device
    rows = [
        ("config", config),
        ("JAX train tokens/s", f"{train['tokens_per_s']:,.0f}{one_cell}"),
        ("torch train tokens/s", torch_cell),
        ("ratio JAX / torch (train)", ratio_cell),
        *([("  JAX on one device / torch", f"{ratio_one:.2f}x")] if ratio_one else []),
        (f"  JAX in {train['microbatches']} microbatches / whole batch at once",
         f"{train['tokens_per_s'] / whole['tokens_per_s']:.2f}x  ({whole['tokens_per_s']:,.0f}"
         f" tokens/s without gradient accumulation)"),
        *([(f"  JAX on one device, {one['at_once']} microbatches at once / one at a time",
            f"{one['tokens_per_s'] / serial['tokens_per_s']:.2f}x  "
            f"({serial['tokens_per_s']:,.0f} tokens/s one at a time)")] if serial else []),
        ("JAX train-step compile time", f"{train['compile_s']:.1f} s"),
        (f"KV-cached generation tokens/s (N={args.new_tokens})",
         f"{gen['kv_tokens_per_s']:,.0f}" + (f"  ({gen['devices']} devices; "
         f"{gen['kv_one_device_tokens_per_s']:,.0f} on one)" if several else "")),
        ("naive generation tokens/s", f"{gen['naive_tokens_per_s']:,.0f}"
         + ("  (its faster placement)" if several else "")),
        ("ratio KV / naive (generation)", f"{gen['ratio_kv_over_naive']:.1f}x  (rounds: "
         f"{min(gen['round_ratios']['naive']):.1f}-{max(gen['round_ratios']['naive']):.1f}x)"),
        *([("  both on one device", f"{gen['ratio_kv_over_naive_one_device']:.1f}x  (rounds: "
            f"{min(gen['round_ratios']['one_device']):.1f}-"
            f"{max(gen['round_ratios']['one_device']):.1f}x)")] if several else []),
        ("  naive with generate's CPU compile options", f"{gen['ratio_kv_over_naive_tuned']:.1f}x"),
        ("  naive loop jitted in one scan (fixed buffer)",
         f"{gen['ratio_kv_over_naive_scan']:.1f}x"),
        ("generated tokens / B*N slots", f"{gen['kv_tokens']} / {args.batch * args.new_tokens}"),
        ("KV generation compile time", f"{gen['kv_compile_s']:.1f} s"),
        ("greedy KV == naive", str(gen["greedy_match"])),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n" + "-" * (width + 40))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("-" * (width + 40))
    print(f"load average (1 min): {load_before:.2f} at start, {load_after:.2f} at end"
          + ("  -- the machine was busy, timings are noisy" if load_after > (os.cpu_count() or 1)
             else ""))
    if not gen["greedy_match"]:
        print("WARNING: greedy KV-cached and naive generation differ")

    figures = {"config": {"layers": args.layers, "d_model": args.d_model, "heads": args.heads,
                          "seq": args.seq, "batch": args.batch, "vocab": args.vocab,
                          "new_tokens": args.new_tokens, "prompt_len": args.prompt_len,
                          "steps": args.steps, "repeats": args.repeats,
                          "gen_repeats": args.gen_repeats},
               "machine": machine, "load_average": [load_before, load_after],
               "jax_train": train, "jax_train_one_device": train_one,
               "jax_train_whole_batch": whole, "jax_train_one_device_serial": serial,
               "torch_train": torch_res,
               "ratio_jax_over_torch": ratio, "ratio_jax_one_device_over_torch": ratio_one,
               "generation": gen}
    write_figures(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
