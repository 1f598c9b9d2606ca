"""The main job: the whole ChatGPT recipe on the default task, with a summary (layer 3).

    pretrain -> SFT -> preference data -> reward model -> PPO (-> GRPO) (-> DPO)
      (-> RLAIF: judge -> AI labels of the same comparisons -> reward model -> PPO)

(deck "Large Language Models and RL from Human Feedback", slide "High-Level Recipe for
ChatGPT"). Each stage writes its own run folder under the pipeline's folder and checkpoints
as it goes, so running the pipeline again resumes an interrupted stage and skips finished
ones; the same seed gives the same final policy either way. The summary compares the SFT
policy, best-of-n sampling from it, the PPO policy, the GRPO policy (the same reward
model, no critic: DeepSeekMath's setting), the DPO policy (the same preference pairs, no
reward model) and, with `rlaif_stage`, the RLAIF policy (PPO on a reward model trained on
the same pairs labelled by a judge model under a constitution, `minirlhf.rlaif`) on
held-out prompts: the gold reward (which only this simulation knows), the reward model's
score and the KL to SFT.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
from matplotlib.figure import Figure

from minirlhf.checkpoint import load_model
from minirlhf.configs import check_positive_ints, override, to_dict
from minirlhf.dpo import DPOConfig, train_dpo
from minirlhf.envs import make_task
from minirlhf.generate import SamplingConfig
from minirlhf.grpo import GRPOConfig, train_grpo
from minirlhf.logging import atomic_write_text, read_metrics, save_figure
from minirlhf.optim import OptimConfig
from minirlhf.preference_data import write_preferences
from minirlhf.pretrain import PretrainConfig, pretrain
from minirlhf.reward_model import RewardConfig, simulate_comparisons, train_reward_model
from minirlhf.rlaif import RLAIFConfig, label_file, load_constitution, write_report
from minirlhf.rlhf import Evaluator, Frozen, RLHFConfig, along_path, train_rlhf
from minirlhf.sft import SFTConfig, complete, format_rate, sft

STAGES = ("pretrain", "sft", "preferences", "reward", "ppo", "grpo", "dpo", "judge",
          "ai_preferences", "ai_reward", "rlaif")


@dataclass(frozen=True)
class PipelineConfig:
    """The whole recipe, one stage after the other."""

    seed: int = 0
    """Seed of the before/after-SFT sample prompts and their sampling (each stage has its
    own seed too)."""
    n_samples: int = 64
    """Held-out prompts to sample completions for, before and after SFT."""
    show: int = 6
    """How many completions to print side by side."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Stage 1: pretraining."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage 2: supervised fine-tuning (its `init` is set to the pretraining stage's folder)."""
    reward: RewardConfig = field(default_factory=lambda: RewardConfig(
        n_train=2000, n_val=300, steps=200, eval_every=100, checkpoint_every=100,
        optim=OptimConfig(lr=3e-4, warmup_steps=20)))
    """Stages 3 and 4: preference data (n_train + n_val comparisons of SFT samples by the
    simulated labelers) and the reward model trained on it (its `init` and `preferences`
    are set by the pipeline)."""
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    """Stage 5: PPO against the reward model (its `init` and `reward` are set by the
    pipeline)."""
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(
        iterations=60, prompts_per_iteration=16, group_size=4, max_new_tokens=64, beta=0.3,
        lr=5e-5, update_epochs=2, num_minibatches=2, eval_every=10, checkpoint_every=10))
    """Stage 6: GRPO against the same reward model, from SFT, as many responses per
    iteration as PPO (B x G = 16 x 4), evaluated like PPO (its `init` and `reward` are set
    by the pipeline). beta = 0.3 ends the default run at about PPO's KL to SFT, so the two
    compare at matched KL; at DeepSeekMath's 0.04 it drifts to about 9 nats."""
    grpo_stage: bool = True
    """Run stage 6 (GRPO) and add it to the table."""
    dpo: DPOConfig = field(default_factory=DPOConfig)
    """Stage 7: DPO from SFT on the reward model's training pairs (its `init`,
    `preferences` and `n_val` are set by the pipeline: the same held-out part)."""
    dpo_stage: bool = True
    """Run stage 7 (DPO) and add it to the table."""
    rlaif: RLAIFConfig = field(default_factory=RLAIFConfig)
    """The RLAIF stages: the judge model (its `judge.init` is set to the pretraining stage's
    folder) and the constitution it labels by."""
    rlaif_stage: bool = False
    """Run the RLAIF stages -- train the judge, have it re-label stage 3's comparisons, a
    reward model on its labels, PPO on that reward model -- and add an RLAIF row (about 4
    minutes more on 2 CPU cores)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How the before/after-SFT samples are drawn."""

    def __post_init__(self):
        check_positive_ints(self, "n_samples", "show")


