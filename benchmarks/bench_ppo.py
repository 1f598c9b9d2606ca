"""Speed of PPO on CartPole-v1: time to solve and env-steps/s, pure JAX vs bridge vs PyTorch.

    python benchmarks/bench_ppo.py                  # CartPole-v1, 2 seeds: ~3 min on 2 CPU cores
    python benchmarks/bench_ppo.py --seeds 5        # more seeds, steadier medians
    python benchmarks/bench_ppo.py --gym-extra      # also LunarLander-v3 and Hopper-v5 (~11 min)
    python benchmarks/bench_ppo.py --gym-extra --skip-cartpole --lunar-steps 500000
    python benchmarks/bench_ppo.py --json out.json  # also write every figure as JSON

All three paths train the same agent (minirlhf.ppo.PPOConfig defaults = CleanRL's ppo.py:
4 envs x 128 steps, separate 64-64 tanh actor and critic, 4 epochs x 4 minibatches, lr
2.5e-4 annealed over 500k steps) on CartPole-v1, for each seed:

(a) pure JAX: `ppo.make_train` on the JAX port of CartPole, `jax.jit(run)` compiled once for
    a chunk of --chunk iterations and called chunk after chunk, the solve check on the host
    between chunks. It runs first with an empty persistent compilation cache (cold), then
    again in a second process on the same cache folder (warm), to show what
    `minirlhf.parallel.enable_compilation_cache` saves. After the solve, each worker also
    compiles the whole 500k-step run as one `lax.scan` and (warm worker) times it without
    any solve check: that is the env-steps/s figure.
(b) the gymnasium bridge: `gym_bridge.train_gymnasium` with backend="gymnasium", i.e.
    gymnasium's own CartPole-v1 in a host-side SyncVectorEnv, one jitted policy call per
    step and the same jitted learning step.
(c) the PyTorch baseline benchmarks/baselines/torch_ppo.py (CleanRL's ppo.py structure,
    eager torch on the CPU), if torch is installed.

Every run has a fresh Python process of its own (this script's `worker` subcommand): runs
sharing a process disturb each other (eager torch with one thread per core, in a process
where JAX has run, was seen to run over 10x slower on 2 cores than in a fresh process).

"Solved" means the mean return of the last >= 20 finished episodes is >= 475, checked
after every iteration the same way for all three paths: the window is the fewest most
recent iterations that together finished at least 20 episodes (the JAX trainer reports
episodes per iteration, not one by one). Time to solve is wall time from the first line
of training code (building the trainer: compile and setup included; Python imports not)
to the moment the solve is seen.

--gym-extra trains PRESETS["lunarlander"] and PRESETS["hopper"] through the bridge for a
stated step budget and reports the return reached (install the extras first:
pip install -e ".[box2d,mujoco]"; a missing one is reported as "skipped: <reason>").

Every figure printed is measured on the machine at hand; none is typed in. Timings on a
shared machine are noisy: the load average is printed so that a busy run can be recognised.
"""

from __future__ import annotations

import_start = __import__("time").perf_counter()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from common import print_load, write_figures  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # for baselines.torch_ppo

SOLVE_RETURN = 475.0  # CartPole-v1's reward threshold in gymnasium
SOLVE_WINDOW = 20  # finished episodes the mean is taken over
WORKER_TIMEOUT_S = 900


class SolveTracker:
    """Mean return of the last >= `window` finished episodes, fed one iteration at a time.

    Iterations report (episodes finished, sum of their returns); the window is the fewest
    most recent iterations whose episodes add up to at least `window`.
    """

    def __init__(self, window: int = SOLVE_WINDOW, threshold: float = SOLVE_RETURN):
        self.window, self.threshold = window, threshold
        self.recent: list[tuple[int, float]] = []  # (episodes, return sum), newest last

    def add(self, episodes: int, return_sum: float) -> float | None:
        """Add one iteration; return the windowed mean (None until `window` episodes)."""
        if episodes > 0:
            self.recent.append((int(episodes), float(return_sum)))
        count, total = 0, 0.0
        for i in range(len(self.recent) - 1, -1, -1):
            count += self.recent[i][0]
            total += self.recent[i][1]
            if count >= self.window:
                del self.recent[:i]  # older iterations never matter again
                return total / count
        return None

    def solved(self, mean: float | None) -> bool:
        return mean is not None and mean >= self.threshold


