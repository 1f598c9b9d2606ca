"""The `minirlhf` command. Its options are generated from the config dataclasses.

    minirlhf pipeline [--preset tiny|hacking] [--out runs/pipeline] [--rlhf.beta 0.2 ...]
    minirlhf pretrain [--out runs/pretrain] [--steps 300] [--model.d_model 64 ...]
    minirlhf sft      [--out runs/sft] [--init runs/pretrain] [--steps 200 ...]
    minirlhf sample   --run runs/pipeline/sft [--prompt "the pizza was"] [--temperature 0.7 ...]
    minirlhf preferences --init runs/sft --out prefs.jsonl [--n 1000] [--k 2] [--target_agreement 0.7]
    minirlhf reward   --init runs/sft [--preferences prefs.jsonl] [--out runs/reward] [--steps 400 ...]
    minirlhf rlhf     --init runs/sft --reward runs/reward [--out runs/rlhf] [--beta 0.05 ...]
    minirlhf dpo      --init runs/sft --preferences prefs.jsonl [--out runs/dpo] [--beta 0.3 ...]
    minirlhf grpo     [--task arithmetic] [--init runs/base] [--out runs/grpo] [--beta 0.04 ...]
    minirlhf demos    --env CartPole-v1 [--out runs/demos] [--snapshots 30 ...]
    minirlhf trex     --env CartPole-v1 [--demos runs/demos/demos.npz] [--out runs/trex ...]
    minirlhf drex     --env CartPole-v1 [--demos runs/demos/demos.npz] [--out runs/drex ...]
    minirlhf ppo      [--preset cartpole] [--env Pendulum-v1] [--num_seeds 4 ...]
    minirlhf ppo-eval --run runs/ppo [--episodes 10] [--video ep.gif] [--filmstrip ep.png]
    minirlhf assignment list | make NAME --out DIR [--no-execute] | grade NAME --submission DIR
                        [--results results.json] | validate [NAME]

Every field of a config is an option (nested fields with dots), with the field's docstring
as its help text: `minirlhf pretrain --help` lists them all.
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from minirlhf.configs import flat_fields, override

_SUPPRESS = argparse.SUPPRESS


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_options(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    """One --option per (nested) field of the config class `cls`."""
    for name, typ, default, doc in flat_fields(cls):
        if name in skip:
            continue
        # argparse %-formats help strings: a literal "%" in a docstring must be doubled.
        text = f"{doc} (default: {default!r})".replace("%", "%%")
        kwargs = {"default": _SUPPRESS, "help": text,
                  "dest": "cfg:" + name, "metavar": name.split(".")[-1].upper()}
        if typing.get_origin(typ) is typing.Literal:
            kwargs["choices"] = typing.get_args(typ)
            kwargs["metavar"] = None
        elif typ is bool:
            kwargs["type"] = _parse_bool
        elif typ in (int, float, str):
            kwargs["type"] = typ
        else:
            raise TypeError(f"{cls.__name__}.{name}: unsupported option type {typ!r}")
        parser.add_argument(f"--{name}", **kwargs)


def config_from_args(base, args: argparse.Namespace):
    """`base` with every option the user gave applied."""
    updates = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:")}
    return override(base, updates)


def build_parser() -> argparse.ArgumentParser:
    from minirlhf.generate import SamplingConfig
    from minirlhf.pipeline import PRESETS, STAGES, PipelineConfig
    from minirlhf.pretrain import PretrainConfig
    from minirlhf.sft import SFTConfig

    parser = argparse.ArgumentParser(
        prog="minirlhf", description="RLHF from scratch in JAX: pretraining, SFT, preferences, "
        "reward models, PPO, GRPO.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pipeline", help="the main job: pretrain -> SFT -> preferences -> "
                       "reward model -> PPO (-> GRPO) (-> DPO)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="runs/pipeline", help="folder for the whole run")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="starting configuration; 'tiny' finishes in well under a minute, "
                        "'hacking' runs PPO without a KL penalty (reward hacking)")
    add_config_options(p, PipelineConfig, skip={"sft.init", "reward.init", "reward.preferences",
                                                "rlhf.init", "rlhf.reward", "grpo.init",
                                                "grpo.reward", "dpo.init", "dpo.preferences",
                                                "dpo.n_val", "rlaif.judge.init"})
    p.add_argument("--stop_after", default=None, choices=STAGES,
                   help="stop once this stage is done (a re-run carries on from there)")

    p = sub.add_parser("pretrain", help="pretrain a model on a task's corpus")
    p.add_argument("--out", default="runs/pretrain", help="run folder")
    add_config_options(p, PretrainConfig)

    p = sub.add_parser("sft", help="fine-tune a pretrained model on demonstrations")
    p.add_argument("--out", default="runs/sft", help="run folder")
    add_config_options(p, SFTConfig)

    p = sub.add_parser("sample", help="sample completions from a trained model")
    p.add_argument("--run", required=True, help="run folder of a trained model")
    p.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several); default: prompts from the task")
    p.add_argument("--n", type=int, default=8, help="number of task prompts when none is given")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    add_config_options(p, SamplingConfig)

    from minirlhf.reward_model import RewardConfig

    p = sub.add_parser("preferences",
                       help="sample an SFT model and have simulated labelers compare the samples")
    p.add_argument("--init", required=True, help="run folder of the SFT model to sample")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--n", type=int, default=1000, help="comparisons to write")
    p.add_argument("--k", type=int, default=2, help="completions per comparison (2 = pairs)")
    p.add_argument("--target_agreement", type=float, default=0.7,
                   help="share of labels that follow the gold order (sets the temperature)")
    p.add_argument("--seed", type=int, default=0, help="seed of prompts, samples and labels")

    p = sub.add_parser("reward", help="train a reward model on comparisons")
    p.add_argument("--out", default="runs/reward", help="run folder")
    add_config_options(p, RewardConfig)

    from minirlhf.dpo import DPOConfig

    p = sub.add_parser("dpo", help="DPO: train the SFT policy on preference pairs directly "
                       "(no reward model, no sampling)")
    p.add_argument("--out", default="runs/dpo", help="run folder")
    add_config_options(p, DPOConfig)

    p = sub.add_parser("ai-label", help="RLAIF: a judge model re-labels a preference file by "
                       "a written constitution; prints its agreement with the gold order")
    p.add_argument("--judge", required=True,
                   help="run folder of the judge model (e.g. runs/pipeline/judge, or an SFT run)")
    p.add_argument("--preferences", required=True, help="JSONL file of comparisons to re-label")
    p.add_argument("--out", required=True, help="JSONL file to write (the judge's order)")
    p.add_argument("--constitution", default="",
                   help="constitution file (see minirlhf.rlaif); default: the task's own")
    p.add_argument("--on_item_alternatives", type=int, default=3,
                   help="other items the on_item probe swaps into the prompt")

    from minirlhf.rlhf import RLHFConfig

    p = sub.add_parser("rlhf", help="PPO on a language model against a reward model")
    p.add_argument("--out", default="runs/rlhf", help="run folder")
    add_config_options(p, RLHFConfig)

    from minirlhf.r1_zero import R1ZeroConfig

    p = sub.add_parser("grpo", help="R1-Zero: pretrain a base model, then GRPO with a "
                       "rule-based reward (answer and format) on a verifiable task")
    p.add_argument("--out", default="runs/grpo", help="folder for the whole run")
    p.add_argument("--stop_after", type=int, default=None,
                   help="stop GRPO after this many iterations (a re-run carries on)")
    add_config_options(p, R1ZeroConfig, skip={"reward", "pretrain.task"})

    from minirlhf.ppo import PPOConfig
    from minirlhf.ppo import PRESETS as PPO_PRESETS

    p = sub.add_parser("ppo", help="train PPO agents on a gym task (JAX port or gymnasium id)")
    p.add_argument("--out", default="runs/ppo", help="run folder (overwritten)")
    p.add_argument("--preset", default="cartpole", choices=sorted(PPO_PRESETS),
                   help="starting configuration (task and tuned hyperparameters)")
    add_config_options(p, PPOConfig)

    from minirlhf.demos import DemosConfig
    from minirlhf.drex import DREXConfig
    from minirlhf.trex import TREXConfig

    p = sub.add_parser("demos", help="train a PPO learner on a gym task and save demonstrations "
                       "of graded quality from its snapshots (for trex and drex)")
    p.add_argument("--out", default="runs/demos", help="folder for demos.npz and demos.png")
    add_config_options(p, DemosConfig, skip={"learner"})
    rl_fixed = {"rl.env", "rl.seed", "rl.num_seeds", "rl.backend"}  # set from the job's own
    p = sub.add_parser("trex", help="T-REX: learn a reward from ranked demonstrations, then "
                       "PPO on it; compared with the best demonstration and behavioural cloning")
    p.add_argument("--out", default="runs/trex", help="run folder")
    add_config_options(p, TREXConfig, skip=rl_fixed)
    p = sub.add_parser("drex", help="D-REX: behavioural cloning on a few demonstrations, "
                       "rankings by injected noise, then T-REX's reward learning and PPO")
    p.add_argument("--out", default="runs/drex", help="run folder")
    add_config_options(p, DREXConfig, skip=rl_fixed)

    p = sub.add_parser("ppo-eval", help="evaluate a trained PPO agent; optionally film it")
    p.add_argument("--run", required=True, help="run folder written by `minirlhf ppo`")
    p.add_argument("--episodes", type=int, default=10, help="episodes to average over")
    p.add_argument("--seed", type=int, default=1000, help="seed of the first episode")
    p.add_argument("--agent", type=int, default=None,
                   help="which of the run's agents (default: best final return)")
    p.add_argument("--stochastic", action="store_true",
                   help="sample actions instead of taking the most likely one")
    p.add_argument("--video", default=None, help="write the first episode as a GIF here")
    p.add_argument("--filmstrip", default=None,
                   help="write frames of the first episode side by side as a PNG here")
    p = sub.add_parser("assignment", help="course assignments built from the reference code, "
                       "and their autograder (see minirlhf/assignments)")
    asub = p.add_subparsers(dest="action", required=True)
    asub.add_parser("list", help="the assignments, their parts and points")
    a = asub.add_parser("make", help="write an assignment's folder for students")
    a.add_argument("name", help="assignment name (see `minirlhf assignment list`)")
    a.add_argument("--out", required=True, help="folder to write (must not hold minirlhf/)")
    a.add_argument("--no-execute", action="store_true",
                   help="do not run the lecture for the handout's outputs (seconds instead of "
                   "about 3 minutes; the handout then has no outputs)")
    a = asub.add_parser("grade", help="grade a submission: score per part, results.json (its "
                        "code runs in a separate process, as nobody when run as root; see "
                        "lectures/README.md for what that protects)")
    a.add_argument("name", help="assignment name")
    a.add_argument("--submission", required=True,
                   help="folder that contains the student's minirlhf/ package")
    a.add_argument("--results", default=None,
                   help="write Gradescope's results.json here")
    a = asub.add_parser("validate", help="check that the reference and the registered "
                        "correct variants score full marks, the student version zero, and "
                        "that the tests kill every registered wrong solution and mutant of "
                        "the reference (prints the kill rate)")
    a.add_argument("name", nargs="?", default=None, help="one assignment (default: all)")
    return parser


def _assignment(args) -> int:
    try:
        from minirlhf import assignments as asg
    except ModuleNotFoundError as err:  # a student's copy of the package leaves them out
        if err.name != "minirlhf.assignments":
            raise
        raise ValueError("this copy of minirlhf has no assignment tools (a student's copy); "
                         "use the instructor's installation") from None

    if args.action == "list":
        for a in asg.ASSIGNMENTS.values():
            print(f"{a.name:<18} {a.title} ({a.points:g} points)")
            for p in a.parts:
                where = f"{p.module}: {p.function}" if p.function else "integration"
                print(f"    {p.name:<20} {p.points:>4g}  {p.title} [{where}]")
    elif args.action == "make":
        a = asg.get_assignment(args.name)  # an unknown name fails before the lecture runs
        if not args.no_execute:
            print(f"running lecture {a.lecture} for the handout's outputs (about 3 minutes; "
                  "--no-execute skips it)", flush=True)
        out = asg.make(args.name, args.out, execute=not args.no_execute)
        print(f"assignment {args.name!r} written to {out} (see {out / 'README.md'})")
    elif args.action == "grade":
        res = asg.grade(args.name, args.submission, args.results)
        print(f"score {res['score']:g} / {asg.get_assignment(args.name).points:g}"
              + (f"; results written to {args.results}" if args.results else ""))
    elif args.action == "validate":
        names = [args.name] if args.name else list(asg.ASSIGNMENTS)
        for name in names:
            asg.get_assignment(name)  # an unknown name fails before any work
        failed, killed, total = [], 0, 0
        for name in names:
            try:
                out = asg.validate(name)
                killed, total = killed + out["killed"], total + out["mutants"]
            except AssertionError as err:
                print(err, file=sys.stderr)
                failed.append(name)
        if failed:
            print(f"not valid: {', '.join(failed)}", file=sys.stderr)
            return 1
        print(f"valid: {', '.join(names)} (mutants killed: {killed}/{total})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"minirlhf {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "assignment":
        return _assignment(args)
    import jax

    from minirlhf.parallel import enable_compilation_cache

    enable_compilation_cache()
    from minirlhf.generate import SamplingConfig
    from minirlhf.pretrain import PretrainConfig, pretrain
    from minirlhf.sft import SFTConfig, complete, format_rate, sft

    if args.command == "pipeline":
        from minirlhf.pipeline import preset, run_pipeline

        cfg = config_from_args(preset(args.preset), args)
        run_pipeline(cfg, args.out, stop_after=args.stop_after)
    elif args.command == "grpo":
        from minirlhf.r1_zero import R1ZeroConfig, run_r1_zero

        run_r1_zero(config_from_args(R1ZeroConfig(), args), args.out, stop_after=args.stop_after)
    elif args.command == "pretrain":
        cfg = config_from_args(PretrainConfig(), args)
        _, _, _, hist = pretrain(cfg, args.out)
        print(f"final validation loss {[r['val_loss'] for r in hist if 'val_loss' in r][-1]:.3f}"
              f" nats/char; run folder {args.out}")
    elif args.command == "sft":
        cfg = config_from_args(SFTConfig(), args)
        _, _, _, hist = sft(cfg, args.out)
        print(f"final validation loss {[r['val_loss'] for r in hist if 'val_loss' in r][-1]:.3f}"
              f" nats/char on demonstrations; run folder {args.out}")
    elif args.command == "preferences":
        from minirlhf.checkpoint import load_model
        from minirlhf.envs import make_task
        from minirlhf.preference_data import write_preferences
        from minirlhf.reward_model import simulate_comparisons

        if args.n <= 0 or args.k < 2:
            raise ValueError(f"--n must be positive and --k at least 2, got {args.n}, {args.k}")
        if not (Path(args.init) / "checkpoints").is_dir():
            raise FileNotFoundError(f"--init {args.init!r} is not a run folder with checkpoints")
        graphdef, params, tokenizer, meta = load_model(args.init)
        comparisons, info = simulate_comparisons(
            graphdef, params, tokenizer, make_task(meta["task"]), args.n, args.k, args.seed,
            target_agreement=args.target_agreement)
        write_preferences(args.out, comparisons)
        print(f"{len(comparisons)} comparisons written to {args.out}; labeler temperature "
              f"{info['labeler_temperature']:.3f}, labels follow the gold order "
              f"{info['label_gold_agreement']:.0%}, two labelers agree "
              f"{info['labeler_labeler_agreement']:.0%}")
    elif args.command == "reward":
        from minirlhf.reward_model import RewardConfig, train_reward_model

        cfg = config_from_args(RewardConfig(), args)
        _, _, summary = train_reward_model(cfg, args.out)
        print(f"reward model: held-out accuracy {summary['val_accuracy']:.1%} against the "
              f"labels, {summary['val_gold_accuracy']:.1%} against the gold order (the labels "
              f"themselves: {summary['labels_gold_agreement']:.1%}); correlation with gold "
              f"{summary['pearson_gold']:.2f}; run folder {args.out}")
    elif args.command == "dpo":
        from minirlhf.dpo import DPOConfig, train_dpo

        cfg = config_from_args(DPOConfig(), args)
        _, _, s = train_dpo(cfg, args.out)
        print(f"DPO: held-out implicit-reward accuracy {s['start']['val_reward_accuracy']:.1%}"
              f" -> {s['val_reward_accuracy']:.1%}, margin {s['val_reward_margin']:.3f}; "
              f"log pi(chosen) {s['start']['val_chosen_logp']:.1f} -> "
              f"{s['val_chosen_logp']:.1f}, log pi(rejected) "
              f"{s['start']['val_rejected_logp']:.1f} -> {s['val_rejected_logp']:.1f}; "
              f"run folder {args.out} (plots: loss.png, dpo.png)")
    elif args.command == "ai-label":
        from minirlhf.checkpoint import load_model
        from minirlhf.envs import make_task
        from minirlhf.rlaif import RLAIFConfig, label_file, load_constitution

        RLAIFConfig(on_item_alternatives=args.on_item_alternatives)  # checks it
        if not (Path(args.judge) / "checkpoints").is_dir():
            raise FileNotFoundError(f"--judge {args.judge!r} is not a run folder with "
                                    "checkpoints")
        task = make_task(load_model(args.judge)[3]["task"])
        constitution = load_constitution(args.constitution, task)
        r = label_file(args.judge, args.preferences, args.out, task, constitution,
                       args.on_item_alternatives)
        print(f"{r['pairs']} pairs re-labelled by the judge into {args.out}: they follow the "
              f"gold order {r['ai_gold_agreement']:.1%} of the time (the file's own labels "
              f"{r['human_gold_agreement']:.1%}); judge and file agree on "
              f"{r['ai_human_agreement']:.1%}")
        for text, v in r["principle_gold_agreement"].items():
            print(f"  {v:.1%}  {text}")
    elif args.command == "rlhf":
        from minirlhf.rlhf import RLHFConfig, train_rlhf

        cfg = config_from_args(RLHFConfig(), args)
        _, _, summary = train_rlhf(cfg, args.out)
        for key, name in (("sft", "SFT"), ("best_of_n", f"best-of-{summary['n']}"),
                          ("ppo", "PPO")):
            r = summary[key]
            print(f"{name:<12} gold {r['gold']:.3f}  reward-model score {r['score']:.3f}  "
                  f"KL to SFT {r['kl']:.2f}")
        print(f"run folder {args.out} (plots: rlhf.png, gold_vs_score.png)")
    elif args.command == "ppo":
        from minirlhf.gym_train import train_agents
        from minirlhf.ppo import PRESETS as PPO_PRESETS

        cfg = config_from_args(PPO_PRESETS[args.preset], args)
        summary = train_agents(cfg, args.out)
        finals = ", ".join(f"seed {k}: {v:.1f}" for k, v in summary["final_return"].items())
        print(f"PPO on {summary['env']} ({summary['backend']}), {summary['env_steps']:,} env "
              f"steps per agent; final mean return {finals}; run folder {args.out}")
    elif args.command in ("demos", "trex", "drex"):
        from minirlhf.demo_jobs import (drex_preset, run_demos, run_drex, run_trex,
                                        trex_preset)
        from minirlhf.demos import DEMO_PRESETS, DemosConfig

        env = getattr(args, "cfg:env", "CartPole-v1")
        if args.command == "demos":
            cfg = config_from_args(DEMO_PRESETS.get(env, DemosConfig(env=env)), args)
            run_demos(cfg, args.out)
        elif args.command == "trex":
            summary = run_trex(config_from_args(trex_preset(env), args), args.out)
        else:
            summary = run_drex(config_from_args(drex_preset(env), args), args.out)
        if args.command != "demos":
            print(f"run folder {args.out} (plots: learned_vs_true.png, rl/learning_curve.png)")
    elif args.command == "ppo-eval":
        from minirlhf.gym_train import evaluate_agent

        res = evaluate_agent(args.run, args.episodes, args.seed, args.agent,
                             not args.stochastic, args.video, args.filmstrip)
        print(f"agent seed {res['agent_seed']}: return {res['mean_return']:.1f} +- "
              f"{res['std_return']:.1f} over {args.episodes} episodes "
              f"(lengths {min(res['lengths'])}-{max(res['lengths'])})")
        for name in ("video", "filmstrip"):
            if getattr(args, name):
                print(f"{name} written to {getattr(args, name)}")
    elif args.command == "sample":
        from minirlhf.checkpoint import load_model
        from minirlhf.envs import make_task

        cfg = config_from_args(SamplingConfig(), args)
        if not Path(args.run).is_dir():
            raise FileNotFoundError(f"--run {args.run!r} is not a folder")
        graphdef, params, tokenizer, meta = load_model(args.run)
        task = make_task(meta["task"])
        prompts = args.prompt or task.prompts(args.n, seed=args.seed)
        outs = complete(graphdef, params, tokenizer, prompts, jax.random.key(args.seed), cfg)
        for prompt, text in zip(prompts, outs):
            print(f"{prompt!r} -> {text!r}")
        print(f"{format_rate(task, outs):.0%} follow the demonstrations' format")
    return 0


if __name__ == "__main__":
    sys.exit(main())
