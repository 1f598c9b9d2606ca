"""AI labels against human labels at equal label budgets, on the default pipeline's pairs.

    python benchmarks/bench_rlaif.py                  # about 8 minutes on 2 cores
    python benchmarks/bench_rlaif.py --budgets 500 2000 --json out.json

Runs the default pipeline with its RLAIF stages up to the judge's labels once (into
--pipeline-dir, reused if it is there; the main job's folder works after `minirlhf pipeline
--rlaif_stage true`). Then:

1. Fresh pairs. The constitution's weights and the judge's budget were chosen by looking at
   the pipeline's own pairs; so the labels' agreement with the gold order is measured again
   on as many new pairs (SFT samples drawn with another seed, labelled by simulated humans
   as in stage 3): the judge with the constitution, with equal weights, and the SFT model
   itself as the judge.
2. Budgets. For each budget n, trains the default reward model on the first n of the
   pipeline's comparisons labelled by the simulated humans and on the same n labelled by
   the judge, and measures both on the same held-out comparisons against the gold order:
   how much a label from each source is worth. The plot (--plot) draws both curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for common

from minirlhf.checkpoint import load_model  # noqa: E402
from minirlhf.envs import make_task  # noqa: E402
from minirlhf.logging import save_figure  # noqa: E402
from minirlhf.pipeline import preset, run_pipeline, stage_configs  # noqa: E402
from minirlhf.preference_data import write_preferences  # noqa: E402
from minirlhf.reward_model import simulate_comparisons, train_reward_model  # noqa: E402
from minirlhf.rlaif import label_file, load_constitution  # noqa: E402
from common import finish  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline-dir", type=Path, default=Path("runs/pipeline"),
                   help="where the default pipeline's stages are (or are made)")
    p.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000, 2000])
    p.add_argument("--plot", type=Path, default=Path("rlaif_budget.png"))
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)

    load_before = os.getloadavg()[0]
    cfg = dataclasses.replace(preset("default"), rlaif_stage=True)
    print(f"[1/3] the default pipeline up to the judge's labels, in {args.pipeline_dir} ...",
          flush=True)
    run_pipeline(cfg, args.pipeline_dir, stop_after="ai_preferences", echo=lambda *_: None)
    cfg = stage_configs(cfg, args.pipeline_dir)
    files = {"human": Path(cfg.reward.preferences),
             "AI": args.pipeline_dir / "ai_preferences" / "comparisons.jsonl"}
    n_val, n_train = cfg.reward.n_val, cfg.reward.n_train
    if max(args.budgets) > n_train or min(args.budgets) < cfg.reward.batch_size:
        raise ValueError(f"budgets must lie in [{cfg.reward.batch_size}, {n_train}] (the batch "
                         f"size and the pipeline's training comparisons), got {args.budgets}")
    report = json.loads((args.pipeline_dir / "ai_preferences" / "summary.json").read_text())
    print(f"      labels that follow the gold order: human {report['human_gold_agreement']:.1%}, "
          f"AI {report['ai_gold_agreement']:.1%} (of {report['pairs']} pairs)")
    figures = {"labels": report, "fresh": {}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench_rlaif_") as tmp:
        sft_dir, judge_dir = args.pipeline_dir / "sft", args.pipeline_dir / "judge"
        g, params, tokenizer, meta = load_model(sft_dir)
        task = make_task(meta["task"])
        fresh, info = simulate_comparisons(
            g, params, tokenizer, task, report["pairs"], 2, cfg.reward.seed + 1,
            target_agreement=cfg.reward.target_agreement)
        fresh_path = Path(tmp) / "fresh.jsonl"
        write_preferences(fresh_path, fresh)
        constitution = load_constitution(cfg.rlaif.constitution, task)
        equal = tuple(dataclasses.replace(p, weight=1.0) for p in constitution)
        print(f"[2/3] {len(fresh)} fresh pairs (seed {cfg.reward.seed + 1}): labels that follow "
              f"the gold order: human {info['label_gold_agreement']:.1%}")
        for name, judge, c in (("judge, the constitution", judge_dir, constitution),
                               ("judge, equal weights", judge_dir, equal),
                               ("the SFT model as the judge", sft_dir, constitution)):
            r = label_file(judge, fresh_path, Path(tmp) / "ai.jsonl", task, c,
                           cfg.rlaif.on_item_alternatives)
            figures["fresh"][name] = r
            print(f"      {name:<28} {r['ai_gold_agreement']:.1%}   (principles alone: "
                  + ", ".join(f"{v:.0%}" for v in r["principle_gold_agreement"].values())
                  + ")", flush=True)
        print(f"[3/3] reward models on the first n labels of each source, budgets "
              f"{args.budgets}")
        for n in args.budgets:
            row = {"budget": n}
            for source, path in files.items():
                lines = path.read_text().splitlines()
                subset = Path(tmp) / f"{source}_{n}.jsonl"  # first n, then the held-out end
                subset.write_text("\n".join(lines[:n] + lines[-n_val:]) + "\n")
                rcfg = dataclasses.replace(cfg.reward, preferences=str(subset))
                summary = train_reward_model(rcfg, Path(tmp) / f"rm_{source}_{n}")[2]
                row[source] = summary["val_gold_accuracy"]
            figures["rows"].append(row)
            print(f"      n = {n:>5}: reward model's held-out gold accuracy, human labels "
                  f"{row['human']:.1%}, AI labels {row['AI']:.1%}", flush=True)

    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    for source in files:
        ax.plot([r["budget"] for r in figures["rows"]], [r[source] for r in figures["rows"]],
                "o-", label=f"{source} labels")
    ax.set_xscale("log")
    ax.set_xlabel("labelled comparisons (budget)")
    ax.set_ylabel("reward model: held-out pairs in gold order")
    ax.set_title("what a label is worth")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, args.plot)
    print(f"plot: {args.plot}")
    return finish(load_before, figures, args.json)


if __name__ == "__main__":
    main()
