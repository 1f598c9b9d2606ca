"""RLHF with PPO end to end: an interrupted run resumes to the same result as an
uninterrupted one (on the tiny pipeline, in CI), and the "small" pipeline learns (marked
slow: about 2.5 minutes; run it with `pytest -m slow`)."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from minirlhf.checkpoint import load_model
from minirlhf.pipeline import preset, run_pipeline, stage_configs
from minirlhf.rlhf import RLHFConfig, best_of_n_kl, train_rlhf
from minirlhf.rollout import RolloutConfig


def test_pipeline_stopped_after_a_stage_carries_on_from_there(tiny_pipeline):
    code, out, facts = tiny_pipeline
    assert facts["first_code"] == 0 and code == 0
    assert not facts["ppo_after_stop"]  # stop_after="reward" stopped before PPO
    # The re-run trained PPO and did not touch the finished reward model.
    assert sorted(p.name for p in (out / "reward" / "checkpoints").iterdir()) == \
        facts["reward_checkpoints"]
    assert (out / "ppo" / "summary.json").exists()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The "small" preset: about 2 minutes on 2 idle cores."""
    out = tmp_path_factory.mktemp("rlhf") / "run"
    cfg = preset("small")
    lines = []
    summary = run_pipeline(cfg, out, echo=lines.append)
    return cfg, out, summary, "\n".join(lines)


@pytest.mark.slow
def test_ppo_raises_the_gold_reward_over_sft_with_bounded_kl(small_run):
    """The documented margin: on 128 held-out prompts the PPO policy's mean gold reward is
    at least 0.15 above the SFT policy's (measured: -0.221 -> 0.103, with the gold reward's
    rating check), with the KL to SFT under 8 nats per response (measured: 2.1); the reward
    model's score, which PPO optimises, rises by at least 0.4 (measured: 0.66)."""
    _, _, summary, _ = small_run
    rl = summary["rlhf"]
    print(json.dumps(rl, indent=1))
    assert rl["sft"]["kl"] == pytest.approx(0.0, abs=1e-4)  # SFT is its own reference
    assert rl["ppo"]["score"] > rl["sft"]["score"] + 0.4, rl
    assert rl["ppo"]["gold"] > rl["sft"]["gold"] + 0.15, rl
    assert 0.0 < rl["ppo"]["kl"] < 8.0, rl
    # Best-of-n: picks by the reward model, so its score beats SFT's; KL is the formula.
    assert rl["best_of_n"]["score"] > rl["sft"]["score"] + 0.4, rl
    assert rl["best_of_n"]["kl"] == pytest.approx(best_of_n_kl(rl["n"]))


@pytest.mark.slow
def test_dpo_raises_the_gold_reward_over_sft_on_the_same_pairs(small_run):
    """DPO from SFT on the reward model's preference file, no reward model, no sampling:
    gold at least 0.1 above SFT's on the held-out prompts (measured: -0.221 -> -0.066) at a
    KL to SFT under 4 nats (measured: 1.2), and a wider held-out implicit-reward margin."""
    _, _, summary, _ = small_run
    rl = summary["rlhf"]
    assert rl["dpo"]["gold"] > rl["sft"]["gold"] + 0.1, rl
    assert 0.0 < rl["dpo"]["kl"] < 4.0, rl
    train = rl["dpo"]["train"]
    assert train["val_reward_margin"] > train["start"]["val_reward_margin"], train


@pytest.mark.slow
def test_pipeline_writes_its_summary_plots_and_table(small_run):
    _, out, summary, printed = small_run
    for name in ("ppo/rlhf.png", "ppo/gold_vs_score.png", "ppo/metrics.jsonl",
                 "ppo/summary.json", "reward/reward_model.png", "preferences/comparisons.jsonl",
                 "summary.json", "samples.txt", "kl_gold.png", "dpo/dpo.png"):
        assert (out / name).stat().st_size > 0, name
    assert set(summary["seconds"]) == {"pretrain", "sft", "preferences", "reward", "ppo", "grpo",
                                       "dpo"}
    for word in ("gold reward", "reward-model score", "KL to SFT", "best-of-8", "PPO", "GRPO",
                 "DPO", "rating agrees", "gold at matched KL"):
        assert word in printed, word
    records = [json.loads(line) for line in (out / "ppo" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == list(range(1, 41))
    for key in ("score", "gold", "kl", "beta", "entropy", "clip_fraction", "truncated",
                "length", "policy_loss", "value_loss", "approx_kl", "explained_variance"):
        assert all(np.isfinite(r[key]) for r in records), key


def test_interrupted_ppo_resumes_to_the_uninterrupted_result(tiny_pipeline, tmp_path):
    _, out, _ = tiny_pipeline
    rl = dataclasses.replace(stage_configs(preset("tiny"), out).rlhf, iterations=4, batch_size=16,
                             checkpoint_every=2, eval_every=2, n_eval=16, best_of_n=2,
                             kl_control="adaptive",
                             rollout=RolloutConfig(max_new_tokens=48))
    _, straight, s1 = train_rlhf(rl, tmp_path / "straight")
    _, partial, s0 = train_rlhf(rl, tmp_path / "resumed", stop_after=2)
    assert s0 == {}
    _, resumed, s2 = train_rlhf(rl, tmp_path / "resumed")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert s1 == s2
    metrics = lambda d: (d / "metrics.jsonl").read_text()
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "resumed")
    # The checkpoint carries the adaptive beta, and the final one holds the final policy.
    _, loaded, _, meta = load_model(tmp_path / "resumed")
    assert meta["stage"] == "rlhf" and meta["beta"] != rl.beta
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resuming_with_another_config_is_refused(tiny_pipeline, tmp_path):
    _, out, _ = tiny_pipeline
    rl = dataclasses.replace(stage_configs(preset("tiny"), out).rlhf, iterations=2, batch_size=16,
                             checkpoint_every=1, eval_every=2, n_eval=16, best_of_n=2)
    train_rlhf(rl, tmp_path / "run", stop_after=1)
    with pytest.raises(ValueError, match="beta"):
        train_rlhf(dataclasses.replace(rl, beta=0.5), tmp_path / "run")


def test_bad_config_and_missing_stages_are_clear_errors(tiny_pipeline, tmp_path):
    _, out, _ = tiny_pipeline
    cfg = preset("tiny")
    with pytest.raises(ValueError, match="num_minibatches=3"):
        RLHFConfig(batch_size=16, num_minibatches=3)
    with pytest.raises(ValueError, match="kl_control"):
        RLHFConfig(kl_control="pid")
    with pytest.raises(ValueError, match="beta"):
        RLHFConfig(beta=-0.1)
    with pytest.raises(FileNotFoundError, match="RLHFConfig.reward"):
        train_rlhf(RLHFConfig(init=str(out / "sft"), reward=str(tmp_path / "nope")),
                   tmp_path / "x")
    # The SFT folder is not a reward model.
    with pytest.raises(ValueError, match="finished reward model"):
        train_rlhf(RLHFConfig(init=str(out / "sft"), reward=str(out / "sft")), tmp_path / "x")
    too_long = dataclasses.replace(stage_configs(cfg, out).rlhf,
                                   rollout=RolloutConfig(max_new_tokens=100))
    with pytest.raises(ValueError, match="max_new_tokens=100"):
        train_rlhf(too_long, tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before anything was written
