"""minirlhf: reinforcement learning from human feedback, from scratch, in pure-functional JAX.

Layer 1 (pure functions of arrays): model, tokenizer, generate, distributions, losses,
parallel, optim. Layer 2 (one algorithm each): pretrain, sft. Layer 3 (loops, I/O):
checkpoint, logging, pipeline, cli. Tasks live in `minirlhf.envs`.
"""

__version__ = "0.1.0"
