"""T-REX and D-REX on gym tasks, each next to its controls: do the rankings make the win?

    python benchmarks/bench_trex.py --envs CartPole-v1 Acrobot-v1      # ~25 min on 2 cores
    python benchmarks/bench_trex.py --envs Pendulum-v1 --methods trex --json out.json
    python benchmarks/bench_trex.py --envs Hopper-v5 --methods trex    # mujoco extra, hours

For each task: the demonstrations of its DEMO_PRESETS (a PPO learner's snapshots under the
cap), then `minirlhf trex` and `minirlhf drex` on them with the task's presets and every
control built in (demo_controls: the same PPO on a constant +1 and -1 per step, on an
untrained reward network, and on the reward learned from the reversed rankings). Every row
is scored by one protocol: each seed's final policy, greedy, 20 episodes of the true task;
mean +- std over seeds (5 by default). The verdict says "beats" only when the method beats
the best demonstration and every control by more than the seeds' spread. Every figure is
measured here; a D-REX run whose noise ranks nothing is refused and reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for common

import numpy as np  # noqa: E402

from minirlhf.demo_jobs import (drex_preset, run_drex, run_trex, summary_table,  # noqa: E402
                                trex_preset)
from minirlhf.demos import DEMO_PRESETS, make_demos, save_demos  # noqa: E402
from common import print_load, write_figures  # noqa: E402

ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1")
MUJOCO = ("Hopper-v5", "HalfCheetah-v5")  # through the gymnasium bridge (mujoco extra)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=ENVS + MUJOCO)
    p.add_argument("--methods", nargs="+", default=["trex", "drex"], choices=["trex", "drex"])
    p.add_argument("--out", type=Path, default=Path("runs/bench_trex"))
    p.add_argument("--seeds", type=int, default=5, help="seeds per method (and control)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--table", type=Path, nargs="+", default=None,
                   help="only print the overview table of figures written by --json")
    args = p.parse_args(argv)
    if args.table:
        figures = {}
        for path in args.table:
            figures.update(json.loads(path.read_text()))
        print("\n".join(overview(figures)))
        return figures
    load_before = os.getloadavg()[0]
    figures = {}
    for env in args.envs:
        out = args.out / env
        start = time.time()
        demos, _ = make_demos(DEMO_PRESETS[env])
        save_demos(out / "demos.npz", demos)
        row = {"demos": demos.n, "demos_s": time.time() - start}
        print(f"\n{env}: {demos.n} demonstrations in {row['demos_s']:.0f} s "
              f"(returns {demos.returns.min():.1f} to {demos.returns.max():.1f})", flush=True)
        for name, make, run in (("trex", trex_preset, run_trex), ("drex", drex_preset, run_drex)):
            if name not in args.methods:
                continue
            cfg = make(env, demos=str(out / "demos.npz"), num_seeds=args.seeds)
            start = time.time()
            try:
                summary = run(cfg, out / name, echo=lambda line: None)
            except ValueError as err:  # e.g. D-REX's noise ranks nothing: said, not hidden
                row[name] = {"refused": str(err)}
                print(f"  {name}: refused: {err}", flush=True)
                continue
            summary["total_s"] = time.time() - start
            row[name] = summary
            print("\n".join(summary_table(summary)), flush=True)
            print(f"  ({summary['total_s']:.0f} s: " + ", ".join(
                f"{k[:-2]} {v:.0f} s" for k, v in summary["timing"].items()) + ")", flush=True)
        figures[env] = row
    print("\n".join(overview(figures)))
    print_load(load_before, os.getloadavg()[0])
    write_figures(args.json, figures)
    return figures


def overview(figures: dict) -> list[str]:
    """One line per task and method: the method, behavioural cloning, the best
    demonstration and the best control (mean +- std over seeds), and the verdict."""
    ms = lambda xs: f"{np.mean(xs):7.1f} +- {np.std(xs):5.1f}"
    rows = [f"{'':26}{'method':>18}{'cloning':>18}{'best demo':>10}  best control"]
    for env, row in figures.items():
        for name in ("trex", "drex"):
            s = row.get(name)
            if s is None:
                continue
            label = f"{env} {s.get('method', name.upper().replace('REX', '-REX'))}"
            if "refused" in s:
                rows.append(f"{label:26} refused: {s['refused'].split(' (')[0]}")
                continue
            best = max(s["controls"], key=lambda k: np.mean(s["controls"][k]))
            control = s["controls"][best]
            beats = s["verdict"].startswith("beats")
            rows.append(f"{label:26}{ms(s['policy']):>18}{ms(s['behavioural_cloning']):>18}"
                        f"{s['best_demonstration']:>10.1f}  {best}: "
                        f"{np.mean(control):.1f} +- {np.std(control):.1f}   "
                        + ("beats all" if beats else "does not beat all"))
    return rows


if __name__ == "__main__":
    main()
