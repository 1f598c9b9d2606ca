"""RLAIF: the constitution's parser, the judge's probes against the model by hand, the verdict
and the agreement report by hand, the pipeline's RLAIF stages and the `ai-label` command."""

import contextlib
import dataclasses
import io
import json
import math

import jax
import numpy as np
import pytest

from minirlhf.cli import main
from minirlhf.envs import make_task
from minirlhf.envs.reviews import ITEMS
from minirlhf.model import ModelConfig, forward, init_model
from minirlhf.preference_data import Comparison, load_preferences
from minirlhf.checkpoint import load_model
from minirlhf.rlaif import (PROBES, Principle, agreement_report, ai_label, check_lengths,
                           load_constitution, pair_indices, parse_constitution, probe_scores,
                           split_rating, standardise, swap_item, verdict_scores)
from minirlhf.tokenizer import CharTokenizer

TASK = make_task("reviews")


# --- the constitution -----------------------------------------------------------------------


def test_the_tasks_constitution_parses():
    c = load_constitution("", TASK)
    assert [p.probe for p in c] == ["pleased", "rating_agrees", "fluent", "on_item"]
    assert [p.weight for p in c] == [1.0, 0.5, 0.5, 0.5]
    assert c[1].text == "Prefer the review whose star rating agrees with its words."


def test_a_constitution_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# only sentiment\n\nprinciple: Prefer the happier review.\n"
                    "  probe: pleased\n  weight: 2.5\n")
    assert load_constitution(path, TASK) == (Principle("Prefer the happier review.", "pleased",
                                                       2.5),)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_constitution(tmp_path / "nope.txt", TASK)


@pytest.mark.parametrize("text, message", [
    ("principle: a\nprobe: kindness\nweight: 1", r"c.txt, line 2: unknown probe 'kindness'"),
    ("principle: a\nprobe: fluent\nweight: -1", r"line 3: weight must be a number > 0, got '-1'"),
    ("principle: a\nprobe: fluent\nweight: lots", r"line 3: weight must be .*'lots'"),
    ("principle: a\nprobe: fluent\nweight: nan", r"line 3: weight must be"),
    ("principle: a\nweight: 1", r"line 1: principle 'a' has no 'probe:' line"),
    ("probe: fluent\nprinciple: a", r"line 1: 'probe' before any 'principle:' line"),
    ("principle: a\nprobe: fluent\nweight: 1\nscore: 3", r"line 4: expected 'principle: \.\.\.'"),
    ("principle: a\nprobe: fluent\nweight: 1\n\nprinciple: a",
     r"line 5: principle 'a' is given twice"),
    ("principle: a\nprobe: fluent\nprobe: pleased", r"line 3: a second 'probe'"),
    ("principle:\nprobe: fluent", r"line 1: the principle's words are empty"),
    ("# nothing but a comment\n", r"c.txt: no principles"),
])
def test_constitution_errors_name_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_constitution(text, "c.txt")


# --- the verdict and the report by hand -----------------------------------------------------


def test_verdict_and_labels_by_hand():
    scores = {"pleased": np.array([1.0, 3.0, 2.0, 2.0]), "fluent": np.array([0.0, 0.0, 1.0, -1.0])}
    c = (Principle("p", "pleased", 1.0), Principle("f", "fluent", 0.5))
    # pleased: mean 2, std sqrt(0.5) -> z = [-1.414, 1.414, 0, 0]; fluent: mean 0, std sqrt(0.5)
    z = 1 / math.sqrt(0.5)
    assert np.allclose(standardise(scores["pleased"]), [-z, z, 0, 0])
    v = verdict_scores(scores, c)
    assert np.allclose(v, [-z, z, 0.5 * z, -0.5 * z])
    pairs = [Comparison("the pizza was", (" a", " b")), Comparison("my car was", (" c", " d"))]
    labelled = ai_label(pairs, v)
    assert labelled[0].ranking == (" b", " a") and labelled[1].ranking == (" c", " d")
    # A ranking of three is sorted best first (the tie below it goes by the coin).
    three = ai_label([Comparison("x", (" a", " b", " c"))], np.array([0.0, 1.0, 0.0]))
    assert three[0].ranking[0] == " b" and set(three[0].ranking[1:]) == {" a", " c"}
    assert np.array_equal(standardise(np.ones(3)), np.zeros(3))
    with pytest.raises(ValueError, match="no scores for probe"):
        verdict_scores({"pleased": scores["pleased"]}, c)
    with pytest.raises(ValueError, match="3 verdict scores for 4 completions"):
        ai_label(pairs, v[:3])