# --- (a) pure JAX, in a worker process --------------------------------------------------


def jax_run(args) -> dict:
    """(a): one pure-JAX time-to-solve run (in a fresh `worker jax` process).

    Returns the timings of every startup stage, the solve point and, after the solve, the
    compile time of the whole run as one jitted function and (with --throughput) its
    env-steps/s without solve checks.
    """
    import jax

    from minirlhf.envs import make_env
    from minirlhf.envs.core import AutoReset
    from minirlhf.parallel import enable_compilation_cache
    from minirlhf.ppo import PPOConfig, make_train, num_iterations

    import_s = time.perf_counter() - import_start
    enable_compilation_cache(args.cache_dir)
    cfg = PPOConfig(env="CartPole-v1", seed=args.seed)
    n_iter, per_iter = num_iterations(cfg), cfg.num_envs * cfg.num_steps
    key = jax.random.key(args.seed)
    env = AutoReset(make_env(cfg.env))
    stage = {}

    # -- time to solve: everything from here on is counted --
    t0 = time.perf_counter()
    graphdef, init, run, _ = make_train(cfg, env)
    stage["make_train_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    runner = jax.block_until_ready(jax.jit(init)(key))
    stage["init_s"] = time.perf_counter() - t
    t = time.perf_counter()
    lowered = jax.jit(run, static_argnums=1).lower(runner, args.chunk)
    stage["trace_lower_s"] = time.perf_counter() - t
    t = time.perf_counter()
    run_chunk = lowered.compile()
    stage["compile_s"] = time.perf_counter() - t
    startup_s = time.perf_counter() - t0

    tracker = SolveTracker()
    done_iter, solve_iter, solve_s, mean = 0, None, None, None
    t_train = time.perf_counter()
    while done_iter < n_iter and solve_iter is None:
        runner, metrics = run_chunk(runner)
        metrics = jax.device_get(metrics)  # waits for the chunk: the host-side solve check
        for i in range(args.chunk):
            mean = tracker.add(metrics["episodes"][i], metrics["episode_return_sum"][i])
            if tracker.solved(mean) and solve_iter is None:
                solve_iter = done_iter + i + 1
        done_iter += args.chunk
        if solve_iter is not None:
            solve_s = time.perf_counter() - t0
    train_s = time.perf_counter() - t_train
    result = {"seed": args.seed, "import_s": import_s, "startup_s": startup_s, **stage,
              "chunk": args.chunk, "solved": solve_iter is not None,
              "time_to_solve_s": solve_s, "solve_env_steps":
              None if solve_iter is None else solve_iter * per_iter,
              "run_env_steps": done_iter * per_iter, "run_s": train_s,
              "chunked_steps_per_s": done_iter * per_iter / train_s, "last_mean_return": mean}

    # -- the whole run as one jitted function, no solve checks (not part of time to solve) --
    fresh = jax.block_until_ready(jax.jit(init)(key))
    t = time.perf_counter()
    whole = jax.jit(run, static_argnums=1).lower(fresh, n_iter).compile()
    result["whole_run_compile_s"] = time.perf_counter() - t  # trace + lower + compile
    if args.throughput:
        t = time.perf_counter()
        _, metrics = jax.block_until_ready(whole(fresh))
        whole_s = time.perf_counter() - t
        result.update(whole_run_s=whole_s, whole_run_env_steps=n_iter * per_iter,
                      steps_per_s=n_iter * per_iter / whole_s)
    return result


# --- every measured run in a fresh process ----------------------------------------------


def worker(argv) -> None:
    """`bench_ppo.py worker {jax,bridge,torch} --seed S ...`: one run in this fresh process.

    Prints one line "RESULT <json>". Each run gets a process of its own because runs
    disturb each other inside one process: eager torch with one thread per core, in a
    process where JAX has run, was seen to run over 10x slower on 2 cores than in a fresh one.
    """
    p = argparse.ArgumentParser(prog="bench_ppo.py worker")
    p.add_argument("kind", choices=("jax", "bridge", "torch"))
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--cache-dir", help="jax: the persistent compilation cache folder")
    p.add_argument("--chunk", type=int, default=8, help="jax: iterations per jitted call")
    p.add_argument("--throughput", action="store_true", help="jax: also time the whole run")
    p.add_argument("--max-run-s", type=float, default=300.0)
    p.add_argument("--torch-threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.kind == "jax" and not args.cache_dir:
        p.error("worker jax needs --cache-dir")
    if args.kind == "jax":
        result = jax_run(args)
    elif args.kind == "bridge":
        result = bridge_run(args.seed, args.max_run_s)
    else:
        result = torch_run(args.seed, args.max_run_s, args.torch_threads)
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(kind: str, seed: int, *options: str) -> dict:
    """Run `worker kind` in a fresh process; return its result (or {"error": ...})."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "worker", kind, "--seed", str(seed),
           *options]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT_S} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}


# --- (b) the gymnasium bridge, (c) the torch baseline: host-side loops ------------------


class _Stop(Exception):
    """Raised from the bridge's per-iteration callback once the task is solved."""


def host_run_figures(times: list[float], steps: list[int], solve_index: int | None,
                     mean: float | None, stopped: bool) -> dict:
    """Figures of a host-side run from per-iteration wall times and env-step counts.

    Startup = the first iteration's time minus the median of the next ones (compilation,
    policy and env creation; 0 if the first is no slower); env-steps/s = steps after the first iteration over the time
    after it (the steady rate, as the pure-JAX figure excludes compilation).
    """
    later = [b - a for a, b in zip(times, times[1:])]
    steady = statistics.median(later) if later else 0.0
    rate = ((steps[-1] - steps[0]) / (times[-1] - times[0])) if len(times) > 1 else None
    return {"solved": solve_index is not None,
            "time_to_solve_s": None if solve_index is None else times[solve_index],
            "solve_env_steps": None if solve_index is None else steps[solve_index],
            "startup_s": max(0.0, times[0] - steady), "run_env_steps": steps[-1],
            "run_s": times[-1], "steps_per_s": rate, "last_mean_return": mean,
            "stopped_at_time_limit": stopped}


def bridge_run(seed: int, max_s: float) -> dict:
    """(b): train through the bridge on gymnasium's CartPole-v1 until solved (or max_s)."""
    from minirlhf.gym_bridge import train_gymnasium
    from minirlhf.ppo import PPOConfig

    import_s = time.perf_counter() - import_start
    cfg = PPOConfig(env="CartPole-v1", backend="gymnasium", seed=seed)
    tracker, times, steps = SolveTracker(), [], []
    state = {"solve": None, "mean": None, "stopped": False}

    def on_iteration(it, record):
        times.append(time.perf_counter() - t0)
        steps.append(int(record["env_steps"]))
        state["mean"] = tracker.add(record["episodes"], record["episode_return_sum"])
        if tracker.solved(state["mean"]):
            state["solve"] = it
            raise _Stop
        if times[-1] > max_s:
            state["stopped"] = True
            raise _Stop

    t0 = time.perf_counter()
    try:
        train_gymnasium(cfg, seed, on_iteration)
    except _Stop:
        pass
    return dict(host_run_figures(times, steps, state["solve"], state["mean"], state["stopped"]),
                seed=seed, import_s=import_s)


def torch_run(seed: int, max_s: float, threads: int | None) -> dict:
    """(c): train the PyTorch baseline until solved (or max_s)."""
    import torch

    from baselines.torch_ppo import TorchPPOConfig, train

    import_s = time.perf_counter() - import_start
    tracker, times, steps = SolveTracker(), [], []
    state = {"solve": None, "mean": None, "stopped": False}

    def on_iteration(record):
        times.append(record["wall_s"])
        steps.append(record["env_steps"])
        state["mean"] = tracker.add(record["episodes"], record["episode_return_sum"])
        if tracker.solved(state["mean"]):
            state["solve"] = len(times) - 1
            return True
        state["stopped"] = times[-1] > max_s
        return state["stopped"]

    train(TorchPPOConfig(env_id="CartPole-v1"), seed, on_iteration, num_threads=threads)
    return dict(host_run_figures(times, steps, state["solve"], state["mean"], state["stopped"]),
                seed=seed, import_s=import_s, threads=torch.get_num_threads(),
                torch_version=torch.__version__)


# --- the CartPole comparison -------------------------------------------------------------


def median_of(runs: list[dict], name: str) -> float | None:
    values = [r[name] for r in runs if r.get(name) is not None]
    return statistics.median(values) if values else None


def fmt_s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f} s"


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def describe(r: dict) -> str:
    if "error" in r:
        return f"FAILED ({r['error']})"
    if r["solved"]:
        return f"solved at {r['solve_env_steps']:,} steps in {r['time_to_solve_s']:.1f} s"
    last = r["last_mean_return"]
    why = " (stopped at --max-run-s)" if r.get("stopped_at_time_limit") else ""
    return (f"not solved in {r['run_env_steps']:,} steps{why} ({r['run_s']:.1f} s; last "
            f"mean {'n/a' if last is None else f'{last:.0f}'})")


def bench_cartpole(args) -> dict:
    seeds = list(range(args.seed, args.seed + args.seeds))
    has_torch = not args.skip_torch and importlib.util.find_spec("torch") is not None
    torch_opts = ["--max-run-s", str(args.max_run_s)] + (
        [] if args.torch_threads is None else ["--torch-threads", str(args.torch_threads)])
    runs = {"jax_cold": [], "jax_warm": [], "bridge": [], "torch": []}
    for n, seed in enumerate(seeds):
        print(f"\n[seed {seed}] ({n + 1}/{len(seeds)})", flush=True)
        cache = tempfile.mkdtemp(prefix="bench_ppo_jax_cache_")
        try:
            for label, throughput in (("jax_cold", False), ("jax_warm", True)):
                r = run_worker("jax", seed, "--cache-dir", cache, "--chunk", str(args.chunk),
                               *(["--throughput"] if throughput else []))
                runs[label].append(r)
                extra = "" if "error" in r else (
                    f"; startup {r['startup_s']:.1f} s (make_train {r['make_train_s']:.1f}, "
                    f"init {r['init_s']:.1f}, trace+lower {r['trace_lower_s']:.1f}, XLA "
                    f"compile {r['compile_s']:.1f})")
                cache_word = "empty cache" if label == "jax_cold" else "warm cache "
                print(f"      JAX    ({cache_word}) {describe(r)}{extra}", flush=True)
            n_files = sum(len(files) for _, _, files in os.walk(cache))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"      (the cache folder held {n_files} entries)", flush=True)
        if not args.skip_bridge:
            r = run_worker("bridge", seed, "--max-run-s", str(args.max_run_s))
            runs["bridge"].append(r)
            print(f"      bridge {describe(r)}" + ("" if "error" in r else
                  f"; {fmt_rate(r['steps_per_s'])} steps/s, startup {r['startup_s']:.1f} s"),
                  flush=True)
        if has_torch:
            r = run_worker("torch", seed, *torch_opts)
            runs["torch"].append(r)
            print(f"      torch  {describe(r)}" + ("" if "error" in r else
                  f"; {fmt_rate(r['steps_per_s'])} steps/s (torch {r['torch_version']}, "
                  f"{r['threads']} threads)"), flush=True)

    ok = {k: [r for r in v if "error" not in r] for k, v in runs.items()}
    solved = {k: [r for r in v if r["solved"]] for k, v in ok.items()}
    fig = {
        "seeds": seeds, "chunk": args.chunk,
        "torch": "skipped (--skip-torch)" if args.skip_torch else
        "not installed" if not has_torch else
        next((f"{r['torch_version']}, {r['threads']} threads" for r in ok["torch"]), "failed"),
        "import_s": {"jax+minirlhf": median_of(ok["jax_cold"], "import_s"),
                     "torch": median_of(ok["torch"], "import_s")},
        "jax_steps_per_s": median_of(ok["jax_warm"], "steps_per_s"),
        "jax_chunked_steps_per_s": median_of(ok["jax_cold"], "chunked_steps_per_s"),
        "bridge_steps_per_s": median_of(ok["bridge"], "steps_per_s"),
        "torch_steps_per_s": median_of(ok["torch"], "steps_per_s"),
        "runs": runs,
    }
    for k in runs:
        fig[f"{k}_time_to_solve_s"] = median_of(solved[k], "time_to_solve_s")
        fig[f"{k}_solve_env_steps"] = median_of(solved[k], "solve_env_steps")
        fig[f"{k}_solved"] = f"{len(solved[k])}/{len(runs[k])}"
        fig[f"{k}_startup_s"] = median_of(ok[k], "startup_s")
    for k in ("jax_cold", "jax_warm"):
        for stage in ("make_train_s", "init_s", "trace_lower_s", "compile_s",
                      "whole_run_compile_s"):
            fig[f"{k}_{stage}"] = median_of(ok[k], stage)
    return fig


