"""The R1-Zero job: pretrain a base model, then GRPO on a rule-based reward (layer 3).

    base model (pretraining on an imperfect corpus) -> GRPO with the task's verifier

DeepSeek-R1-Zero (deck "Large Language Models and RL from Human Feedback", slide
"DeepSeek-R1-Zero") skipped supervised fine-tuning: RL with "accuracy rewards" and "format
rewards" straight on the base model. This job does the same on a verifiable task (by
default `envs.arithmetic`), and ends with a table of the base model against the GRPO policy
on held-out problems -- pass@1, pass@k, format and length -- on problems like the training
ones and on harder ones (one more digit than ever trained on), with samples side by side.

Each stage resumes like the ChatGPT pipeline's: a finished pretraining is reused, an
interrupted GRPO run carries on from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax

from minirlhf.checkpoint import load_model
from minirlhf.configs import check_positive_ints, check_same_config, to_dict
from minirlhf.envs import make_task
from minirlhf.evaluation import VerifierEvaluator
from minirlhf.grpo import GRPOConfig, train_grpo
from minirlhf.logging import atomic_write_text, say
from minirlhf.model import ModelConfig
from minirlhf.optim import OptimConfig
from minirlhf.pretrain import PretrainConfig, pretrain


def _arithmetic_pretraining() -> PretrainConfig:
    # Rotary positions: a column's digits sit at the same *distance* from the operator in
    # every problem, whatever the operands' lengths, which relative positions express.
    return PretrainConfig(
        task="arithmetic", steps=1500, batch_size=32, n_train=20_000, n_val=256,
        eval_every=500, checkpoint_every=500,
        model=ModelConfig(vocab_size=34, max_len=96, positions="rope"),
        optim=OptimConfig(lr=3e-3, warmup_steps=50))


@dataclass(frozen=True)
class R1ZeroConfig(GRPOConfig):
    """GRPO on a verifiable task, from a base model this job pretrains (or `init`)."""

    task: str = "arithmetic"
    """The verifiable text task (see minirlhf.envs.TASKS); with `init`, it must be the
    task that model was trained on."""
    init: str = ""
    """Run folder of a base model to start from; empty: pretrain one into OUT/base."""
    pretrain: PretrainConfig = field(default_factory=_arithmetic_pretraining)
    """The base model's pretraining (when `init` is empty); its task is `task`."""
    harder_max_new_tokens: int = 80
    """Response budget on the harder held-out problems (longer operands, longer answers)."""
    show: int = 6
    """Held-out problems to print with both models' answers."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "harder_max_new_tokens", "show")

    def grpo(self, init: str) -> GRPOConfig:
        """The GRPO stage's own config, starting from `init`."""
        names = {f.name for f in dataclasses.fields(GRPOConfig)}
        return GRPOConfig(**{**{n: getattr(self, n) for n in names}, "init": init})


