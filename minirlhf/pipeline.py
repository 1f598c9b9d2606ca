"""The main job: pretraining -> SFT -> samples, with a summary (layer 3).

Each stage writes its own run folder under the pipeline's folder and checkpoints as it goes,
so running the pipeline again resumes an interrupted stage and skips finished ones. Later
issues add the preference data, reward model and PPO stages of the ChatGPT recipe.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import jax

from minirlhf.configs import check_positive_ints, override, to_dict
from minirlhf.envs import make_task
from minirlhf.generate import SamplingConfig
from minirlhf.logging import atomic_write_text
from minirlhf.pretrain import PretrainConfig, pretrain
from minirlhf.sft import SFTConfig, complete, format_rate, sft


@dataclass(frozen=True)
class PipelineConfig:
    """The whole recipe, one stage after the other."""

    seed: int = 0
    """Seed of the sample prompts and their sampling (each stage has its own seed too)."""
    n_samples: int = 64
    """Held-out prompts to sample completions for, before and after SFT."""
    show: int = 6
    """How many of those completions to print side by side."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    """Stage 1: pretraining."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Stage 2: supervised fine-tuning (its `init` is set to the pretraining stage's folder)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How the summary samples completions."""

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
        "n_samples": 8, "show": 3, "sampling.max_new_tokens": 48,
    },
}


def preset(name: str) -> PipelineConfig:
    """The PipelineConfig of a named preset ("default", "tiny")."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
    return override(PipelineConfig(), PRESETS[name])


def run_pipeline(cfg: PipelineConfig, out: str | Path, echo=print) -> dict:
    """Run pretraining and SFT into `out`, sample from both, and print a summary.

    Writes out/pretrain/, out/sft/ (each a run folder), out/summary.json and out/samples.txt.
    Returns the summary as a dict.
    """
    out = Path(out)
    task = make_task(cfg.pretrain.task)
    # Refuse a sampling budget the model cannot hold now, not after minutes of training.
    needed = 1 + task.max_prompt_chars + cfg.sampling.max_new_tokens
    if needed > cfg.pretrain.model.max_len:
        raise ValueError(
            f"sampling.max_new_tokens={cfg.sampling.max_new_tokens} plus the task's longest "
            f"prompt ({task.max_prompt_chars} characters + BOS) needs {needed} positions, more "
            f"than pretrain.model.max_len={cfg.pretrain.model.max_len}")
    out.mkdir(parents=True, exist_ok=True)
    sft_cfg = dataclasses.replace(cfg.sft, init=str(out / "pretrain"))

    echo("[1/2] pretraining on the task corpus")
    g, pre_params, tokenizer, pre_hist = pretrain(cfg.pretrain, out / "pretrain")
    echo("[2/2] supervised fine-tuning on demonstrations")
    g, sft_params, _, sft_hist = sft(sft_cfg, out / "sft")

    atomic_write_text(out / "pipeline_config.json",
                      json.dumps(to_dict(dataclasses.replace(cfg, sft=sft_cfg)), indent=2))
    prompts = task.prompts(cfg.n_samples, seed=cfg.seed + 777)
    key = jax.random.key(cfg.seed)
    before = complete(g, pre_params, tokenizer, prompts, key, cfg.sampling)
    after = complete(g, sft_params, tokenizer, prompts, key, cfg.sampling)

    def last(hist, name):
        vals = [r[name] for r in hist if name in r]
        return vals[-1] if vals else float("nan")

    summary = {
        "pretrain": {"val_loss_start": [r["val_loss"] for r in pre_hist if "val_loss" in r][0],
                     "val_loss": last(pre_hist, "val_loss"), "format_rate": format_rate(task, before)},
        "sft": {"val_loss": last(sft_hist, "val_loss"), "format_rate": format_rate(task, after)},
        "samples": [{"prompt": p, "pretrained": b, "sft": a}
                    for p, b, a in zip(prompts, before, after)],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "samples.txt", "".join(
        f"{s['prompt']!r}\n  pretrained: {s['pretrained']!r}\n  sft:        {s['sft']!r}\n"
        for s in summary["samples"]))
    echo(format_summary(summary, cfg.show, out))
    return summary


def format_summary(summary: dict, show: int, out: Path) -> str:
    """The table and side-by-side samples printed at the end of the pipeline."""
    pre, post = summary["pretrain"], summary["sft"]
    lines = [
        "",
        "stage        val loss (nats/char)   follows demo format",
        f"pretrained   {pre['val_loss']:>8.3f} (from {pre['val_loss_start']:.2f})   "
        f"{pre['format_rate']:>10.0%}",
        f"SFT          {post['val_loss']:>8.3f} (on demos)     {post['format_rate']:>10.0%}",
        "",
        "prompt -> completion before SFT | after SFT",
    ]
    for s in summary["samples"][:show]:
        lines.append(f"  {s['prompt']!r}")
        lines.append(f"     pretrained: {s['pretrained']!r}")
        lines.append(f"     sft:        {s['sft']!r}")
    lines.append("")
    lines.append(f"run folder: {out}  (loss curves: */loss.png, all samples: samples.txt)")
    return "\n".join(lines)

