import dataclasses

import pytest

from minirlhf.configs import field_docs, flat_fields, from_dict, override, to_dict
from minirlhf.generate import SamplingConfig
from minirlhf.model import ModelConfig
from minirlhf.optim import OptimConfig
from minirlhf.pipeline import PipelineConfig, preset
from minirlhf.pretrain import PretrainConfig
from minirlhf.sft import SFTConfig

CONFIGS = [ModelConfig, OptimConfig, SamplingConfig, PretrainConfig, SFTConfig, PipelineConfig]


@pytest.mark.parametrize("cls", CONFIGS)
def test_every_field_is_documented_and_frozen(cls):
    docs = field_docs(cls)
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not missing, f"{cls.__name__} fields without a docstring: {missing}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(), dataclasses.fields(cls)[0].name, None)


def test_override_and_round_trip():
    cfg = override(PretrainConfig(), {"model.d_model": 64, "steps": 5})
    assert cfg.model.d_model == 64 and cfg.steps == 5 and cfg.model.n_layers == 2
    assert from_dict(PretrainConfig, to_dict(cfg)) == cfg
    names = [name for name, *_ in flat_fields(PipelineConfig)]
    assert "pretrain.model.d_model" in names and "sft.optim.lr" in names


def test_unknown_fields_and_presets_are_named():
    with pytest.raises(ValueError, match="has no field 'model.width'"):
        override(PretrainConfig(), {"model.width": 3})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        from_dict(ModelConfig, {"colour": 1})
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")
    assert preset("tiny").pretrain.steps < PretrainConfig().steps


def test_nested_defaults_are_the_parents():
    defaults = {name: value for name, _, value, _ in flat_fields(SFTConfig)}
    assert defaults["optim.lr"] == SFTConfig().optim.lr == 1e-3
    assert defaults["optim.warmup_steps"] == 20


def test_resume_check_reads_a_field_an_older_run_lacks_as_its_default(tmp_path):
    """A run folder written before `microbatch_tokens` existed resumes with the default,
    and is refused with another value."""
    import json

    from minirlhf.configs import check_same_config

    saved = to_dict(PretrainConfig())
    del saved["microbatch_tokens"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_same_config(tmp_path, PretrainConfig())  # the default: accepted
    with pytest.raises(ValueError, match=r"microbatch_tokens: -1 there, 0 now"):
        check_same_config(tmp_path, PretrainConfig(microbatch_tokens=0))