PRESETS: dict[str, dict] = {
    "default": {},
    # Seconds rather than minutes: for smoke tests and lectures. Learns little.
    "tiny": {
        "pretrain.steps": 30, "pretrain.batch_size": 16, "pretrain.n_train": 500,
        "pretrain.n_val": 64, "pretrain.eval_every": 15, "pretrain.checkpoint_every": 15,
        "pretrain.model.d_model": 32, "pretrain.model.n_heads": 2, "pretrain.model.n_layers": 1,
        "pretrain.model.max_len": 112,
        "sft.steps": 20, "sft.batch_size": 16, "sft.n_train": 200, "sft.n_val": 32,
        "sft.eval_every": 10, "sft.checkpoint_every": 10,
        "reward.n_train": 96, "reward.n_val": 32, "reward.steps": 12, "reward.batch_size": 16,
        "reward.eval_every": 12, "reward.checkpoint_every": 6,
        "rlhf.iterations": 4, "rlhf.batch_size": 16, "rlhf.rollout.max_new_tokens": 48,
        "rlhf.eval_every": 2, "rlhf.checkpoint_every": 2, "rlhf.n_eval": 16,
        "rlhf.best_of_n": 4,
        "grpo.iterations": 4, "grpo.prompts_per_iteration": 4, "grpo.group_size": 4,
        "grpo.max_new_tokens": 48, "grpo.eval_every": 2, "grpo.checkpoint_every": 2,
        "dpo.steps": 6, "dpo.batch_size": 16, "dpo.eval_every": 3, "dpo.checkpoint_every": 3,
        "rlaif.judge.steps": 20, "rlaif.judge.batch_size": 16, "rlaif.judge.n_train": 200,
        "rlaif.judge.n_val": 32, "rlaif.judge.eval_every": 10,
        "rlaif.judge.checkpoint_every": 10, "rlaif.on_item_alternatives": 1,
        "n_samples": 8, "show": 3, "sampling.max_new_tokens": 48,
    },
    # About two minutes: a smaller model and budgets for which every stage still learns
    # (PPO raises the gold reward), with cleaner labels (0.8) to make up for fewer
    # comparisons; for the learning tests and the RLHF lecture.
    "small": {
        "pretrain.steps": 300, "pretrain.n_train": 5000, "pretrain.eval_every": 150,
        "pretrain.checkpoint_every": 150, "pretrain.model.d_model": 64,
        "pretrain.model.max_len": 112,
        "sft.steps": 150, "sft.n_train": 1000, "sft.n_val": 128,
        "reward.n_train": 1000, "reward.n_val": 200, "reward.steps": 150,
        "reward.eval_every": 75, "reward.checkpoint_every": 75, "reward.optim.lr": 1e-3,
        "reward.target_agreement": 0.8,
        "rlhf.iterations": 40, "rlhf.n_eval": 128, "rlhf.best_of_n": 8,
        "rlhf.lr": 5e-5, "grpo.iterations": 40,
        "rlaif.judge.steps": 600, "rlaif.judge.n_train": 4000,
        "n_samples": 16, "show": 3,
    },
    # Reward hacking (deck slide "Controlling Divergence"): no KL penalty and a longer run.
    # The reward model's score keeps rising while the gold reward stalls and then falls.
    "hacking": {"rlhf.beta": 0.0, "rlhf.iterations": 150, "rlhf.lr": 5e-5,
                "grpo_stage": False, "dpo_stage": False},
}


