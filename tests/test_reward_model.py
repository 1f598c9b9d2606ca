"""The reward model: initialised from SFT, trained with Bradley-Terry on noisy comparisons,
and better at the gold order than the labels it learned from."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from minirlhf.checkpoint import load_model
from minirlhf.envs import make_task
from minirlhf.optim import OptimConfig
from minirlhf.envs.labelers import Labeler, temperature_for_gold_agreement
from minirlhf.pipeline import preset
from minirlhf.pretrain import pretrain
from minirlhf.preference_data import Comparison, write_preferences
from minirlhf.reward_model import (RewardConfig, as_pairs, encode_comparisons, evaluate_comparisons,
                                   init_from_sft,
                                   load_reward_model, score_texts, scores,
                                   simulate_comparisons, train_reward_model)
from minirlhf.sft import sft


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A small pretrained + fine-tuned model (the tiny pipeline preset, a bit longer)."""
    root = tmp_path_factory.mktemp("rm")
    cfg = preset("tiny")
    pretrain(cfg.pretrain, root / "pretrain")
    sft_cfg = cfg.sft.__class__(**{**cfg.sft.__dict__, "init": str(root / "pretrain")})
    sft(sft_cfg, root / "sft")
    return root / "sft"


def demonstration_comparisons(task, n, seed, agreement=0.7):
    """Pairs of demonstration responses to the same prompt, labelled by a simulated labeler
    whose labels follow the gold order `agreement` of the time."""
    rng = np.random.default_rng(seed)
    demos = task.demonstrations(4 * n, seed=seed)
    pairs = []
    for (prompt, a), (_, b) in zip(demos[0::2], demos[1::2]):
        if a != b and task.gold_reward(a) != task.gold_reward(b):
            pairs.append((prompt, a, b))
    pairs = pairs[:n]
    g_a = np.array([task.gold_reward(a) for _, a, _ in pairs])
    g_b = np.array([task.gold_reward(b) for _, _, b in pairs])
    tau = temperature_for_gold_agreement(g_a, g_b, agreement)
    a_wins = Labeler(tau).compare(rng, g_a, g_b)
    comps = [Comparison(p, (a, b) if win else (b, a)) for (p, a, b), win in zip(pairs, a_wins)]
    label_agreement = float(np.mean(a_wins == (g_a > g_b)))
    return comps, label_agreement


def test_init_from_sft_keeps_the_backbone_and_adds_a_scalar_head(sft_run):
    graphdef, params, tokenizer, meta = init_from_sft(sft_run, seed=0)
    _, sft_params, _, _ = load_model(sft_run)
    rm, old = nnx.to_pure_dict(params), nnx.to_pure_dict(sft_params)
    flat = lambda d, p="": {k2: v2 for k, v in d.items() for k2, v2 in
                            (flat(v, p + str(k) + "/").items() if isinstance(v, dict)
                             else [(p + str(k), v)])}
    rm_flat, old_flat = flat(rm), flat(old)
    assert set(old_flat) < set(rm_flat)  # every SFT weight is there, plus the head
    for name, value in old_flat.items():
        np.testing.assert_array_equal(rm_flat[name], value)
    assert any("score" in k for k in set(rm_flat) - set(old_flat))
    batch = encode_comparisons(tokenizer, [Comparison("the pizza was", (" good.", " bad.", " ok."))],
                               meta["model"]["max_len"])
    assert batch.tokens.shape[:2] == (1, 3)
    assert scores(graphdef, params, jnp.asarray(batch.tokens), jnp.asarray(batch.mask)).shape == (1, 3)


def test_score_is_read_at_the_last_real_token(sft_run):
    graphdef, params, tokenizer, _ = init_from_sft(sft_run, seed=0)
    texts = ["the pizza was great.", "my car was awful. rating: 1/5"]
    alone = [float(score_texts(graphdef, params, tokenizer, [t])[0]) for t in texts]
    together = score_texts(graphdef, params, tokenizer, texts)  # padded to a common length
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-5)


def test_as_pairs_and_encoding_errors():
    comps = [Comparison("p", (" a", " b", " c"))]
    assert [c.ranking for c in as_pairs(comps)] == [(" a", " b"), (" a", " c"), (" b", " c")]
    from minirlhf.tokenizer import CharTokenizer
    tok = CharTokenizer("abcp .")
    with pytest.raises(ValueError, match="different numbers of completions"):
        encode_comparisons(tok, comps + [Comparison("p", (" a", " b"))], 32)
    with pytest.raises(ValueError, match="more than the model's max_len=4"):
        encode_comparisons(tok, [Comparison("p", (" a", " b"))], 4)


