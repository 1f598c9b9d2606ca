"""Pretraining: next-token prediction on the task's corpus (step 1 of the ChatGPT recipe).

"Maximize the conditional probability [of the] next token of the given text sequence"
(deck "Large Language Models and RL from Human Feedback", slide "Learning a language model
by reading the internet!"). What is pretraining's own is here: the corpus as token rows
(every real token after BOS a target) and the fresh model; the step and the loop are the
ones every language-model stage shares (`lm_training.py`).

    graphdef, params, tokenizer, history = pretrain(PretrainConfig(), "runs/pretrain")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jax

from minirlhf.configs import check_positive_ints, to_dict
from minirlhf.lm_training import LMBatch, LMTrainConfig, train_lm, trim
from minirlhf.model import ModelConfig, init_model
from minirlhf.tokenizer import CharTokenizer


@dataclass(frozen=True)
class PretrainConfig(LMTrainConfig):
    """Pretraining on a task's corpus."""

    task: str = "reviews"
    """The text task whose corpus to read (see minirlhf.envs.TASKS)."""
    n_train: int = 20_000
    """Documents in the training corpus."""
    n_val: int = 512
    """Held-out documents for the validation loss."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The transformer to build."""

    def __post_init__(self):
        super().__post_init__()
        check_positive_ints(self, "n_train", "n_val")


def lm_data_from_texts(tokenizer: CharTokenizer, texts: list[str], length: int) -> LMBatch:
    """BOS + text + EOS for each text, right-padded to `length`; every real token after BOS
    is a target."""
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True, length=length)
    loss_mask = mask.copy()
    loss_mask[:, 0] = False  # BOS is given, never predicted
    return LMBatch(tokens, mask, loss_mask)


def pretrain(cfg: PretrainConfig, run_dir: str | Path, stop_after: int | None = None):
    """Pretrain a fresh model on the task's corpus. Returns (graphdef, params, tokenizer, history)."""
    from minirlhf.envs import make_task

    task = make_task(cfg.task)
    tokenizer = CharTokenizer(task.alphabet)
    if cfg.model.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"PretrainConfig.model.vocab_size={cfg.model.vocab_size} but the "
                         f"{cfg.task!r} tokenizer has {tokenizer.vocab_size} tokens")
    length = cfg.model.max_len
    train = lm_data_from_texts(tokenizer, task.pretrain_corpus(cfg.n_train, seed=cfg.seed), length)
    val = lm_data_from_texts(tokenizer, task.pretrain_corpus(cfg.n_val, seed=cfg.seed + 10_000),
                             length)
    train, val = trim(train), trim(val)
    graphdef, params = init_model(cfg.model, jax.random.key(cfg.seed))
    meta = {"stage": "pretrain", "task": cfg.task, "model": to_dict(cfg.model),
            "tokenizer": tokenizer.to_json(), "config": to_dict(cfg)}
    params, history = train_lm(run_dir, cfg, graphdef, params, train, val, meta, "pretrain",
                               stop_after)
    return graphdef, params, tokenizer, history