def preset(name: str) -> PipelineConfig:
    """The PipelineConfig of a named preset ("default", "tiny", "small", "hacking")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return override(PipelineConfig(), PRESETS[name])


def stage_configs(cfg: PipelineConfig, out: Path) -> PipelineConfig:
    """cfg with every stage pointed at the previous stage's run folder."""
    return dataclasses.replace(
        cfg, sft=dataclasses.replace(cfg.sft, init=str(out / "pretrain")),
        reward=dataclasses.replace(cfg.reward, init=str(out / "sft"),
                                   preferences=str(out / "preferences" / "comparisons.jsonl")),
        rlhf=dataclasses.replace(cfg.rlhf, init=str(out / "sft"), reward=str(out / "reward")),
        grpo=dataclasses.replace(cfg.grpo, init=str(out / "sft"), reward=str(out / "reward")),
        dpo=dataclasses.replace(cfg.dpo, init=str(out / "sft"), n_val=cfg.reward.n_val,
                                preferences=str(out / "preferences" / "comparisons.jsonl")),
        rlaif=dataclasses.replace(cfg.rlaif, judge=dataclasses.replace(
            cfg.rlaif.judge, init=str(out / "pretrain"))))


def policy_evaluator(cfg: PipelineConfig):
    """(task, evaluate): evaluate(graphdef, params) measures a policy as the PPO stage
    measures its own (the same held-out prompts and key, `rlhf.Evaluator`, against SFT and
    the reward model): its summary of gold, score, kl, format, length, and the samples."""
    ref_graphdef, ref_params, tokenizer, meta = load_model(cfg.rlhf.init)
    rm_graphdef, rm_params, _, rm_meta = load_model(cfg.rlhf.reward)
    task = make_task(meta["task"])
    evaluator = Evaluator(cfg.rlhf, task, tokenizer, ref_graphdef, rm_graphdef,
                          rm_meta["normalization"], Frozen(ref_params, rm_params))

    def evaluate(graphdef, params) -> dict:
        samples = evaluator.samples(graphdef, params)
        return {**samples.summary(task), "samples": samples.texts,
                "points": [samples.gold.tolist(), samples.score.tolist()]}

    return task, evaluate


def grpo_on_reward_model(cfg: PipelineConfig, out_dir: Path) -> dict:
    """Stage 6: GRPO from SFT against the reward model, evaluated as PPO is."""
    task, evaluate = policy_evaluator(cfg)
    return train_grpo(cfg.grpo, out_dir, task=task, evaluate=evaluate)[2]["grpo"]


def dpo_on_preferences(cfg: PipelineConfig, out_dir: Path) -> dict:
    """Stage 7: DPO from SFT on the preference file of stage 3 (the reward model's training
    pairs; the same held-out end), evaluated as PPO is. Returns the evaluation, with DPO's
    own held-out numbers under "train"."""
    graphdef, params, summary = train_dpo(cfg.dpo, out_dir)
    return {**policy_evaluator(cfg)[1](graphdef, params), "train": summary}


def ai_preferences(cfg: PipelineConfig, out: Path) -> dict:
    """RLAIF's labels: the judge (out/judge) re-labels stage 3's comparisons by the
    constitution. Writes out/ai_preferences/comparisons.jsonl and summary.json (the agreement
    report and the constitution); a finished stage is read, not redone."""
    out_dir = out / "ai_preferences"
    done = out_dir / "summary.json"
    task = make_task(cfg.pretrain.task)
    constitution = load_constitution(cfg.rlaif.constitution, task)
    if done.exists():
        report = json.loads(done.read_text())
        made = (report.get("constitution"), report.get("on_item_alternatives"))
        if made != ([dataclasses.asdict(p) for p in constitution],
                    cfg.rlaif.on_item_alternatives):
            raise ValueError(f"{out_dir} holds labels made with another constitution or "
                             "rlaif.on_item_alternatives; use another output folder or "
                             "delete it")
        return report
    out_dir.mkdir(parents=True, exist_ok=True)
    report = label_file(out / "judge", cfg.reward.preferences, out_dir / "comparisons.jsonl",
                        task, constitution, cfg.rlaif.on_item_alternatives,
                        cfg.rlaif.batch_size)
    write_report(done, {**report, "on_item_alternatives": cfg.rlaif.on_item_alternatives},
                 constitution)
    return json.loads(done.read_text())


