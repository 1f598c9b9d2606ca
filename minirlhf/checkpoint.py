"""Atomic, resumable checkpoints with orbax.

A checkpoint holds three items: the parameters, the optimiser state (with the step count),
and a JSON metadata record (configs, tokenizer, task) from which a later stage rebuilds the
model without being told its shape. Orbax writes each checkpoint into a temporary folder and
renames it only once complete, so an interrupted save never leaves a half-written checkpoint
that a resume could pick up. No pickle anywhere.
"""

from __future__ import annotations

import json
import logging as _stdlib_logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx

from minirlhf.configs import check_same_config
from minirlhf.model import ModelConfig, init_model
from minirlhf.tokenizer import CharTokenizer

# Orbax reports every save at INFO level; a student's terminal needs the progress bar only.
_stdlib_logging.getLogger("absl").setLevel(_stdlib_logging.WARNING)


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Saves and restores a TrainState-like pair (params, opt_state) plus JSON metadata."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                 enable_async_checkpointing=False),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def _step(self, step: int | None) -> int:
        """`step`, or the latest one; an error naming the folder if there is none."""
        step = self.manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return step

    def save(self, step: int, params, opt_state, meta: dict, **extra) -> None:
        """Write checkpoint `step` atomically (blocks until it is on disk).

        `extra` items (pytrees of arrays, e.g. a separate critic's parameters) are saved
        beside the three standard ones; read them back with `restore_item`. opt_state None:
        parameters only (read them back with `restore_params`).
        """
        state = {} if opt_state is None else {"opt_state": ocp.args.StandardSave(opt_state)}
        self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), **state,
            meta=ocp.args.JsonSave(meta),
            **{name: ocp.args.StandardSave(tree) for name, tree in extra.items()}))
        self.manager.wait_until_finished()

    def restore(self, params_like, opt_state_like, step: int | None = None):
        """(params, opt_state, meta) of checkpoint `step` (default: the latest)."""
        step = self._step(step)
        out = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(params_like)),
            opt_state=ocp.args.StandardRestore(_abstract(opt_state_like)),
            meta=ocp.args.JsonRestore()))
        return out.params, out.opt_state, out.meta

    def restore_params(self, params_like, step: int | None = None):
        """(params, meta) of checkpoint `step` (default: the latest), without optimiser state."""
        step = self._step(step)
        out = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(params_like)),
            meta=ocp.args.JsonRestore()))
        return out.params, out.meta

    def restore_item(self, name: str, like, step: int | None = None):
        """An `extra` item of checkpoint `step` (default: the latest), shaped like `like`."""
        step = self._step(step)
        return self.manager.restore(step, args=ocp.args.Composite(
            **{name: ocp.args.StandardRestore(_abstract(like))}))[name]

    def read_meta(self, step: int | None = None) -> dict:
        step = self._step(step)
        return self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta

    def close(self):
        self.manager.close()


def load_model(run_dir: str | Path):
    """The trained model of a run folder: (graphdef, params, tokenizer, meta).

    Reads the latest checkpoint under `run_dir/checkpoints`; the model's shape comes from the
    checkpoint's metadata.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no checkpoints/ folder: is it a run folder?")
    ckpt = Checkpointer(ckpt_dir)
    try:
        meta = ckpt.read_meta()
        model_cfg = ModelConfig(**meta["model"])
        graphdef, like = init_model(model_cfg, jax.random.key(0))  # shapes only
        params, meta = ckpt.restore_params(like)
    finally:
        ckpt.close()
    return graphdef, params, CharTokenizer.from_json(meta["tokenizer"]), meta


def read_finished(run_dir: str | Path, cfg):
    """(graphdef, params, summary) of a finished run folder -- one whose summary.json, written
    last, exists -- after checking it was made with `cfg`; None if it is not finished."""
    summary = Path(run_dir) / "summary.json"
    if not summary.exists():
        return None
    check_same_config(run_dir, cfg)
    graphdef, params, _, _ = load_model(run_dir)
    return graphdef, params, json.loads(summary.read_text())


def load_with_heads(run_dir: str | Path, seed: int, value_head: bool = False,
                    scalar_head: bool = False):
    """A run folder's transformer with freshly initialised heads on top of its backbone.

    The reward model is SFT's transformer plus a scalar head; the RLHF policy is SFT's
    transformer plus a value head. Every weight the run folder has is kept, the new heads
    start from `seed`'s initialisation (zeros for both heads).

    Returns:
        (graphdef, params, tokenizer, meta) -- meta is the run folder's.
    """
    old_graphdef, old_params, tokenizer, meta = load_model(run_dir)
    cfg = ModelConfig(**{**meta["model"], "value_head": value_head, "scalar_head": scalar_head})
    graphdef, params = init_model(cfg, jax.random.key(seed))
    fresh, trained = nnx.to_pure_dict(params), nnx.to_pure_dict(old_params)

    def overlay(new, old):  # every trained weight that the new model also has
        return {k: overlay(v, old[k]) if isinstance(v, dict) and k in old
                else (old[k] if k in old else v) for k, v in new.items()}

    nnx.replace_by_pure_dict(params, overlay(fresh, trained))
    return graphdef, params, tokenizer, meta