def print_cartpole(fig: dict, args) -> None:
    w = 44
    cols = ("pure JAX", "bridge", "torch")
    skip_b, skip_t = args.skip_bridge, fig["torch_steps_per_s"] is None

    def row(name, a, b, c):  # an empty cell stays empty; a skipped path's cells say so
        b = "skipped" if skip_b and b else b
        c = "skipped" if skip_t and c else c
        print(f"{name:<{w}}{a:>14}{b:>14}{c:>14}")

    print("\n" + "-" * (w + 42))
    print(f"CartPole-v1, PPOConfig defaults, seeds {fig['seeds'][0]}..{fig['seeds'][-1]} "
          f"(medians over seeds)")
    print(f"{'':<{w}}" + "".join(f"{col:>14}" for col in cols))
    row("env-steps/s (no solve checks, no compile)", fmt_rate(fig["jax_steps_per_s"]),
        fmt_rate(fig["bridge_steps_per_s"]), fmt_rate(fig["torch_steps_per_s"]))
    row("env steps to solve", fmt_rate(fig["jax_cold_solve_env_steps"]),
        fmt_rate(fig["bridge_solve_env_steps"]), fmt_rate(fig["torch_solve_env_steps"]))
    row("seeds solved (within 500k steps)", fig["jax_cold_solved"], fig["bridge_solved"],
        fig["torch_solved"])
    row("time to solve, incl. compile: cold cache", fmt_s(fig["jax_cold_time_to_solve_s"]),
        fmt_s(fig["bridge_time_to_solve_s"]), fmt_s(fig["torch_time_to_solve_s"]))
    row("                              warm cache", fmt_s(fig["jax_warm_time_to_solve_s"]),
        "", "")
    row("startup (compile + setup): cold cache", fmt_s(fig["jax_cold_startup_s"]),
        fmt_s(fig["bridge_startup_s"]), fmt_s(fig["torch_startup_s"]))
    row("                           warm cache", fmt_s(fig["jax_warm_startup_s"]), "", "")
    print("\nJAX startup by stage, empty cache -> warm cache (two fresh processes per seed):")
    for stage, label in (("make_train_s", "make_train (eager policy init for the graphdef)"),
                         ("init_s", "jit(init)(key)"),
                         ("trace_lower_s", f"trace + lower run({fig['chunk']} iterations)"),
                         ("compile_s", "XLA compile of that chunk"),
                         ("whole_run_compile_s", "whole 976-iteration run: trace..compile")):
        print(f"  {label:<{w + 4}}{fmt_s(fig['jax_cold_' + stage]):>10} -> "
              f"{fmt_s(fig['jax_warm_' + stage])}")
    imp = fig["import_s"]
    print(f"  (not counted anywhere: import jax+minirlhf {fmt_s(imp['jax+minirlhf'])}"
          + ("" if imp["torch"] is None else f", import torch {fmt_s(imp['torch'])}") + ")")
    print(f"JAX env-steps/s with the host solve check every {fig['chunk']} iterations: "
          f"{fmt_rate(fig['jax_chunked_steps_per_s'])}")

    jt, tt, bt = fig["jax_steps_per_s"], fig["torch_steps_per_s"], fig["bridge_steps_per_s"]
    tts = fig["torch_time_to_solve_s"]
    ratios = [
        ("ratio JAX / torch env-steps/s", fmt_ratio(jt, tt), "aim >= 20x"),
        ("ratio torch / JAX time to solve, cold cache", fmt_ratio(tts,
         fig["jax_cold_time_to_solve_s"]), "aim >= 5x"),
        ("ratio torch / JAX time to solve, warm cache", fmt_ratio(tts,
         fig["jax_warm_time_to_solve_s"]), ""),
        ("ratio bridge / torch env-steps/s", fmt_ratio(bt, tt), ""),
        ("ratio torch / bridge time to solve", fmt_ratio(tts, fig["bridge_time_to_solve_s"]),
         ""),
    ]
    print()
    for name, value, aim in ratios:
        print(f"{name:<{w}}{value:>14}   {aim}")
    print("-" * (w + 42))
    fig["ratios"] = {name: value for name, value, _ in ratios}