def rlaif_policy(cfg: PipelineConfig, out: Path) -> dict:
    """RLAIF's policy: PPO, as stage 5, on the reward model trained on the AI labels; evaluated
    as PPO is (its score column is the human-label reward model's, as for every row)."""
    graphdef, params, _ = train_rlhf(
        dataclasses.replace(cfg.rlhf, reward=str(out / "ai_reward")), out / "rlaif")
    return policy_evaluator(cfg)[1](graphdef, params)


def make_preferences(cfg: RewardConfig, sft_dir: Path, out_dir: Path) -> dict:
    """Stage 3: n_train + n_val comparisons of SFT samples by the simulated labelers.

    Writes out_dir/comparisons.jsonl (the reward stage holds out its last n_val) and
    out_dir/summary.json; a finished stage (summary.json present) is read, not redone.
    """
    done = out_dir / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    graphdef, params, tokenizer, meta = load_model(sft_dir)
    comparisons, info = simulate_comparisons(
        graphdef, params, tokenizer, make_task(meta["task"]), cfg.n_train + cfg.n_val, cfg.k,
        cfg.seed, target_agreement=cfg.target_agreement)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_preferences(out_dir / "comparisons.jsonl", comparisons)
    atomic_write_text(done, json.dumps({**info, "n": len(comparisons)}, indent=2))
    return info


