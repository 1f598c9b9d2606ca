"""Training runs: checkpoints, resume, and learning on the default task."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from minirlhf.checkpoint import Checkpointer, load_model
from minirlhf.model import ModelConfig, init_model
from minirlhf.optim import OptimConfig
from minirlhf.pretrain import PretrainConfig, pretrain
from minirlhf.sft import SFTConfig, complete, format_rate, sft, sft_data
from minirlhf.generate import SamplingConfig

TINY_MODEL = ModelConfig(max_len=112, d_model=32, n_heads=2, n_layers=1)


def tiny_pretrain(**kw):
    base = dict(steps=6, batch_size=8, n_train=64, n_val=16, eval_every=3, checkpoint_every=3,
                log_every=1, model=TINY_MODEL)
    return PretrainConfig(**{**base, **kw})


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_checkpoint_round_trip(tmp_path):
    g, p = init_model(TINY_MODEL, jax.random.key(0))
    opt_state = {"mu": jax.tree.map(lambda x: x * 2, p), "count": np.int32(7)}
    ckpt = Checkpointer(tmp_path / "ck")
    ckpt.save(5, p, opt_state, {"note": "hello", "model": dataclasses.asdict(TINY_MODEL)})
    assert ckpt.latest_step() == 5
    zeros = jax.tree.map(np.zeros_like, p)
    p2, o2, meta = ckpt.restore(zeros, jax.tree.map(np.zeros_like, opt_state))
    ckpt.close()
    for a, b in zip(_leaves(p), _leaves(p2)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(opt_state), _leaves(o2)):
        np.testing.assert_array_equal(a, b)
    assert meta["note"] == "hello"


def test_resume_after_interrupt_gives_identical_parameters(tmp_path):
    cfg = tiny_pretrain()
    _, straight, _, hist_a = pretrain(cfg, tmp_path / "a")
    # "Interrupt" after 4 steps: the last checkpoint is step 3, so steps 4.. are redone.
    pretrain(cfg, tmp_path / "b", stop_after=4)
    ckpt = Checkpointer(tmp_path / "b" / "checkpoints")
    assert ckpt.latest_step() == 3
    ckpt.close()
    _, resumed, _, hist_b = pretrain(cfg, tmp_path / "b")
    for a, b in zip(_leaves(straight), _leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    # The metrics file reads as if the run had never stopped.
    assert [r["step"] for r in hist_a] == [r["step"] for r in hist_b]
    assert hist_a[-1] == hist_b[-1]


def test_finished_stage_is_not_repeated(tmp_path):
    cfg = tiny_pretrain(steps=3)
    _, a, _, _ = pretrain(cfg, tmp_path / "a")
    before = (tmp_path / "a" / "metrics.jsonl").read_text()
    _, b, _, _ = pretrain(cfg, tmp_path / "a")
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == before
    for x, y in zip(_leaves(a), _leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_resuming_with_another_config_is_refused(tmp_path):
    pretrain(tiny_pretrain(steps=3), tmp_path / "a")
    with pytest.raises(ValueError, match=r"different config \(optim.lr: 0.003 there, 0.1 now"):
        pretrain(tiny_pretrain(steps=3, optim=OptimConfig(lr=0.1)), tmp_path / "a")


@pytest.mark.parametrize("kw,match", [
    (dict(steps=0), "PretrainConfig.steps must be a positive integer, got 0"),
    (dict(batch_size=-2), "PretrainConfig.batch_size must be a positive integer"),
    (dict(n_devices=-1), "n_devices must be an integer >= 0"),
    (dict(model=ModelConfig(vocab_size=50)), "model.vocab_size=50 but the 'reviews' tokenizer has 45"),
    (dict(task="poems"), "unknown task 'poems'"),
])
def test_invalid_config_is_named_before_any_work(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        pretrain(tiny_pretrain(**kw), tmp_path / "x")
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_sft_without_a_pretrained_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a run folder with checkpoints"):
        sft(SFTConfig(init=str(tmp_path / "nowhere")), tmp_path / "sft")


def test_sft_data_masks_exactly_the_response(tokenizer):
    batch = sft_data(tokenizer, [("ab", " c"), ("the", " x.")], length=10)
    # BOS a b | ' ' c EOS
    np.testing.assert_array_equal(batch.loss_mask[0], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.mask[0], [1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.loss_mask[1], [0, 0, 0, 0, 1, 1, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="more than the model's max_len=4"):
        sft_data(tokenizer, [("abc", " de")], length=4)


# --- learning on the default task (the default configs, ~2 minutes on 2 cores) ----------

# Thresholds. An untrained model scores log(45) = 3.81 nats/char. The grammar's own entropy
# is about 0.3 nats/char; the default run (300 steps x 32 reviews) reaches ~0.4.
PRETRAIN_VAL_LOSS_MAX = 0.6
# The pretraining corpus never contains a rating; SFT demonstrations always end in one.
SFT_FORMAT_RATE_MIN = 0.7


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    g, pre, tok, pre_hist = pretrain(PretrainConfig(), root / "pretrain")
    _, post, _, sft_hist = sft(SFTConfig(init=str(root / "pretrain")), root / "sft")
    return dict(root=root, g=g, pre=pre, post=post, tok=tok, pre_hist=pre_hist,
                sft_hist=sft_hist)


def test_pretraining_brings_validation_loss_under_threshold(trained):
    val = [r["val_loss"] for r in trained["pre_hist"] if "val_loss" in r]
    assert val[0] > 3.5  # starts near log(45)
    assert val[-1] < PRETRAIN_VAL_LOSS_MAX, val
    assert (trained["root"] / "pretrain" / "loss.png").stat().st_size > 1000


def test_sft_completions_follow_the_demonstrations_format(trained, task):
    prompts = task.prompts(64, seed=4242)
    key, cfg = jax.random.key(0), SamplingConfig(max_new_tokens=64)
    before = format_rate(task, complete(trained["g"], trained["pre"], trained["tok"], prompts, key, cfg))
    after = format_rate(task, complete(trained["g"], trained["post"], trained["tok"], prompts, key, cfg))
    assert before < 0.05 and after >= SFT_FORMAT_RATE_MIN, (before, after)


def test_load_model_reads_the_run_folder(trained):
    g, params, tok, meta = load_model(trained["root"] / "sft")
    assert meta["stage"] == "sft" and meta["task"] == "reviews" and tok == trained["tok"]
    for a, b in zip(_leaves(params), _leaves(trained["post"])):
        np.testing.assert_array_equal(a, b)
    lines = (trained["root"] / "sft" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["step"] <= 200 for line in lines)


def test_sft_config_accepts_a_path(tmp_path):
    cfg = SFTConfig(init=tmp_path / "pre")
    assert cfg.init == str(tmp_path / "pre") and json.dumps(dataclasses.asdict(cfg))


def test_metrics_reader_drops_a_cut_short_last_line(tmp_path):
    from minirlhf.logging import read_metrics

    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]
    path.write_text('{"step": 1\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 1: not a JSON record"):
        read_metrics(path)