# --- LunarLander-v3 and Hopper-v5 through the bridge ------------------------------------


def gym_extra(args) -> dict:
    from minirlhf.gym_bridge import make_gymnasium, train_gymnasium
    from minirlhf.ppo import PRESETS

    results = {}
    for preset, steps in (("lunarlander", args.lunar_steps), ("hopper", args.hopper_steps)):
        cfg = dataclasses.replace(PRESETS[preset], total_steps=steps, seed=args.seed)
        print(f"\n[extra] {cfg.env} through the bridge, PRESETS[{preset!r}] with "
              f"total_steps={steps:,} (the preset's own budget: "
              f"{PRESETS[preset].total_steps:,}), seed {args.seed}", flush=True)
        try:
            make_gymnasium(cfg.env).close()
        except Exception as err:  # a missing extra (box2d, mujoco) or its system library
            reason = f"{type(err).__name__}: {err}".replace("\n", " ")
            print(f"      skipped: {reason}", flush=True)
            results[preset] = {"env": cfg.env, "skipped": reason}
            continue
        tracker = SolveTracker()
        first, curve = [], []
        n_iter = steps // (cfg.num_envs * cfg.num_steps)
        marks = {max(0, round(n_iter * f / 5) - 1) for f in range(1, 6)}

        def on_iteration(it, record):
            mean = tracker.add(record["episodes"], record["episode_return_sum"])
            if not first and mean is not None:
                first.append(mean)
            if it in marks:
                curve.append((int(record["env_steps"]), mean, time.perf_counter() - t0))
                print(f"      {record['env_steps']:>9,} steps  {time.perf_counter() - t0:6.0f} s"
                      f"  mean return (last >= 20 episodes) "
                      f"{'n/a' if mean is None else f'{mean:8.1f}'}", flush=True)

        t0 = time.perf_counter()
        train_gymnasium(cfg, args.seed, on_iteration)
        wall = time.perf_counter() - t0
        final = curve[-1][1] if curve else None
        results[preset] = {"env": cfg.env, "total_steps": n_iter * cfg.num_envs * cfg.num_steps,
                           "wall_s": wall, "steps_per_s": n_iter * cfg.num_envs * cfg.num_steps
                           / wall, "first_mean_return": first[0] if first else None,
                           "final_mean_return": final, "curve": curve}
    print("\n" + "-" * 86)
    print(f"{'task (bridge, seed ' + str(args.seed) + ')':<30}{'env steps':>12}{'wall':>10}"
          f"{'steps/s':>10}{'first 20 ep.':>13}{'last 20 ep.':>12}")
    for preset, r in results.items():
        if "skipped" in r:
            print(f"{r['env']:<30}skipped: {r['skipped']}")
            continue
        fmt = lambda x: "n/a" if x is None else f"{x:.1f}"
        print(f"{r['env']:<30}{r['total_steps']:>12,}{r['wall_s']:>9.0f}s"
              f"{r['steps_per_s']:>10,.0f}{fmt(r['first_mean_return']):>13}"
              f"{fmt(r['final_mean_return']):>12}")
    print("-" * 86)
    return results


