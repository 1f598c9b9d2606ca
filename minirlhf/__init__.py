"""minirlhf: reinforcement learning from human feedback, from scratch, in pure-functional JAX.

Layer 1 (pure functions of arrays): model, tokenizer, generate, distributions, losses,
parallel, optim; beside it, the infrastructure the training loops use: configs, checkpoint,
logging. Layer 2 (one algorithm each): pretrain, sft. Layer 3 (the job): pipeline, cli.
Imports only point downward. Tasks live in `minirlhf.envs`.
"""

__version__ = "0.1.0"