def test_simulated_comparisons_hit_the_target_agreement(sft_run):
    graphdef, params, tokenizer, meta = load_model(sft_run)
    task = make_task(meta["task"])
    comps, info = simulate_comparisons(graphdef, params, tokenizer, task, 300, 2, seed=0,
                                       target_agreement=0.7)
    assert len(comps) == 300 and all(len(c.ranking) == 2 for c in comps)
    assert all(c.ranking[0] != c.ranking[1] for c in comps)
    # 300 comparisons: the measured share is within sampling error of the target.
    assert info["label_gold_agreement"] == pytest.approx(0.7, abs=0.1)
    assert info["labeler_labeler_agreement"] < info["label_gold_agreement"] + 0.05


def test_reward_model_averages_label_noise_away(sft_run, tmp_path):
    # Labels that follow the gold order only ~70 % of the time; the trained reward model
    # orders held-out pairs by the gold reward clearly more often than that.
    task = make_task("reviews")
    train, train_agreement = demonstration_comparisons(task, 1500, seed=1)
    val, val_agreement = demonstration_comparisons(task, 300, seed=2)
    path = tmp_path / "prefs.jsonl"
    write_preferences(path, train + val)
    # A tiny model on clean demonstration text learns fast: lr 1e-3 (3e-4 lands anywhere in
    # 0.72-0.86 depending on the data seed; 1e-3 gave about 0.9 on three seeds).
    cfg = RewardConfig(init=str(sft_run), preferences=str(path), n_val=len(val), steps=200,
                       batch_size=32, eval_every=200, checkpoint_every=200,
                       optim=OptimConfig(lr=1e-3, warmup_steps=20))
    _, _, summary = train_reward_model(cfg, tmp_path / "rm")
    print(json.dumps(summary, indent=1))
    assert 0.62 < val_agreement < 0.78  # the labels' own gold agreement on held-out pairs
    assert summary["labels_gold_agreement"] == pytest.approx(val_agreement)
    assert summary["val_gold_accuracy"] > val_agreement + 0.08, summary
    assert summary["pearson_gold"] > 0.5, summary
    # The stored normalisation makes SFT-sample scores mean 0, std 1.
    graphdef, params, tokenizer, meta, reward_fn = load_reward_model(tmp_path / "rm")
    texts = [c.prompt + t for c in train for t in c.ranking]
    tokens, mask = tokenizer.encode_batch(texts, bos=True, eos=True)
    r = np.asarray(jax.jit(reward_fn)(tokens, mask))
    assert abs(r.mean()) < 1e-3 and abs(r.std() - 1) < 1e-3
    for name in ("reward_model.png", "loss.png", "preferences_train.jsonl", "summary.json"):
        assert (tmp_path / "rm" / name).stat().st_size > 0


def test_bad_preference_file_trains_nothing(sft_run, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "the pizza was", "chosen": " good.", "rejected": " bad."}\n'
                    '{"prompt": "the pizza was", "chosen": " good."}\n')
    with pytest.raises(ValueError, match="line 2: missing field 'rejected'"):
        train_reward_model(RewardConfig(init=str(sft_run), preferences=str(path), n_val=1),
                           tmp_path / "rm")
    assert not (tmp_path / "rm").exists()
    with pytest.raises(ValueError, match="target_agreement must be in"):
        RewardConfig(target_agreement=0.4)
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        train_reward_model(RewardConfig(init=str(tmp_path / "nowhere")), tmp_path / "rm")


def test_spearman_of_a_constant_model_is_zero_and_ties_share_ranks(sft_run):
    # A fresh scalar head scores every text alike: no correlation with gold, not a tie-order
    # artefact.
    graphdef, params, tokenizer, meta = init_from_sft(sft_run, seed=0)
    params = jax.tree.map(lambda x: x, params)
    task = make_task(meta["task"])
    comps, _ = demonstration_comparisons(task, 50, seed=3)
    zeroed = nnx.to_pure_dict(params)
    zeroed["score"]["kernel"] = np.zeros_like(zeroed["score"]["kernel"])
    nnx.replace_by_pure_dict(params, zeroed)
    m = evaluate_comparisons(graphdef, params, tokenizer, task, comps)
    assert m["spearman_gold"] == 0.0 and m["pearson_gold"] == 0.0
    assert m["val_accuracy"] == 0.5  # ties count half
