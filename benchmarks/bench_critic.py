"""PPO-RLHF's critics compared on the default pipeline: does the value function learn?

    python benchmarks/bench_critic.py                      # about 8 minutes on 2 cores
    python benchmarks/bench_critic.py --seed 1 --json out.json

Runs the default pipeline's first four stages once (pretraining, SFT, preferences, reward
model; into --pipeline-dir, reused if it is there), then the PPO stage (`minirlhf.rlhf.
train_rlhf` with the default `RLHFConfig`) four times, changing only the critic and GAE's
lambda:

* shared, lambda 1: a zero-initialised value head on the policy, sharing its learning rate
  (value_lr = lr = 3e-5): the default before the critic was fixed;
* shared, lambda 0.95, with that head;
* reward_model, lambda 0.95: a separate critic initialised from the reward model, value_lr
  1e-4 (the default);
* reward_model, lambda 1.

For each it prints the critic's explained variance of the returns, 1 - Var(G - V) / Var(G)
over each iteration's response tokens (from metrics.jsonl), at a few iterations and as the
share of iterations above 0.3; the held-out gold reward, reward-model score and KL to SFT of
the final policy; and the PPO stage's wall time. Every figure is measured here; the machine's
load is printed, since the times are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for common

import numpy as np  # noqa: E402

from minirlhf.logging import read_metrics  # noqa: E402
from minirlhf.pipeline import preset, run_pipeline, stage_configs  # noqa: E402
from minirlhf.rlhf import train_rlhf  # noqa: E402
from common import finish  # noqa: E402

VARIANTS = {  # name: RLHFConfig fields
    "shared, lambda 1 (before)": {"critic": "shared", "value_lr": 3e-5, "gae_lambda": 1.0},
    "shared, lambda 0.95": {"critic": "shared", "value_lr": 3e-5, "gae_lambda": 0.95},
    "reward_model, lambda 0.95 (default)": {"critic": "reward_model", "gae_lambda": 0.95},
    "reward_model, lambda 1": {"critic": "reward_model", "gae_lambda": 1.0},
}
SHOW = (1, 2, 3, 5, 10, 20, 40, 60)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline-dir", type=Path, default=Path("runs/bench_critic"),
                   help="where the pipeline's first four stages are (or are made)")
    p.add_argument("--seed", type=int, default=0, help="the PPO stage's seed")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    load_before = os.getloadavg()[0]
    cfg = preset("default")
    print(f"[1/2] the default pipeline up to the reward model, in {args.pipeline_dir} ...",
          flush=True)
    run_pipeline(cfg, args.pipeline_dir, stop_after="reward", echo=lambda *_: None)
    base = dataclasses.replace(stage_configs(cfg, args.pipeline_dir).rlhf, seed=args.seed)
    figures = {"seed": args.seed, "variants": {}}
    print(f"[2/2] PPO, {base.iterations} iterations, once per critic ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_critic_") as tmp:
        for i, (name, fields) in enumerate(VARIANTS.items()):
            start = time.perf_counter()
            _, _, summary = train_rlhf(dataclasses.replace(base, **fields), Path(tmp) / str(i))
            seconds = time.perf_counter() - start
            ev = np.array([r["explained_variance"] for r in read_metrics(
                Path(tmp) / str(i) / "metrics.jsonl") if "explained_variance" in r])
            figures["variants"][name] = {
                "explained_variance": ev.tolist(), "share_above_0.3": float(np.mean(ev > 0.3)),
                "last10_mean": float(ev[-10:].mean()), "seconds": seconds,
                **{k: summary["ppo"][k] for k in ("gold", "score", "kl")}}
            print(f"      {name}: {seconds:.0f} s", flush=True)
        sft = summary["sft"]

    shown = [i for i in SHOW if i <= base.iterations]
    print(f"\nexplained variance of the returns, PPO iteration (default pipeline, seed "
          f"{args.seed}; SFT gold {sft['gold']:.3f}):")
    header = f"{'critic':<38}" + "".join(f"{i:>7}" for i in shown) + \
        f"{'> 0.3':>8}{'gold':>8}{'score':>8}{'KL':>7}{'time':>8}"
    print(header + "\n" + "-" * len(header))
    for name, f in figures["variants"].items():
        ev = f["explained_variance"]
        print(f"{name:<38}" + "".join(f"{ev[i - 1]:>7.2f}" for i in shown)
              + f"{f['share_above_0.3']:>8.0%}{f['gold']:>8.3f}{f['score']:>8.3f}"
              f"{f['kl']:>7.2f}{f['seconds']:>7.0f}s")
    return finish(load_before, figures, args.json)


if __name__ == "__main__":
    main()
