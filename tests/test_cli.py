"""CLI smoke runs with tiny budgets, and its errors."""

import json
import subprocess
import sys

import pytest

from minirlhf.cli import main


@pytest.fixture(scope="module")
def pipeline_run(tiny_pipeline):
    code, out, _ = tiny_pipeline
    return code, out


def test_pipeline_tiny_runs_end_to_end(pipeline_run, capsys):
    code, out = pipeline_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pretrain"]["val_loss"] < summary["pretrain"]["val_loss_start"]
    assert len(summary["samples"]) == 8
    for stage in ("pretrain", "sft", "reward"):
        assert (out / stage / "loss.png").exists() and (out / stage / "checkpoints").is_dir()
    assert (out / "preferences" / "comparisons.jsonl").exists()
    assert (out / "ppo" / "rlhf.png").exists() and (out / "ppo" / "gold_vs_score.png").exists()
    for policy in ("sft", "best_of_n", "ppo", "grpo", "dpo"):
        assert set(summary["rlhf"][policy]) >= {"gold", "score", "kl"}
    assert (out / "grpo" / "grpo.png").exists() and "grpo" in summary["rlhf_samples"][0]
    assert (out / "dpo" / "dpo.png").exists() and "dpo" in summary["rlhf_samples"][0]
    assert (out / "kl_gold.png").exists()
    curve = summary["rlhf"]["best_of_n_curve"]  # best-of-1, 2, ..., n; its end is best-of-n
    assert [int(m) for m in curve][-1] == summary["rlhf"]["n"] and curve["1"]["kl"] == 0.0
    assert curve[str(summary["rlhf"]["n"])]["gold"] == summary["rlhf"]["best_of_n"]["gold"]
    cfg = json.loads((out / "pretrain" / "config.json").read_text())
    assert cfg["steps"] == 20 and cfg["model"]["d_model"] == 32  # preset, then the override


def test_pipeline_rerun_resumes_instead_of_repeating(pipeline_run, capsys):
    code, out = pipeline_run
    stages = ("sft", "reward", "ppo", "grpo", "dpo")
    before = {s: (out / s / "metrics.jsonl").read_text() for s in stages}
    summary = (out / "ppo" / "summary.json").read_text()
    assert main(["pipeline", "--preset", "tiny", "--out", str(out), "--pretrain.steps", "20"]) == 0
    for s in stages:
        assert (out / s / "metrics.jsonl").read_text() == before[s], s
    assert (out / "ppo" / "summary.json").read_text() == summary
    printed = capsys.readouterr().out
    assert "follows demo format" in printed and "reward-model score" in printed
    assert "GRPO" in printed and "DPO" in printed and "[7/7]" in printed


def test_sample_command(pipeline_run, capsys):
    _, out = pipeline_run
    code = main(["sample", "--run", str(out / "sft"), "--prompt", "the pizza was",
                 "--prompt", "my car", "--max_new_tokens", "8", "--temperature", "0"])
    text = capsys.readouterr().out
    assert code == 0 and "'the pizza was' ->" in text and "'my car' ->" in text


def test_sample_with_an_unknown_character_is_a_clear_error(pipeline_run, capsys):
    _, out = pipeline_run
    assert main(["sample", "--run", str(out / "sft"), "--prompt", "The Pizza"]) == 2
    assert "unknown character 'T'" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["pretrain", "--steps", "0"], "PretrainConfig.steps must be a positive integer, got 0"),
    (["pretrain", "--model.n_heads", "3"], "n_heads=3 must divide d_model=128"),
    (["sample", "--run", "/nonexistent/run"], "is not a folder"),
    (["pipeline", "--sampling.max_new_tokens", "110"], "more than pretrain.model.max_len=128"),
    (["sft", "--init", "/nonexistent/run"], "is not a run folder with checkpoints"),
    (["pipeline", "--rlhf.rollout.max_new_tokens", "110"], "rlhf.rollout.max_new_tokens=110"),
    (["pipeline", "--rlhf.batch_size", "10"], "does not split into num_minibatches=4"),
    (["rlhf", "--init", "/nonexistent/run"], "RLHFConfig.init='/nonexistent/run' is not a run"),
    (["rlhf", "--rollout.kl_estimator", "k9"], "kl_estimator must be one of"),
])
def test_bad_values_give_errors_naming_them(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path / "o")] if argv[0] != "sample" else [])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_unknown_option_and_bad_choice_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["pretrain", "--model.width", "3"])
    assert "unrecognized arguments: --model.width" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "--model.positions", "sinusoid"])
    assert "invalid choice: 'sinusoid'" in capsys.readouterr().err


