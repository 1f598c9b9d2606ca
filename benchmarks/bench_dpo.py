"""DPO against PPO and best-of-n at matched KL, on the default pipeline's pairs.

    python benchmarks/bench_dpo.py --steps 200         # about 8 minutes on 2 cores
    python benchmarks/bench_dpo.py --betas 0.1 0.3 --json out.json

Runs the default pipeline up to its PPO stage once (into --pipeline-dir, reused if it is
there; the main job's folder works), then DPO (`minirlhf.dpo.train_dpo`, the default
`DPOConfig` but for beta and --steps) from the same SFT model on the same preference file, once per
beta. Every --every steps the DPO policy is measured as the pipeline measures PPO (the same
held-out prompts and sampling key): its gold reward and KL to SFT, which traces its path
through the (KL, gold) plane. For each point it prints PPO's gold at the same KL, read off
PPO's held-out path (`rlhf.along_path`), and DPO's gain over SFT as a share of PPO's there.
The plot (--plot) draws the DPO paths with PPO's and the best-of-n curve.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for common

from minirlhf.dpo import train_dpo  # noqa: E402
from minirlhf.logging import read_metrics  # noqa: E402
from minirlhf.pipeline import (plot_kl_gold, policy_evaluator, preset, run_pipeline,  # noqa: E402
                               stage_configs)
from minirlhf.rlhf import along_path  # noqa: E402
from common import finish  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline-dir", type=Path, default=Path("runs/pipeline"),
                   help="where the default pipeline's stages up to PPO are (or are made)")
    p.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    p.add_argument("--steps", type=int, default=None,
                   help="DPO steps (default: DPOConfig's); the schedule decays over them")
    p.add_argument("--every", type=int, default=50, help="measure every this many DPO steps")
    p.add_argument("--plot", type=Path, default=Path("dpo_vs_ppo.png"))
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    load_before = os.getloadavg()[0]
    cfg = preset("default")
    print(f"[1/2] the default pipeline up to PPO, in {args.pipeline_dir} ...", flush=True)
    run_pipeline(cfg, args.pipeline_dir, stop_after="ppo", echo=lambda *_: None)
    cfg = stage_configs(cfg, args.pipeline_dir)
    rl = json.loads((args.pipeline_dir / "ppo" / "summary.json").read_text())
    ppo_history = read_metrics(args.pipeline_dir / "ppo" / "metrics.jsonl")
    sft_gold = rl["sft"]["gold"]
    ppo_path = [(0.0, sft_gold)] + [(r["eval_kl"], r["eval_gold"]) for r in ppo_history
                                    if "eval_gold" in r]
    _, evaluate = policy_evaluator(cfg)
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, steps=args.steps))
    # a checkpoint at every stop, so each resumes where the last ended (resume is exact)
    cfg = dataclasses.replace(cfg, dpo=dataclasses.replace(cfg.dpo, checkpoint_every=args.every))
    steps = list(range(args.every, cfg.dpo.steps, args.every)) + [cfg.dpo.steps]
    print(f"[2/2] DPO, {cfg.dpo.steps} steps, beta in {args.betas}, measured at {steps} ...",
          flush=True)
    figures = {"sft_gold": sft_gold, "ppo": rl["ppo"], "ppo_path": ppo_path, "dpo": {}}
    with tempfile.TemporaryDirectory(prefix="bench_dpo_") as tmp:
        for beta in args.betas:
            dcfg = dataclasses.replace(cfg.dpo, beta=beta)
            start, rows = time.perf_counter(), []
            for s in steps:
                graphdef, params, _ = train_dpo(dcfg, Path(tmp) / str(beta), stop_after=s)
                m = evaluate(graphdef, params)
                at = along_path(ppo_path, m["kl"])
                rows.append({"step": s, "gold": m["gold"], "kl": m["kl"], "ppo_gold_at_kl": at,
                             "share_of_ppo_gain": None if at is None
                             else (m["gold"] - sft_gold) / (at - sft_gold)})
            figures["dpo"][str(beta)] = {"rows": rows, "seconds": time.perf_counter() - start}
            print(f"      beta {beta}: {figures['dpo'][str(beta)]['seconds']:.0f} s", flush=True)

    print(f"\nSFT gold {sft_gold:.3f}; PPO gold {rl['ppo']['gold']:.3f} at KL "
          f"{rl['ppo']['kl']:.2f}; best-of-{rl['n']} gold {rl['best_of_n']['gold']:.3f} at KL "
          f"{rl['best_of_n']['kl']:.2f}")
    header = f"{'beta':>6}{'step':>6}{'gold':>8}{'KL':>7}{'PPO at KL':>11}{'share of gain':>15}"
    print(header + "\n" + "-" * len(header))
    for beta, f in figures["dpo"].items():
        for r in f["rows"]:
            at = "-" if r["ppo_gold_at_kl"] is None else f"{r['ppo_gold_at_kl']:.3f}"
            share = "-" if r["share_of_ppo_gain"] is None else f"{r['share_of_ppo_gain']:.0%}"
            print(f"{beta:>6}{r['step']:>6}{r['gold']:>8.3f}{r['kl']:>7.2f}{at:>11}{share:>15}")
    plot_kl_gold({k: rl[k] for k in ("sft", "best_of_n", "n", "best_of_n_curve") if k in rl},
                 ppo_history, args.plot,
                 paths={f"DPO, beta {b}, every {args.every} steps":
                        [(0.0, sft_gold)] + [(r["kl"], r["gold"]) for r in f["rows"]]
                        for b, f in figures["dpo"].items()})
    print(f"plot written to {args.plot}")
    return finish(load_before, figures, args.json)


if __name__ == "__main__":
    main()