def run_pipeline(cfg: PipelineConfig, out: str | Path, echo=print,
                 stop_after: str | None = None) -> dict:
    """Run the recipe into `out`, sample from each policy, and print a summary.

    Writes out/pretrain/, out/sft/, out/preferences/, out/reward/, out/ppo/, out/grpo/,
    out/dpo/ (with `rlaif_stage` also out/judge/, out/ai_preferences/, out/ai_reward/,
    out/rlaif/), out/summary.json, out/samples.txt and out/pipeline_config.json.
    Returns the summary.

    Args:
        stop_after: a stage name: stop once it is done (as if interrupted there).
    """
    out = Path(out)
    if stop_after is not None and stop_after not in STAGES:
        raise ValueError(f"unknown stage {stop_after!r}; stages: {STAGES}")
    runs = {"grpo": cfg.grpo_stage, "dpo": cfg.dpo_stage,
            **dict.fromkeys(STAGES[7:], cfg.rlaif_stage)}
    if not runs.get(stop_after, True):
        raise ValueError(f"stop_after={stop_after!r} names a stage this configuration skips "
                         "(see grpo_stage, dpo_stage, rlaif_stage)")
    task = make_task(cfg.pretrain.task)
    # Refuse a sampling budget the model cannot hold now, not after minutes of training.
    for name, n in (("sampling.max_new_tokens", cfg.sampling.max_new_tokens),
                    ("rlhf.rollout.max_new_tokens", cfg.rlhf.rollout.max_new_tokens)):
        needed = 1 + task.max_prompt_chars + n
        if needed > cfg.pretrain.model.max_len:
            raise ValueError(
                f"{name}={n} plus the task's longest prompt ({task.max_prompt_chars} "
                f"characters + BOS) needs {needed} positions, more than "
                f"pretrain.model.max_len={cfg.pretrain.model.max_len}")
    if cfg.rlaif_stage:  # a constitution the judge cannot apply is refused now, not later
        probes = {p.probe for p in load_constitution(cfg.rlaif.constitution, task)}
        if "on_item" in probes and cfg.rlaif.on_item_alternatives >= len(task.items):
            raise ValueError(f"rlaif.on_item_alternatives={cfg.rlaif.on_item_alternatives} "
                             f"must be below the task's {len(task.items)} items")
    cfg = stage_configs(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "pipeline_config.json", json.dumps(to_dict(cfg), indent=2))
    times = {}

    n_stages = 5 + cfg.grpo_stage + cfg.dpo_stage + 4 * cfg.rlaif_stage

    def stage(i, name, text, fn):
        echo(f"[{i}/{n_stages}] {text}")
        t = time.perf_counter()
        result = fn()
        times[name] = round(time.perf_counter() - t, 1)
        return result

    g, pre_params, tokenizer, pre_hist = stage(
        1, "pretrain", "pretraining on the task corpus",
        lambda: pretrain(cfg.pretrain, out / "pretrain"))
    if stop_after == "pretrain":
        return {}
    g, sft_params, _, sft_hist = stage(
        2, "sft", "supervised fine-tuning on demonstrations", lambda: sft(cfg.sft, out / "sft"))
    if stop_after == "sft":
        return {}
    prefs = stage(3, "preferences", "preference data: simulated labelers compare SFT samples",
                  lambda: make_preferences(cfg.reward, out / "sft", out / "preferences"))
    if stop_after == "preferences":
        return {}
    _, _, rm = stage(4, "reward", "reward model (Bradley-Terry on the comparisons)",
                     lambda: train_reward_model(cfg.reward, out / "reward"))
    if stop_after == "reward":
        return {}
    _, _, rl = stage(5, "ppo", "PPO against the reward model, KL-penalised to SFT",
                     lambda: train_rlhf(cfg.rlhf, out / "ppo"))
    if stop_after == "ppo":
        return {}
    grpo = dpo = None
    if cfg.grpo_stage:
        grpo = stage(6, "grpo", "GRPO against the same reward model: groups, no critic",
                     lambda: grpo_on_reward_model(cfg, out / "grpo"))
    if stop_after == "grpo":
        return {}
    if cfg.dpo_stage:
        dpo = stage(5 + cfg.grpo_stage + 1, "dpo",
                    "DPO on the same preference pairs: no reward model, no sampling",
                    lambda: dpo_on_preferences(cfg, out / "dpo"))
    if stop_after == "dpo" and cfg.rlaif_stage:
        return {}
    ai = ai_rm = rlaif = None
    if cfg.rlaif_stage:
        i = 5 + cfg.grpo_stage + cfg.dpo_stage
        stage(i + 1, "judge", "RLAIF: the judge model (the pretrained model fine-tuned on "
              "demonstrations)", lambda: sft(cfg.rlaif.judge, out / "judge"))
        if stop_after == "judge":
            return {}
        ai = stage(i + 2, "ai_preferences", "RLAIF: the judge re-labels the comparisons by "
                   "the constitution", lambda: ai_preferences(cfg, out))
        if stop_after == "ai_preferences":
            return {}
        ai_cfg = dataclasses.replace(
            cfg.reward, preferences=str(out / "ai_preferences" / "comparisons.jsonl"))
        ai_rm = stage(i + 3, "ai_reward", "RLAIF: a reward model on the AI labels",
                      lambda: train_reward_model(ai_cfg, out / "ai_reward"))[2]
        if stop_after == "ai_reward":
            return {}
        rlaif = stage(i + 4, "rlaif", "RLAIF: PPO on the AI-label reward model",
                      lambda: rlaif_policy(cfg, out))

    prompts = task.prompts(cfg.n_samples, seed=cfg.seed + 777)
    key = jax.random.key(cfg.seed)
    before = complete(g, pre_params, tokenizer, prompts, key, cfg.sampling)
    after = complete(g, sft_params, tokenizer, prompts, key, cfg.sampling)

    others = {name: r for name, r in (("grpo", grpo), ("dpo", dpo), ("rlaif", rlaif))
              if r is not None}

    def last(hist, name):
        vals = [r[name] for r in hist if name in r]
        return vals[-1] if vals else float("nan")

    summary = {
        "pretrain": {"val_loss_start": [r["val_loss"] for r in pre_hist if "val_loss" in r][0],
                     "val_loss": last(pre_hist, "val_loss"), "format_rate": format_rate(task, before)},
        "sft": {"val_loss": last(sft_hist, "val_loss"), "format_rate": format_rate(task, after)},
        "preferences": {k: prefs[k] for k in ("label_gold_agreement",
                                              "labeler_labeler_agreement") if k in prefs},
        "reward": {k: rm[k] for k in ("val_accuracy", "val_gold_accuracy",
                                      "labels_gold_agreement", "pearson_gold")},
        **({} if ai is None else {"rlaif": {
            "labels": {k: v for k, v in ai.items() if k != "constitution"},
            "reward": {k: ai_rm[k] for k in ("val_gold_accuracy", "pearson_gold")}}}),
        "rlhf": {**{k: rl[k] for k in ("sft", "best_of_n", "ppo", "n")},
                 "best_of_n_curve": rl.get("best_of_n_curve", {}),
                 **{name: {k: v for k, v in r.items() if k not in ("samples", "points")}
                    for name, r in others.items()}},
        "seconds": times,
        "samples": [{"prompt": p, "pretrained": b, "sft": a}
                    for p, b, a in zip(prompts, before, after)],
        "rlhf_samples": [{**s, **{name: r["samples"][i] for name, r in others.items()}}
                         for i, s in enumerate(rl["samples"])],
    }
    # Matched KL: PPO's held-out path read where each other method ended.
    ppo_history = read_metrics(out / "ppo" / "metrics.jsonl")
    path = [(0.0, rl["sft"]["gold"])] + [(r["eval_kl"], r["eval_gold"]) for r in ppo_history
                                         if "eval_gold" in r]
    summary["rlhf"]["ppo_gold_at_kl"] = {
        name: along_path(path, summary["rlhf"][name]["kl"])
        for name in ("best_of_n", *others)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "samples.txt", "".join(
        f"{s['prompt']!r}\n  pretrained: {s['pretrained']!r}\n  sft:        {s['sft']!r}\n"
        for s in summary["samples"]) + "\n" + "".join(
        f"{s['prompt']!r}\n  sft:        {s['sft']!r}\n  best-of-{rl['n']}: {s['best_of_n']!r}\n"
        f"  ppo:        {s['ppo']!r}\n" + "".join(f"  {name + ':':<11} {s[name]!r}\n"
                                                for name in others)
        for s in summary["rlhf_samples"]))
    paths = {}
    if rlaif is not None:  # RLAIF is PPO too: its held-out path, beside PPO's
        paths["RLAIF, through training"] = path[:1] + [
            (r["eval_kl"], r["eval_gold"]) for r in read_metrics(out / "rlaif" / "metrics.jsonl")
            if "eval_gold" in r]
    plot_kl_gold(summary["rlhf"], ppo_history, out / "kl_gold.png", paths)
    echo(format_summary(summary, cfg.show, out))
    return summary


