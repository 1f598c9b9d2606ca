import os
from pathlib import Path

# Progress bars would only clutter test logs.
os.environ.setdefault("MINIRLHF_QUIET", "1")
# The CLI keeps compiled programs in a persistent cache; tests must not fill the user's.
os.environ.setdefault("MINIRLHF_CACHE_DIR", "")

import jax  # noqa: E402
import pytest  # noqa: E402

try:  # pytest-xdist is optional: the suite also runs in one process without it
    from xdist.scheduler import LoadFileScheduling
except ImportError:
    LoadFileScheduling = None

from minirlhf.envs import make_task  # noqa: E402
from minirlhf.model import ModelConfig, init_model  # noqa: E402
from minirlhf.tokenizer import CharTokenizer  # noqa: E402


# With -n 2 (the README's command) pytest-xdist runs the suite in two worker processes. Each
# group below runs whole on one worker, so a module's expensive fixtures (a trained model, a
# compiled step) are built once, not once per worker: a group is a test file (xdist's
# `--dist loadfile`, set in pyproject), except that each lecture notebook is a group of its
# own (together the lectures are a third of the suite; as one file they kept one worker busy
# alone at the end) and the files sharing the session's `tiny_pipeline` run form one group
# (built once, not on both workers).
SHARED_GROUPS = {"test_cli.py": "tiny_pipeline", "test_rlhf.py": "tiny_pipeline",
                 "test_rlaif.py": "tiny_pipeline"}
LONG_FIRST = ("test_lectures.py", "test_cli.py", "test_rlhf.py", "test_grpo.py",
              "test_training.py", "test_generate.py", "test_ppo.py", "test_parallel.py",
              "test_trex.py", "test_assignments.py", "test_dpo.py")
"""Files that take a minute or more on 2 cores (`--durations`), handed out first so that the
short files fill in around them at the end; the rest keep pytest's order. Only the schedule
depends on this list, never a result."""


def _group(nodeid: str) -> str:
    """The schedule group of a test's node id (see above)."""
    if "::test_lecture_runs[" in nodeid:
        return nodeid
    file = nodeid.split("::", 1)[0]
    return SHARED_GROUPS.get(Path(file).name, file)


if LoadFileScheduling is not None:
    class GroupScheduling(LoadFileScheduling):
        """xdist's loadfile schedule with the groups above (`_split_scope` maps a test's node
        id to its group; groups go to the workers in collection order, see
        `--no-loadscope-reorder`)."""

        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    def _dist_asked(config) -> bool:
        args = list(config.invocation_params.args) + os.environ.get("PYTEST_ADDOPTS", "").split()
        return any(str(a).startswith("--dist") for a in args)

    def pytest_configure(config):
        # `--dist loadfile --no-loadscope-reorder` used to be addopts in pyproject.toml,
        # which made pytest-xdist a hard requirement; they are the default here instead.
        if not _dist_asked(config):
            config.option.loadscopereorder = False

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown when `-p no:xdist`
    def pytest_xdist_make_scheduler(config, log):
        # `-n N` alone means "load" to xdist; this suite's default is its grouped loadfile.
        dist = config.getvalue("dist")
        if dist == "loadfile" or (dist == "load" and not _dist_asked(config)):
            return GroupScheduling(config, log)
        return None  # another --dist mode asked for on the command line: xdist's own


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


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
