import os

# Progress bars would only clutter test logs.
os.environ.setdefault("MINIRLHF_QUIET", "1")
# The CLI keeps compiled programs in a persistent cache; tests must not fill the user's.
os.environ.setdefault("MINIRLHF_CACHE_DIR", "")

import jax  # noqa: E402
import pytest  # noqa: E402

from minirlhf.envs import make_task  # noqa: E402
from minirlhf.model import ModelConfig, init_model  # noqa: E402
from minirlhf.tokenizer import CharTokenizer  # noqa: E402


@pytest.fixture(scope="session")
def task():
    return make_task("reviews")


@pytest.fixture(scope="session")
def tokenizer(task):
    return CharTokenizer(task.alphabet)


@pytest.fixture(scope="session")
def small_model(tokenizer):
    """A small random model: (graphdef, params)."""
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size, max_len=64, d_model=32, n_heads=4,
                      n_layers=2)
    return init_model(cfg, jax.random.key(0))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The tiny pipeline through the CLI, stopped after the reward model and then re-run to
    the end (as if interrupted there). Returns (exit code, run folder, facts seen between
    the two calls)."""
    from minirlhf.cli import main

    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["pipeline", "--preset", "tiny", "--out", str(out), "--pretrain.steps", "20"]
    first = main(argv + ["--stop_after", "reward"])
    facts = {"first_code": first, "ppo_after_stop": (out / "ppo").exists(),
             "reward_checkpoints": sorted(p.name for p in (out / "reward" / "checkpoints")
                                          .iterdir())}
    return main(argv), out, facts
