"""CLI smoke runs with tiny budgets, and its errors."""

import json
import subprocess
import sys

import pytest

from minirlhf.cli import main


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(["pipeline", "--preset", "tiny", "--out", str(out), "--pretrain.steps", "20"])
    return code, out


def test_pipeline_tiny_runs_end_to_end(pipeline_run, capsys):
    code, out = pipeline_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pretrain"]["val_loss"] < summary["pretrain"]["val_loss_start"]
    assert len(summary["samples"]) == 8
    for stage in ("pretrain", "sft"):
        assert (out / stage / "loss.png").exists() and (out / stage / "checkpoints").is_dir()
    cfg = json.loads((out / "pretrain" / "config.json").read_text())
    assert cfg["steps"] == 20 and cfg["model"]["d_model"] == 32  # preset, then the override


def test_pipeline_rerun_resumes_instead_of_repeating(pipeline_run, capsys):
    code, out = pipeline_run
    before = (out / "sft" / "metrics.jsonl").read_text()
    assert main(["pipeline", "--preset", "tiny", "--out", str(out), "--pretrain.steps", "20"]) == 0
    assert (out / "sft" / "metrics.jsonl").read_text() == before
    assert "follows demo format" in capsys.readouterr().out


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


def test_sft_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.001)" in out and "(default: 0.003)" not in out