def test_pair_indices_follow_as_pairs():
    comps = [Comparison("x", ("a", "b")), Comparison("y", ("c", "d", "e"))]
    assert pair_indices(comps).tolist() == [[0, 1], [2, 3], [2, 4], [3, 4]]


def test_agreement_report_by_hand():
    good, bad = " great. i loved the crust. rating: 5/5", " awful. i hated the crust. rating: 1/5"
    lying = " great. i loved the crust. rating: 1/5"
    assert TASK.gold_reward(good) > TASK.gold_reward(lying) > TASK.gold_reward(bad)
    human = [Comparison("the pizza was", (good, bad)),      # humans right
             Comparison("the pizza was", (bad, lying)),     # humans wrong
             Comparison("the pizza was", (lying, good)),    # humans wrong
             Comparison("the pizza was", (good, good.replace("crust", "sauce")))]  # a tie
    # The judge: "pleased" right on pairs 1 and 2, wrong on 3, and prefers the second of the
    # tie; "fluent" always prefers the first completion.
    scores = {"pleased": np.array([5, 1, 1, 2, 4, 3, 0, 1.0]),
              "fluent": np.array([1, 0, 1, 0, 1, 0, 1, 0.0])}
    c = (Principle("p", "pleased", 1.0), Principle("f", "fluent", 0.01))
    r = agreement_report(TASK, human, scores, c)
    assert r["pairs"] == 4
    assert r["human_gold_agreement"] == pytest.approx(1 / 3)
    assert r["ai_gold_agreement"] == pytest.approx(2 / 3)  # the verdict follows "pleased"
    assert r["ai_human_agreement"] == pytest.approx(2 / 4)  # pairs 1 and 3 put first first
    assert r["principle_gold_agreement"] == {"p": pytest.approx(2 / 3), "f": pytest.approx(1 / 3)}
    # A tied verdict counts half, as the coin ai_label flips for it: pair 1 tied.
    tied = {"pleased": np.array([2, 2, 1, 2, 4, 3, 0, 1.0])}
    r = agreement_report(TASK, human, tied, (Principle("p", "pleased", 1.0),))
    assert r["ai_gold_agreement"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert r["ai_human_agreement"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)


def test_ties_are_broken_by_a_coin_not_by_the_given_order():
    pairs = [Comparison(f"p{i}", (" a", " b")) for i in range(200)]
    firsts = [c.ranking[0] for c in ai_label(pairs, np.zeros(400), seed=0)]
    assert 70 < firsts.count(" a") < 130  # about half kept, half swapped
    assert ai_label(pairs, np.zeros(400), seed=0) == ai_label(pairs, np.zeros(400), seed=0)


# --- the judge's probes against the model, by hand ------------------------------------------


@pytest.fixture(scope="module")
def judge():
    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz .,!:/0123456789")
    g, p = init_model(ModelConfig(vocab_size=tok.vocab_size, max_len=64, d_model=32,
                                  n_heads=2, n_layers=1), jax.random.key(3))
    return tok, g, p


def test_completions_the_judge_cannot_read_whole_are_refused_by_line():
    comps = [Comparison("my car was", (" fine.", " bad.")),
             Comparison("my car was", (" fine.", " " + "very " * 10 + "good."))]
    # BOS + "my car was" (10) + 56 + EOS = 68; "car" -> "coffee" adds 3 for on_item.
    check_lengths(comps, TASK, 68, alternatives=0)
    with pytest.raises(ValueError, match=r"f.jsonl, line 2: completion ' very .* needs 71"):
        check_lengths(comps, TASK, 68, alternatives=3, source="f.jsonl")
    with pytest.raises(ValueError, match="line 2: .* needs 68 positions .* max_len=67"):
        check_lengths(comps, TASK, 67, alternatives=0)


def _logsoftmax(g, p, tok, text, eos=False):
    ids = tok.encode(text, bos=True, eos=eos)
    logits = np.asarray(forward(g, p, np.array([ids]), np.ones((1, len(ids)), bool)).logits[0])
    return ids, logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_split_rating_and_swap_item():
    assert split_rating(" great. rating: 5/5") == (" great.", 5)
    assert split_rating(" great. no rating") == (" great. no rating", None)
    assert swap_item("the pizza was", ITEMS, 1) == "the film was"
    assert swap_item("my car was", ITEMS, 1) == "my pizza was"  # wraps around
    with pytest.raises(ValueError, match="names none of the task's items"):
        swap_item("the weather was", ITEMS, 1)


def test_probes_match_the_model_by_hand(judge):
    tok, g, p = judge
    prompts = ["the pizza was", "my car was", "this song is"]
    responses = [" great. rating: 4/5", " bad bad.", " okay. rating: 9/5"]  # 9/5 is no rating
    got = probe_scores(g, p, tok, TASK, prompts, responses, PROBES, alternatives=2,
                       batch_size=2)  # chunks of 2: the last one padded
    digits = [tok.encode(str(k))[0] for k in range(1, 6)]
    for i, (x, y) in enumerate(zip(prompts, responses)):
        words = split_rating(y)[0]
        _, logp = _logsoftmax(g, p, tok, x + words.rstrip() + " rating: ")
        dist = np.exp(logp[-1, digits]) / np.exp(logp[-1, digits]).sum()
        assert got["pleased"][i] == pytest.approx(dist @ np.arange(1, 6), rel=1e-4)
        stated = split_rating(y)[1]
        want = math.log(0.2) if stated is None else math.log(dist[stated - 1])
        assert got["rating_agrees"][i] == pytest.approx(want, rel=1e-4, abs=1e-5)

        def seq(prompt):
            ids, lp = _logsoftmax(g, p, tok, prompt + y, eos=True)
            start = 1 + len(prompt)
            return sum(lp[t - 1, ids[t]] for t in range(start, len(ids))), len(ids) - start
        total, count = seq(x)
        assert got["fluent"][i] == pytest.approx(total / count, rel=1e-4)
        others = np.mean([seq(swap_item(x, ITEMS, j))[0] for j in (1, 2)])
        assert got["on_item"][i] == pytest.approx(total - others, rel=1e-3, abs=1e-3)
    # Only the probes asked for; a probe the judge does not know is refused.
    assert set(probe_scores(g, p, tok, TASK, prompts, responses, ("fluent",))) == {"fluent"}
    with pytest.raises(ValueError, match="unknown probe"):
        probe_scores(g, p, tok, TASK, prompts, responses, ("kindness",))


# --- the pipeline's RLAIF stages and the command --------------------------------------------


@pytest.fixture(scope="module")
def rlaif_run(tiny_pipeline):
    """The session's tiny pipeline run again with the RLAIF stages: only they run."""
    code, out, _ = tiny_pipeline
    assert code == 0
    plain = ["pipeline", "--preset", "tiny", "--out", str(out), "--pretrain.steps", "20"]
    # Without RLAIF, DPO is the last stage: stopping after it still writes the summary.
    (out / "summary.json").unlink()
    facts = {"stop_after_dpo": main(plain + ["--stop_after", "dpo"]),
             "summary_after_dpo": (out / "summary.json").exists()}
    before = (out / "ppo" / "metrics.jsonl").read_text()
    argv = plain + ["--rlaif_stage", "true"]
    facts["first"] = main(argv + ["--stop_after", "ai_preferences"])
    ai_file = out / "ai_preferences" / "comparisons.jsonl"
    facts.update(ai_reward_after_stop=(out / "ai_reward").exists(), labels=ai_file.read_text(),
                 judge=(out / "judge" / "metrics.jsonl").read_text())
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    facts.update(ppo_unchanged=(out / "ppo" / "metrics.jsonl").read_text() == before,
                 labels_unchanged=ai_file.read_text() == facts["labels"],
                 judge_unchanged=(out / "judge" / "metrics.jsonl").read_text() == facts["judge"],
                 printed=printed.getvalue(), argv=argv)
    return code, out, facts


def test_pipeline_rlaif_stage_adds_a_row_and_resumes(rlaif_run):
    code, out, facts = rlaif_run
    assert facts["stop_after_dpo"] == 0 and facts["summary_after_dpo"]
    assert code == 0 and facts["first"] == 0 and not facts["ai_reward_after_stop"]
    # The finished stages were skipped, not redone: PPO, the judge, the labels.
    assert facts["ppo_unchanged"] and facts["judge_unchanged"] and facts["labels_unchanged"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["rlhf"]["rlaif"]) >= {"gold", "score", "kl", "rating"}
    assert "rlaif" in summary["rlhf_samples"][0]
    labels = summary["rlaif"]["labels"]
    assert len(labels["principle_gold_agreement"]) == 4
    # The AI file holds the human file's comparisons, each possibly re-ordered, and the
    # report's figures are those of the two files.
    human = load_preferences(out / "preferences" / "comparisons.jsonl")
    ai = load_preferences(out / "ai_preferences" / "comparisons.jsonl")
    assert [(c.prompt, sorted(c.ranking)) for c in human] == \
           [(c.prompt, sorted(c.ranking)) for c in ai]
    assert labels["ai_human_agreement"] == pytest.approx(
        np.mean([a.ranking == h.ranking for a, h in zip(ai, human)]))
    gold = np.array([[TASK.gold_reward(t) for t in c.ranking] for c in ai])
    decided = gold[:, 0] != gold[:, 1]
    assert labels["ai_gold_agreement"] == pytest.approx(np.mean((gold[:, 0] > gold[:, 1])[decided]))
    # Labelling again from scratch (its summary gone, as if interrupted) gives the same file.
    (out / "ai_preferences" / "summary.json").unlink()
    assert main(facts["argv"] + ["--stop_after", "ai_preferences"]) == 0
    assert (out / "ai_preferences" / "comparisons.jsonl").read_text() == facts["labels"]
    report = json.loads((out / "ai_preferences" / "summary.json").read_text())
    assert [p["probe"] for p in report["constitution"]] == list(PROBES)
    printed = facts["printed"]
    assert "AI labeler" in printed and "RLAIF" in printed and "[11/11]" in printed


def test_ai_label_command(rlaif_run, tmp_path, capsys):
    _, out, _ = rlaif_run
    prefs = str(out / "preferences" / "comparisons.jsonl")
    mine = tmp_path / "c.txt"
    mine.write_text("principle: Prefer the happier review.\nprobe: pleased\nweight: 1\n")
    assert main(["ai-label", "--judge", str(out / "judge"), "--preferences", prefs,
                 "--out", str(tmp_path / "ai.jsonl"), "--constitution", str(mine)]) == 0
    printed = capsys.readouterr().out
    assert "re-labelled by the judge" in printed and "Prefer the happier review." in printed
    human, ai = load_preferences(prefs), load_preferences(tmp_path / "ai.jsonl")
    same = np.mean([a.ranking == h.ranking for a, h in zip(ai, human)])
    assert 0 < same < 1 and f"agree on {same:.1%}" in printed
    # The judge's chosen completion is the one its "pleased" probe scores higher.
    g, p, tok, meta = load_model(out / "judge")
    score = probe_scores(g, p, tok, TASK, [c.prompt for c in ai for _ in c.ranking],
                         [t for c in ai for t in c.ranking], ("pleased",),
                         max_len=meta["model"]["max_len"])["pleased"]
    assert np.all(score[0::2] >= score[1::2])
    mine.write_text("principle: Prefer the happier review.\nprobe: happiness\nweight: 1\n")
    assert main(["ai-label", "--judge", str(out / "judge"), "--preferences", prefs,
                 "--out", str(tmp_path / "bad.jsonl"), "--constitution", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "line 2: unknown probe 'happiness'" in err and not (tmp_path / "bad.jsonl").exists()


def test_a_question_longer_than_the_judge_keeps_its_end(judge):
    tok, g, p = judge  # max_len 64
    long = " " + "very " * 12 + "good."  # 66 characters, no rating: 64 + the cue > 64
    got = probe_scores(g, p, tok, TASK, ["my car was"], [long], ("pleased",), max_len=64)
    text = ("my car was" + long + " rating: ")[-63:]
    _, logp = _logsoftmax(g, p, tok, text)
    digits = [tok.encode(str(k))[0] for k in range(1, 6)]
    dist = np.exp(logp[-1, digits]) / np.exp(logp[-1, digits]).sum()
    assert got["pleased"][0] == pytest.approx(dist @ np.arange(1, 6), rel=1e-4)


def test_stopping_after_a_stage_that_does_not_run_is_refused(tmp_path):
    from minirlhf.pipeline import preset, run_pipeline

    with pytest.raises(ValueError, match="stop_after='judge' names a stage this configuration"):
        run_pipeline(preset("tiny"), tmp_path / "run", stop_after="judge")
    assert not (tmp_path / "run").exists()


def test_a_bad_constitution_is_refused_before_the_pipeline_starts(tmp_path):
    from minirlhf.pipeline import preset, run_pipeline

    bad = tmp_path / "c.txt"
    bad.write_text("principle: Be kind.\nprobe: kindness\nweight: 1\n")
    cfg = dataclasses.replace(preset("tiny"), rlaif_stage=True,
                              rlaif=dataclasses.replace(preset("tiny").rlaif,
                                                        constitution=str(bad)))
    with pytest.raises(ValueError, match=r"c.txt, line 2: unknown probe 'kindness'"):
        run_pipeline(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_labels_made_with_another_constitution_are_not_reused(rlaif_run, tmp_path, capsys):
    _, out, facts = rlaif_run
    mine = tmp_path / "c.txt"
    mine.write_text("principle: Prefer the happier review.\nprobe: pleased\nweight: 1\n")
    assert main(facts["argv"] + ["--rlaif.constitution", str(mine)]) == 2
    assert "labels made with another constitution" in capsys.readouterr().err