# --- main --------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seeds", type=int, default=2,
                   help="seeds per path (seed, seed+1, ...); figures are medians over seeds")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--chunk", type=int, default=8,
                   help="pure JAX: iterations per jitted call between host solve checks")
    p.add_argument("--skip-torch", action="store_true", help="skip the PyTorch baseline")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch intra-op threads (default: os.cpu_count(), one per core)")
    p.add_argument("--max-run-s", type=float, default=300.0,
                   help="stop a bridge or torch run that has not solved after this many "
                        "seconds (reported as not solved)")
    p.add_argument("--skip-bridge", action="store_true", help="skip the gymnasium bridge")
    p.add_argument("--skip-cartpole", action="store_true",
                   help="skip the CartPole comparison (e.g. with --gym-extra alone)")
    p.add_argument("--gym-extra", action="store_true",
                   help="also train LunarLander-v3 and Hopper-v5 through the bridge")
    p.add_argument("--lunar-steps", type=int, default=1_000_000,
                   help="env-step budget of LunarLander-v3 (PRESETS['lunarlander'])")
    p.add_argument("--hopper-steps", type=int, default=300_000,
                   help="env-step budget of Hopper-v5 (PRESETS['hopper'])")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("seeds", "chunk", "lunar_steps", "hopper_steps", "max_run_s"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, "
                    f"got {getattr(args, name)}")
    if args.skip_cartpole and not args.gym_extra:
        p.error("--skip-cartpole leaves nothing to run without --gym-extra")
    return args


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        worker(argv[1:])
        return {}
    args = parse_args(argv)
    start = time.perf_counter()

    import jax

    machine = (f"{platform.machine()} {os.cpu_count()} CPU cores, jax {jax.__version__} on "
               f"{jax.default_backend()}, python {platform.python_version()}")
    print(f"machine: {machine}")
    load_before = os.getloadavg()[0]
    print(f"load average (1 min) at start: {load_before:.2f}", flush=True)
    figures = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}}

    if not args.skip_cartpole:
        print(f"\nCartPole-v1: pure JAX (cold then warm compile cache, each in a fresh "
              f"process), bridge, torch; {args.seeds} seed(s) ...", flush=True)
        fig = bench_cartpole(args)
        print_cartpole(fig, args)
        if fig["torch"] == "not installed":
            print("torch not installed, skipped (pip install -e '.[bench]')")
        figures["cartpole"] = fig
    if args.gym_extra:
        figures["gym_extra"] = gym_extra(args)

    load_after = os.getloadavg()[0]
    figures["wall_s"] = time.perf_counter() - start
    print(f"total wall time: {figures['wall_s'] / 60:.1f} min")
    print_load(load_before, load_after)
    figures["load_average"] = [load_before, load_after]
    write_figures(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