def plot_kl_gold(rl: dict, ppo_history: list[dict], path: str | Path,
                 paths: dict[str, list[tuple[float, float]]] | None = None) -> None:
    """Every policy of the pipeline in the (KL to SFT, gold) plane, the plane in which RLHF
    methods are compared (Gao et al. 2023): best-of-n as a curve over n (its KL by formula),
    PPO's path through training (its held-out evaluations), GRPO, DPO and RLAIF where they ended,
    and any further `paths` ({label: [(kl, gold), ...]}, e.g. DPO runs through training)."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    curve = rl.get("best_of_n_curve") or {str(rl["n"]): rl["best_of_n"]}
    ns = sorted(curve, key=int)
    ax.plot([curve[m]["kl"] for m in ns], [curve[m]["gold"] for m in ns], "o--", color="gray",
            label="best-of-n (KL by formula)")
    for m in ns:
        ax.annotate(f"n={m}", (curve[m]["kl"], curve[m]["gold"]), xytext=(4, -10),
                    textcoords="offset points", fontsize=7, color="gray")
    evals = [r for r in ppo_history if "eval_gold" in r]
    ax.plot([rl["sft"]["kl"]] + [r["eval_kl"] for r in evals],
            [rl["sft"]["gold"]] + [r["eval_gold"] for r in evals], "s-", color="C1", ms=4,
            label="PPO, through training")
    ax.plot(rl["sft"]["kl"], rl["sft"]["gold"], "k*", ms=12, label="SFT")
    for key, name, style in (("grpo", "GRPO", "C2D"), ("dpo", "DPO", "C3^"),
                             ("rlaif", "RLAIF (PPO, AI labels)", "C4P")):
        if key in rl:
            ax.plot(rl[key]["kl"], rl[key]["gold"], style, ms=9, label=name)
    for i, (label, points) in enumerate((paths or {}).items()):
        ax.plot(*zip(*points), "^-", color=f"C{4 + i}", ms=5, label=label)
    ax.set_xlabel("KL to SFT (nats)")
    ax.set_ylabel("gold reward (held-out prompts)")
    ax.set_title("gold reward bought with KL")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def format_summary(summary: dict, show: int, out: Path) -> str:
    """The tables and side-by-side samples printed at the end of the pipeline."""
    pre, post, rm, rl = summary["pretrain"], summary["sft"], summary["reward"], summary["rlhf"]
    n = rl["n"]
    lines = [
        "",
        "stage        val loss (nats/char)   follows demo format",
        f"pretrained   {pre['val_loss']:>8.3f} (from {pre['val_loss_start']:.2f})   "
        f"{pre['format_rate']:>10.0%}",
        f"SFT          {post['val_loss']:>8.3f} (on demos)     {post['format_rate']:>10.0%}",
        "",
        f"reward model: orders held-out pairs like the gold reward {rm['val_gold_accuracy']:.0%} "
        f"of the time (its training labels: {rm['labels_gold_agreement']:.0%}); "
        f"correlation with gold {rm['pearson_gold']:.2f}",
        "",
    ]
    if "rlaif" in summary:
        ai, ai_rm = summary["rlaif"]["labels"], summary["rlaif"]["reward"]
        lines += [
            f"AI labeler (a judge model, by the constitution): follows the gold order on "
            f"{ai['ai_gold_agreement']:.0%} of the {ai['pairs']} pairs, the human labels on "
            f"{ai['human_gold_agreement']:.0%}; agrees with the humans on "
            f"{ai['ai_human_agreement']:.0%}",
            "  each principle alone: " + "; ".join(
                f"{v:.0%} {k!r}" for k, v in ai["principle_gold_agreement"].items()),
            f"  reward model on the AI labels: orders held-out pairs like the gold reward "
            f"{ai_rm['val_gold_accuracy']:.0%} of the time (on the human labels "
            f"{rm['val_gold_accuracy']:.0%})",
            ""]
    lines += [
        "policy        gold reward   reward-model score   KL to SFT (nats)   format   rating "
        "agrees   length",
    ]
    for key, name in (("sft", "SFT"), ("best_of_n", f"best-of-{n}"), ("ppo", "PPO"),
                      ("grpo", "GRPO"), ("dpo", "DPO"), ("rlaif", "RLAIF")):
        if key not in rl:
            continue
        r = rl[key]
        kl = f"{r['kl']:.2f}" + (" (formula)" if key == "best_of_n" else "")
        rating = f"{r['rating']:.0%}" if "rating" in r else "-"  # older run folders
        lines.append(f"{name:<13} {r['gold']:>11.3f}   {r['score']:>18.3f}   {kl:>16}   "
                     f"{r['format']:>6.0%}   {rating:>13}   {r['length']:>6.1f}")
    others = [k for k in ("grpo", "dpo", "rlaif") if k in rl]
    names = {"best_of_n": f"best-of-{n}", "grpo": "GRPO", "dpo": "DPO", "rlaif": "RLAIF"}
    at_kl = rl.get("ppo_gold_at_kl", {})
    if at_kl:
        lines += ["", "gold at matched KL (PPO read off its held-out path, linear between "
                  "evaluations):"]
        lines += [f"  {names[k]:<11} {rl[k]['gold']:.3f}   PPO "
                  + ("never got that far" if v is None else f"{v:.3f}")
                  + f"   at KL {rl[k]['kl']:.2f}" for k, v in at_kl.items()]
    lines += ["", f"prompt -> SFT | best-of-{n} | PPO"
              + "".join(f" | {k.upper()}" for k in others) + " (held-out prompts)"]
    for s in summary["rlhf_samples"][:show]:
        lines.append(f"  {s['prompt']!r}")
        lines.append(f"     SFT:        {s['sft']!r}")
        lines.append(f"     best-of-{n:<3} {s['best_of_n']!r}")
        lines.append(f"     PPO:        {s['ppo']!r}")
        for k in others:
            lines.append(f"     {k.upper() + ':':<11} {s[k]!r}")
    secs = ", ".join(f"{k} {v:.0f}s" for k, v in summary["seconds"].items())
    lines += ["", f"time per stage: {secs}",
              f"run folder: {out}  (curves: kl_gold.png, */loss.png, ppo/rlhf.png, "
              "ppo/gold_vs_score.png"
              + (", grpo/grpo.png" if "grpo" in rl else "")
              + (", dpo/dpo.png" if "dpo" in rl else "")
              + (", ai_preferences/summary.json" if "rlaif" in rl else "")
              + "; all samples: samples.txt)"]
    return "\n".join(lines)