def test_console_script_help_lists_documented_options():
    proc = subprocess.run([sys.executable, "-m", "minirlhf.cli", "pretrain", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "--model.d_model" in proc.stdout and "width of the residual stream" in proc.stdout
    assert "--optim.lr" in proc.stdout and "Peak learning rate" in proc.stdout


@pytest.mark.parametrize("command", ["pipeline", "pretrain", "sft", "sample", "preferences",
                                     "reward", "rlhf", "grpo", "dpo", "ai-label", "ppo", "ppo-eval",
                                     "assignment"])
def test_every_command_has_a_help_page(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: minirlhf " + command in capsys.readouterr().out


def test_sft_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.001)" in out and "(default: 0.003)" not in out


def test_ppo_train_and_evaluate_smoke(tmp_path, capsys):
    out = tmp_path / "ppo"
    assert main(["ppo", "--out", str(out), "--total_steps", "2048", "--num_seeds", "2"]) == 0
    assert "PPO on CartPole-v1 (jax)" in capsys.readouterr().out
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 4  # 2048 / (4 envs * 128 steps) iterations, 2 seeds
    assert (out / "learning_curve.png").exists()
    strip, gif = tmp_path / "strip.png", tmp_path / "ep.gif"
    assert main(["ppo-eval", "--run", str(out), "--episodes", "2", "--filmstrip", str(strip),
                 "--video", str(gif)]) == 0
    printed = capsys.readouterr().out
    assert "over 2 episodes" in printed and "filmstrip written" in printed
    assert strip.stat().st_size > 0 and gif.stat().st_size > 0


def test_ppo_through_the_gymnasium_bridge_smoke(tmp_path, capsys):
    out = tmp_path / "bridge"
    assert main(["ppo", "--out", str(out), "--backend", "gymnasium", "--total_steps", "1024",
                 "--preset", "pendulum", "--num_steps", "256"]) == 0
    assert "PPO on Pendulum-v1 (gymnasium)" in capsys.readouterr().out
    assert main(["ppo-eval", "--run", str(out), "--episodes", "1"]) == 0


@pytest.mark.parametrize("argv,message", [
    (["ppo", "--env", "NoSuchEnv-v0", "--total_steps", "512"], "unknown gymnasium environment id"),
    (["ppo", "--num_minibatches", "3"], "does not divide into num_minibatches=3"),
    (["ppo", "--env", "NoSuchEnv-v0", "--backend", "jax"], "has no JAX-native port"),
    (["ppo-eval", "--run", "/nonexistent/run"], "no checkpoints/ folder"),
])
def test_ppo_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path / "x")] if argv[0] == "ppo" else [])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_preferences_and_reward_commands(pipeline_run, tmp_path, capsys):
    _, out = pipeline_run
    prefs = tmp_path / "prefs.jsonl"
    assert main(["preferences", "--init", str(out / "sft"), "--out", str(prefs), "--n", "40",
                 "--k", "3"]) == 0
    assert "40 comparisons written" in capsys.readouterr().out
    assert len(prefs.read_text().splitlines()) == 40
    assert main(["reward", "--init", str(out / "sft"), "--preferences", str(prefs),
                 "--out", str(tmp_path / "rm"), "--n_val", "10", "--steps", "4",
                 "--batch_size", "8", "--eval_every", "2", "--checkpoint_every", "2"]) == 0
    assert "against the gold order" in capsys.readouterr().out
    summary = json.loads((tmp_path / "rm" / "summary.json").read_text())
    assert summary["n_train"] == 30  # rankings of 3, trained with the ranking loss
    # A bad line: exit code 2, the file line named, nothing trained.
    prefs.write_text(prefs.read_text() + '{"prompt": "x", "chosen": " A."}\n')
    assert main(["reward", "--init", str(out / "sft"), "--preferences", str(prefs),
                 "--out", str(tmp_path / "rm2"), "--n_val", "10"]) == 2
    assert "line 41" in capsys.readouterr().err
    assert not (tmp_path / "rm2").exists()


def test_rlhf_command(pipeline_run, tmp_path, capsys):
    _, out = pipeline_run
    assert main(["rlhf", "--init", str(out / "sft"), "--reward", str(out / "reward"),
                 "--out", str(tmp_path / "rl"), "--iterations", "2", "--batch_size", "8",
                 "--num_minibatches", "2", "--n_eval", "8", "--best_of_n", "2",
                 "--kl_control", "adaptive", "--rollout.max_new_tokens", "32"]) == 0
    printed = capsys.readouterr().out
    assert "best-of-2" in printed and "KL to SFT" in printed
    assert len((tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()) == 2


def test_dpo_command(pipeline_run, tmp_path, capsys):
    _, out = pipeline_run
    prefs = str(out / "preferences" / "comparisons.jsonl")
    assert main(["dpo", "--init", str(out / "sft"), "--preferences", prefs,
                 "--out", str(tmp_path / "dpo"), "--n_val", "8", "--steps", "2",
                 "--batch_size", "8", "--eval_every", "1", "--checkpoint_every", "2"]) == 0
    assert "implicit-reward accuracy" in capsys.readouterr().out
    rows = [json.loads(x) for x in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and rows[-1]["step"] == 2  # held-out before step 1
    assert main(["dpo", "--init", str(out / "sft"), "--preferences", prefs,
                 "--out", str(tmp_path / "bad"), "--beta", "0"]) == 2
    assert "beta" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_grpo_command_refuses_bad_input_before_any_work(tmp_path, capsys):
    for argv, message in (
            (["--task", "reviews"], "has no verifier"),
            (["--task", "algebra"], "unknown task 'algebra'"),
            (["--group_size", "1"], "group_size must be >= 2"),
            (["--prompts_per_iteration", "3", "--num_minibatches", "2", "--group_size", "3"],
             "do not split into num_minibatches=2"),
            (["--init", str(tmp_path / "nope")], "is not a run folder")):
        assert main(["grpo", "--out", str(tmp_path / "x")] + argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not (tmp_path / "x").exists()
