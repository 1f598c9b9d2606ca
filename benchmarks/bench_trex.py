"""T-REX and D-REX on gym tasks: do they beat the demonstrations?

    python benchmarks/bench_trex.py                       # about 12 minutes on 2 cores
    python benchmarks/bench_trex.py --envs CartPole-v1 --json out.json
    python benchmarks/bench_trex.py --envs Hopper-v5 --methods trex   # mujoco extra, ~1 h
    python benchmarks/bench_trex.py --envs Hopper-v5 --methods control --seeds 1  # ~15 min

For each task: make the demonstrations (a PPO learner's snapshots under the cap, the
task's DEMO_PRESETS), then `minirlhf trex` and `minirlhf drex` on them with the task's
presets (3 seeds each, `demo_jobs.trex_preset` / `drex_preset`). Prints per task the best
demonstration, behavioural cloning, T-REX and D-REX (true return, mean +- std over seeds),
the learned/true return correlation over the demonstrations, and each stage's wall time
(compilation included). On the tasks whose episode ends when the agent fails (CartPole,
Hopper) it also runs the control that keeps them honest: PPO, with T-REX's PPO settings,
on a constant reward of 0.5 -- any positive living reward teaches staying alive, which on
CartPole is the whole task. Every figure is measured here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for common

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from minirlhf.demo_jobs import drex_preset, run_drex, run_trex, trex_preset  # noqa: E402
from minirlhf.drex import DREXConfig  # noqa: E402
from minirlhf.demos import DEMO_PRESETS, make_demos, save_demos  # noqa: E402
from minirlhf.gym_train import train_agents  # noqa: E402
from minirlhf.gym_bridge import LearnedRewardHost  # noqa: E402
from minirlhf.trex import LearnedReward  # noqa: E402
from common import print_load, write_figures  # noqa: E402

ENVS = ("CartPole-v1", "Pendulum-v1", "MountainCar-v0")
MUJOCO = ("Hopper-v5", "HalfCheetah-v5")  # through the gymnasium bridge (mujoco extra)


def quiet(_line: str) -> None:
    pass


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS + MUJOCO)
    p.add_argument("--methods", nargs="+", default=["trex", "drex", "control"],
                   choices=["trex", "drex", "control"],
                   help="control: PPO on a constant living reward (CartPole, Hopper)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_trex"))
    p.add_argument("--seeds", type=int, default=3, help="seeds per method")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    load_before = os.getloadavg()[0]
    figures = {}
    for env in args.envs:
        out = args.out / env
        row = {}
        if {"trex", "drex"} & set(args.methods):
            start = time.time()
            demos, _ = make_demos(DEMO_PRESETS[env])
            save_demos(out / "demos.npz", demos)
            row = {"demos": demos.n, "demos_s": time.time() - start,
                   "best_demonstration": float(demos.returns.max())}
        for name, make, run in (("trex", trex_preset, run_trex), ("drex", drex_preset, run_drex)):
            if name not in args.methods:
                continue
            cfg = make(env, demos=str(out / "demos.npz"), num_seeds=args.seeds)
            start = time.time()
            s = run(cfg, out / name, echo=quiet)
            row[name] = {"policy": s["policy"], "bc": s["behavioural_cloning"],
                         "best_demonstration": s["best_demonstration"],
                         "correlation": s["correlation"], "timing": s["timing"],
                         "total_s": time.time() - start}
        if env in ("CartPole-v1", "Hopper-v5") and "control" in args.methods:
            rl = trex_preset(env, num_seeds=args.seeds).rl_config()
            start = time.time()
            const = LearnedReward if env == "CartPole-v1" else lambda e, f: LearnedRewardHost(
                e, lambda o, a: f(o, a) * jnp.ones(o.shape[:1]))
            control = train_agents(rl, out / "constant_reward",
                                   wrap=lambda e, c: const(e, lambda o, a: c),
                                   wrap_args=jnp.full(args.seeds, 0.5))
            row["constant_reward"] = {"policy": list(control["final_return"].values()),
                                      "total_s": time.time() - start}
        figures[env] = row
        report(env, row)
    print_load(load_before, os.getloadavg()[0])
    write_figures(args.json, figures)
    return figures


def report(env: str, row: dict) -> None:
    ms = lambda xs: f"{np.mean(xs):8.1f} +- {np.std(xs):5.1f}"
    print(f"\n{env}:")
    if "demos" in row:
        print(f"  {row['demos']} demonstrations made in {row['demos_s']:.0f} s")
        print(f"  best demonstration (T-REX's)       {row['best_demonstration']:8.1f}")
    if "trex" in row:
        t = row["trex"]
        print(f"  behavioural cloning, all demos     {ms(t['bc'])}")
        print(f"  T-REX                              {ms(t['policy'])}   correlation "
              f"{t['correlation']:.3f}   {t['total_s']:.0f} s ("
              + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t["timing"].items()) + ")")
        print("  T-REX per seed                     "
              + ", ".join(f"{x:.1f}" for x in t["policy"]))
    if "drex" in row:
        report_drex(row["drex"])
    if "constant_reward" in row:
        c = row["constant_reward"]
        print(f"  control: PPO on a constant 0.5     {ms(c['policy'])}   {c['total_s']:.0f} s")


def report_drex(d: dict) -> None:
    ms = lambda xs: f"{np.mean(xs):8.1f} +- {np.std(xs):5.1f}"
    n = DREXConfig().num_demos
    print(f"  best of D-REX's {n} demonstrations   {d['best_demonstration']:8.1f}")
    print(f"  behavioural cloning, those {n}       {ms(d['bc'])}")
    print(f"  D-REX                              {ms(d['policy'])}   correlation "
          f"{d['correlation']:.3f}   {d['total_s']:.0f} s ("
          + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in d["timing"].items()) + ")")


if __name__ == "__main__":
    main()