def run_r1_zero(cfg: R1ZeroConfig, out: str | Path, echo=say,
                stop_after: int | None = None) -> dict:
    """Pretrain (unless cfg.init), run GRPO, evaluate both models, print the summary.

    Writes out/base/ (pretraining, if any), out/grpo/ (the GRPO run folder), out/summary.json
    and out/samples.txt. Returns the summary.

    Args:
        stop_after: stop GRPO after this many iterations (as if interrupted).
    """
    out = Path(out)
    task = make_task(cfg.task)
    if not hasattr(task, "verify") or not hasattr(task, "held_out_prompts"):
        raise ValueError(f"R1ZeroConfig.task={cfg.task!r} has no verifier (verify and "
                         "held_out_prompts); GRPO with a reward model runs in the ChatGPT "
                         "pipeline instead")
    P = 1 + task.max_prompt_chars
    if cfg.init:
        if not (Path(cfg.init) / "checkpoints").is_dir():
            raise FileNotFoundError(f"R1ZeroConfig.init={cfg.init!r} is not a run folder "
                                    "with checkpoints")
        _, _, _, meta = load_model(cfg.init)
        if meta["task"] != cfg.task:
            raise ValueError(f"R1ZeroConfig.init={cfg.init!r} was trained on task "
                             f"{meta['task']!r}, not R1ZeroConfig.task={cfg.task!r}")
        max_len = meta["model"]["max_len"]
    else:
        max_len = cfg.pretrain.model.max_len
    # Refuse a budget the model cannot hold now, not after minutes of training.
    for name, n in (("max_new_tokens", cfg.max_new_tokens),
                    ("harder_max_new_tokens", cfg.harder_max_new_tokens)):
        if P + n > max_len:
            raise ValueError(f"R1ZeroConfig.{name}={n} plus the task's longest prompt "
                             f"({P} tokens with BOS) exceeds the model's max_len={max_len}")
    # A GRPO run already in `out` resumes only with the same config: refuse another one now,
    # before this run's config is written over the old one's.
    check_same_config(out / "grpo", cfg.grpo(cfg.init or str(out / "base")))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "r1_zero_config.json", json.dumps(to_dict(cfg), indent=2))
    times = {}
    init = cfg.init
    if not init:
        echo("[1/2] pretraining the base model on the task's corpus")
        t = time.perf_counter()
        pretrain(dataclasses.replace(cfg.pretrain, task=cfg.task), out / "base")
        times["pretrain"] = round(time.perf_counter() - t, 1)
        init = str(out / "base")
    echo("[2/2] GRPO with the task's rule-based reward")
    t = time.perf_counter()
    graphdef, params, summary = train_grpo(cfg.grpo(init), out / "grpo", task=task, echo=echo,
                                           stop_after=stop_after)
    times["grpo"] = round(time.perf_counter() - t, 1)
    if not summary:
        return {}

    base_graphdef, base_params, tokenizer, _ = load_model(init)
    base_params = jax.device_get(base_params)  # host copies, as `params`: one compilation
    harder = VerifierEvaluator(task, tokenizer, cfg.n_eval, cfg.pass_k,
                               cfg.harder_max_new_tokens, cfg.seed, harder=True)
    result = {
        "held_out": {"base": summary["base"], "grpo": summary["grpo"]},
        "harder": {"base": harder(base_graphdef, base_params), "grpo": harder(graphdef, params)},
        "prompts": {"held_out": task.held_out_prompts(cfg.n_eval, seed=cfg.seed + 777),
                    "harder": harder.prompts},
        "k": cfg.pass_k, "seconds": times,
    }
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2))
    atomic_write_text(out / "samples.txt", "".join(
        f"{p!r}\n  base: {a!r}\n  grpo: {b!r}\n" for p, a, b in
        zip(result["prompts"]["held_out"], result["held_out"]["base"]["samples"],
            result["held_out"]["grpo"]["samples"])))
    echo(format_summary(result, cfg.show, out))
    return result


def format_summary(result: dict, show: int, out: Path) -> str:
    """The table and side-by-side samples printed at the end of the job."""
    k = result["k"]
    lines = ["", f"held-out problems ({len(result['prompts']['held_out'])}, {k} samples "
             "each)      pass@1   pass@" + f"{k:<4}format   length (chars)"]
    for part, title in (("held_out", "like the training problems"),
                        ("harder", "harder: one more digit than trained on")):
        lines.append(f"  {title}")
        for name, label in (("base", "base model"), ("grpo", "GRPO")):
            r = result[part][name]
            lines.append(f"    {label:<31}{r['pass@1']:>7.1%}{r[f'pass@{k}']:>9.1%}"
                         f"{r['format']:>9.1%}{r['length']:>9.1f}")
    lines += ["", "prompt -> base | GRPO (first sample, held-out problems)"]
    for p, a, b in list(zip(result["prompts"]["held_out"], result["held_out"]["base"]["samples"],
                            result["held_out"]["grpo"]["samples"]))[:show]:
        lines += [f"  {p!r}", f"     base: {a!r}", f"     GRPO: {b!r}"]
    secs = ", ".join(f"{name} {v:.0f}s" for name, v in result["seconds"].items())
    lines += ["", f"time per stage: {secs}",
              f"run folder: {out}  (curves: grpo/grpo.png; all samples: samples.txt)"]
    return "\n".join(lines)
