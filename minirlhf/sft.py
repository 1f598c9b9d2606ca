"""Supervised fine-tuning: behavioural cloning from demonstrations (step 2 of the recipe).

"Collect demonstration data and train a supervised policy ... Same loss function as
pretraining" (deck "Large Language Models and RL from Human Feedback", slide "Give specific
demonstrations of what we want"; deck "Reinforcement Learning for and with Foundation
Models", slide "Case Study: ChatGPT -- Supervised Fine Tuning (SFT)": dialog -> behavioural
cloning). The only difference from pretraining is *which* tokens are targets: the
response (and its EOS), never the prompt, which the user -- not the policy -- writes. So this
module builds that mask and calls pretraining's train step and loop unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from minirlhf.checkpoint import load_model
from minirlhf.configs import check_positive_ints, to_dict
from minirlhf.envs import make_task
from minirlhf.generate import SamplingConfig, generate
from minirlhf.optim import OptimConfig
from minirlhf.lm_training import LMBatch, LMTrainConfig, train_lm, trim
from minirlhf.tokenizer import PAD_ID, CharTokenizer


@dataclass(frozen=True)
class SFTConfig(LMTrainConfig):
    """Fine-tuning a pretrained model on the task's demonstrations."""

    init: str = "runs/pretrain"
    """Run folder of the pretrained model to start from."""
    steps: int = 200
    """Number of optimiser updates."""
    batch_size: int = 32
    """Demonstrations per update."""
    eval_every: int = 50
    """Compute the validation loss every this many steps (and at the end)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint every this many steps (and at the end)."""
    n_train: int = 2_000
    """Demonstrations to train on."""
    n_val: int = 256
    """Held-out demonstrations for the validation loss."""
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, warmup_steps=20))
    """The optimiser (a smaller learning rate than pretraining: we fine-tune)."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "n_train", "n_val")
        # Accept a Path too, stored as text so the config stays JSON (and compares equal).
        object.__setattr__(self, "init", os.fspath(self.init))


def sft_data(tokenizer: CharTokenizer, pairs: list[tuple[str, str]], length: int) -> LMBatch:
    """BOS + prompt + response + EOS per demonstration, right-padded to `length`.

    loss_mask is True on the response and its EOS only: the prompt is context, not a target.
    """
    n = len(pairs)
    tokens = np.full((n, length), PAD_ID, np.int32)
    mask = np.zeros((n, length), bool)
    loss_mask = np.zeros((n, length), bool)
    for i, (prompt, response) in enumerate(pairs):
        p = tokenizer.encode(prompt, bos=True)
        r = tokenizer.encode(response, eos=True)
        if len(p) + len(r) > length:
            raise ValueError(f"demonstration {i} ({prompt!r} -> {response!r}) has "
                             f"{len(p) + len(r)} tokens, more than the model's max_len={length}")
        tokens[i, :len(p) + len(r)] = p + r
        mask[i, :len(p) + len(r)] = True
        loss_mask[i, len(p):len(p) + len(r)] = True
    return LMBatch(tokens, mask, loss_mask)


def sft(cfg: SFTConfig, run_dir: str | Path, stop_after: int | None = None):
    """Fine-tune the model in `cfg.init` on its task's demonstrations.

    Returns (graphdef, params, tokenizer, history).
    """
    if not (Path(cfg.init) / "checkpoints").is_dir():
        raise FileNotFoundError(f"SFTConfig.init={cfg.init!r} is not a run folder with "
                                "checkpoints; run `minirlhf pretrain` first or point init at one")
    graphdef, params, tokenizer, pre_meta = load_model(cfg.init)
    task = make_task(pre_meta["task"])
    length = pre_meta["model"]["max_len"]
    train = trim(sft_data(tokenizer, task.demonstrations(cfg.n_train, seed=cfg.seed), length))
    val = trim(sft_data(tokenizer, task.demonstrations(cfg.n_val, seed=cfg.seed + 10_000), length))
    meta = {**pre_meta, "stage": "sft", "config": to_dict(cfg)}
    params, history = train_lm(run_dir, cfg, graphdef, params, train, val, meta, "sft",
                               stop_after)
    return graphdef, params, tokenizer, history


def complete(graphdef, params, tokenizer: CharTokenizer, prompts: list[str], key,
             cfg: SamplingConfig) -> list[str]:
    """Sample one completion per prompt (text in, text out), left-padding the prompts."""
    tokens, mask = tokenizer.encode_batch(prompts, bos=True, padding="left")
    gen = generate(graphdef, params, tokens, mask, key, cfg)
    return tokenizer.decode_batch(np.asarray(gen.tokens), np.asarray(gen.mask))


def format_rate(task, completions: list[str]) -> float:
    """Fraction of completions that follow the demonstrations' format."""
    return float(np.mean([task.follows_format(c) for c in completions]))
