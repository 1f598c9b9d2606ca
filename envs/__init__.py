"""Tasks the agents act in, importable as `minirlhf.envs`.

Text tasks provide a pretraining corpus, prompts and demonstrations (and, in later issues,
gold rewards and simulated labelers). Look one up by name with `make_task`.
"""

from minirlhf.envs.reviews import ReviewTask

TASKS = {"reviews": ReviewTask}


def make_task(name: str):
    """The text task registered under `name` (e.g. "reviews")."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[name]()


__all__ = ["ReviewTask", "TASKS", "make_task"]
