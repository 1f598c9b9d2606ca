"""Hugging Face TRL's `GRPOTrainer` on a GPT-2 of minirlhf's size, as a CPU speed baseline.

Only benchmarks/bench_grpo.py imports this file; torch, transformers, trl and datasets are
optional benchmark extras, never dependencies of the package:

    pip install -e ".[bench]"        # or by hand: torch, then transformers trl datasets

The model is `transformers.GPT2LMHeadModel` with minirlhf's default architecture: L
pre-LayerNorm blocks of width D with H heads, a 4 x D GELU (tanh) MLP, learned positions,
an LM head tied to the token embedding, every Linear with a bias -- the same parameters as
`minirlhf.model.Transformer` -- and dropout off (minirlhf has none). The tokenizer is a
`PreTrainedTokenizerFast` over the same characters as `minirlhf.tokenizer.CharTokenizer`,
with the same ids (PAD 0, BOS 1, EOS 2, then the alphabet) and a BOS before every prompt.

The trainer runs on the CPU in float32 (`use_cpu=True`, no bf16, no gradient
checkpointing), with logging, saving and evaluation off. One GRPO iteration of
minirlhf (B prompts x G samples, one epoch of M minibatches) is, in TRL's terms,
`steps_per_generation = M` optimiser steps of `per_device_train_batch_size = B*G / M`
completions each, with no gradient accumulation: TRL samples all B*G completions in the
first of those steps, scores them (the policy's log-probs of them, since the later steps
are off-policy; the reference's, since beta > 0; the reward), and spends the M steps on
the update. `StepTimer` times each step from `on_step_begin` to `on_step_end`. torch's
thread count is measured, not assumed (`run_grpo`): each timed iteration runs with its
default and with one thread, and counts at the faster, so that TRL runs at its best on the
machine as it is at that moment.

Notation: B prompts per iteration, G completions per prompt, N completion tokens, M
gradient steps per iteration.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import transformers
import trl
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast,
                          TrainerCallback)
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

# minirlhf.tokenizer's special tokens, at the same ids.
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


@dataclass(frozen=True)
class TRLGRPOSetup:
    """The work of one iteration and the model (same meaning as in minirlhf's GRPOConfig and
    ModelConfig)."""

    prompts_per_iteration: int = 8
    """B."""
    group_size: int = 8
    """G: completions per prompt (TRL's num_generations)."""
    max_new_tokens: int = 48
    """N: every completion is exactly this long (min_new_tokens = max_new_tokens)."""
    num_minibatches: int = 2
    """M: gradient steps per iteration (TRL's steps_per_generation)."""
    beta: float = 0.04
    clip_eps: float = 0.2
    lr: float = 1e-4
    max_grad_norm: float = 1.0
    vocab_size: int = 34
    max_len: int = 128
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    seed: int = 0

    def __post_init__(self):
        rows = self.prompts_per_iteration * self.group_size
        if rows % self.num_minibatches or (rows // self.num_minibatches) % self.group_size:
            # TRL checks this too, later and in its own terms: a step holds whole groups.
            raise ValueError(f"B x G = {rows} completions must split into num_minibatches="
                             f"{self.num_minibatches} steps of whole groups of {self.group_size}")


def char_tokenizer(alphabet: str) -> PreTrainedTokenizerFast:
    """A fast tokenizer with `CharTokenizer(alphabet)`'s ids: one token per character, a BOS
    before each text, and decoding that joins characters without spaces."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    vocab.update({c: len(SPECIAL_TOKENS) + i for i, c in enumerate(alphabet)})
    # No unknown token in the vocabulary: a character outside the alphabet is an error.
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")  # per character
    tok.decoder = decoders.Fuse()  # "4", "7" -> "47", not "4 7"
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                       special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>")


def gpt2_policy(setup: TRLGRPOSetup) -> GPT2LMHeadModel:
    """GPT-2 of minirlhf's architecture and size, randomly initialised (GPT-2's init), with
    dropout off."""
    torch.manual_seed(setup.seed)
    cfg = GPT2Config(vocab_size=setup.vocab_size, n_positions=setup.max_len,
                     n_embd=setup.d_model, n_layer=setup.n_layers, n_head=setup.n_heads,
                     n_inner=4 * setup.d_model, activation_function="gelu_new",
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(cfg)


class StepTimer(TrainerCallback):
    """Wall time of each optimiser step, and a hook at the end of each iteration.

    Every `steps_per_iteration` steps, `after_iteration(i)` is called (i = 0, 1, ...) once
    the step's time is taken, so that whatever it does (bench_grpo.py runs minirlhf's
    rounds there) never counts in TRL's times.
    """

    def __init__(self, steps_per_iteration: int, after_iteration: Callable[[int], None]):
        self.steps_per_iteration, self.after_iteration = steps_per_iteration, after_iteration
        self.step_s: list[float] = []
        self._start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_s.append(time.perf_counter() - self._start)
        if len(self.step_s) % self.steps_per_iteration == 0:
            self.after_iteration(len(self.step_s) // self.steps_per_iteration - 1)


def run_grpo(setup: TRLGRPOSetup, alphabet: str, prompts: list[str],
             reward_fn: Callable[[list[str], list[str]], np.ndarray], warmup_iterations: int,
             rounds: int, iterations_per_round: int,
             between_rounds: Callable[[int], None] | None = None,
             torch_threads: int | None = None) -> dict:
    """Train with `GRPOTrainer`: a warm-up, then `rounds` rounds of `iterations_per_round`
    timed iterations, each timed at torch's default thread count and at one thread.

    Args:
        setup: the work and the model.
        alphabet: the characters of the tokenizer (minirlhf's task alphabet).
        prompts: the training prompts (TRL draws B of them per iteration, shuffled).
        reward_fn: reward_fn(prompts, completions) -> (n,) rewards, plain Python on text.
        warmup_iterations: iterations run first and not reported (the first steps of an
            eager PyTorch model are slower: allocations, thread pools).
        between_rounds: called as between_rounds(r) just before timed round r (r = 0 ..
            rounds - 1), outside TRL's timed steps.
        torch_threads: torch's intra-op threads for every iteration. None: each timed
            iteration is run twice in a row, once with torch's default (one thread per
            physical core) and once with a single thread, and counts at the faster of the
            two. On an idle machine the default is the faster; when another process holds
            a core, a second thread makes each of the model's many small ops wait for
            whichever thread is descheduled, and one thread is several times faster. Taking
            the faster of two neighbouring iterations follows the machine's load as it
            changes, and never favours minirlhf.
    Returns:
        {"timed_iteration_s": seconds of each timed iteration (M steps summed; the faster
        of its pair), "round_s": the same grouped by round, "tries": per timed iteration
        {threads: seconds}, "warmup_s", "completion_tokens": tokens per timed iteration
        (EOS included, as minirlhf counts them), "completions": completions per
        iteration, "versions", "params", "attention"}.
    """
    if warmup_iterations < 1:
        raise ValueError(f"warmup_iterations must be >= 1 (threads are set at the end of an "
                         f"iteration), got {warmup_iterations}")
    M = setup.num_minibatches
    # Quiet: no progress bars for saving and loading the model, no deprecation warnings
    # about TrainingArguments' names, no printed metrics at the end.
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    thread_counts = [torch_threads] if torch_threads is not None else \
        sorted({torch.get_num_threads(), 1}, reverse=True)
    # Each iteration's (round, threads); (None, None) in the warm-up.
    plan = [(None, None)] * warmup_iterations + [
        (r, n) for r in range(rounds) for _ in range(iterations_per_round)
        for n in thread_counts]
    iteration_s: list[float] = []

    def after_iteration(i: int) -> None:
        """Record iteration i's time, then prepare iteration i + 1: its thread count, and
        minirlhf's round before the first iteration of a round."""
        iteration_s.append(sum(timer.step_s[-M:]))
        if i + 1 == len(plan):
            return
        (r, _), (next_r, next_n) = plan[i], plan[i + 1]
        if next_n is not None:  # None: a warm-up iteration, at the threads it has
            torch.set_num_threads(next_n)
        if next_r != r and between_rounds is not None:
            between_rounds(next_r)

    timer = StepTimer(M, after_iteration)
    tokenizer = char_tokenizer(alphabet)
    model = gpt2_policy(setup)
    tokens_per_call: list[int] = []

    def reward(prompts, completions, completion_ids, **kwargs):
        # Called once per iteration with all B*G completions; the lengths are recorded so
        # that the caller can check they are all N (and count tokens per second).
        tokens_per_call.append(sum(len(ids) for ids in completion_ids))
        return [float(r) for r in reward_fn(prompts, completions)]

    reward.__name__ = getattr(reward_fn, "__name__", "reward")  # TRL names rewards by it
    with tempfile.TemporaryDirectory(prefix="bench_grpo_trl_") as out, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # TRL builds the reference model from the policy's path: save the random policy
        # there, so that both start from the same weights (as minirlhf's do).
        model_dir = f"{out}/policy"
        model.save_pretrained(model_dir)
        args = GRPOConfig(
            output_dir=out, model_init_kwargs={"dtype": torch.float32}, use_cpu=True,
            bf16=False, fp16=False,
            gradient_checkpointing=False,  # TRL's default is on: it would redo the forward
            report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no",
            disable_tqdm=True, log_completions=False, seed=setup.seed,
            dataloader_num_workers=0,
            max_steps=len(plan) * M,
            per_device_train_batch_size=setup.prompts_per_iteration * setup.group_size // M,
            gradient_accumulation_steps=1, steps_per_generation=M, num_iterations=1,
            num_generations=setup.group_size, max_completion_length=setup.max_new_tokens,
            # Exactly N tokens per completion: EOS is masked until N tokens are out.
            generation_kwargs={"min_new_tokens": setup.max_new_tokens},
            temperature=1.0, top_p=1.0, top_k=0,
            beta=setup.beta, epsilon=setup.clip_eps, epsilon_high=setup.clip_eps,
            loss_type="grpo", scale_rewards="group", mask_truncated_completions=False,
            learning_rate=setup.lr, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, adam_epsilon=1e-5, max_grad_norm=setup.max_grad_norm,
        )
        trainer = GRPOTrainer(model=model_dir, reward_funcs=reward, args=args,
                              train_dataset=Dataset.from_dict({"prompt": prompts}),
                              processing_class=tokenizer, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # it prints the final metrics even so
        trainer.train()
    if len(iteration_s) != len(plan) or len(tokens_per_call) != len(plan):
        raise RuntimeError(f"TRL ran {len(iteration_s)} iterations and scored "
                           f"{len(tokens_per_call)} batches; expected {len(plan)} of each")
    k = len(thread_counts)
    timed_s, timed_tokens = iteration_s[warmup_iterations:], tokens_per_call[warmup_iterations:]
    tries = [dict(zip(thread_counts, timed_s[j:j + k])) for j in range(0, len(timed_s), k)]
    best = [min(t.values()) for t in tries]
    return {
        "timed_iteration_s": best,
        "round_s": [best[r * iterations_per_round:(r + 1) * iterations_per_round]
                    for r in range(rounds)],
        "tries": tries,
        "warmup_s": iteration_s[:warmup_iterations],
        "completion_tokens": timed_tokens,
        "completions": setup.prompts_per_iteration * setup.group_size,
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "attention": trainer.model.config._attn_implementation,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "trl": trl.__version__},
    }
