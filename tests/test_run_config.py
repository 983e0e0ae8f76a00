"""The pipelines' flat parameters, grouped by stage and validated before anything runs."""

import inspect

import pytest

from pipelines.timewarp_data import timewarp_data
from pipelines.timewarp_explicit import timewarp_explicit
from timewarp.run_config import GROUPS, DataSettings, ExplicitRunSettings, GenerationSettings


def _defaults(pipeline) -> dict:
    return {name: p.default for name, p in inspect.signature(pipeline.entrypoint).parameters.items()}


def test_every_pipeline_parameter_belongs_to_one_group():
    names = [name for model in GROUPS.values() for name in model.model_fields]
    assert sorted(names) == sorted(_defaults(timewarp_explicit)) and len(set(names)) == len(names)
    assert set(GROUPS) == set(ExplicitRunSettings.model_fields)
    assert set(_defaults(timewarp_data)) == set(DataSettings.model_fields) | set(GenerationSettings.model_fields)


def test_defaults_are_valid_and_grouped():
    run = ExplicitRunSettings.from_parameters(_defaults(timewarp_explicit))
    assert run.data.sample_preset == "learnable" and run.training.with_sft
    assert run.promotion.policy().metrics == ("accuracy_normal", "accuracy_shuffled")


@pytest.mark.parametrize(("change", "message"), [
    ({"control": "more_sft"}, "sft_continue"),
    ({"base_model": "org/model", "control": "sft_continue"}, "needs sft_stage"),
    ({"gate_scorer": "loglik"}, "is not one of the scorers"),
    ({"scorers": ["accuracy"]}, "scorers must be a non-empty subset"),
    ({"gate_margin": 2.0}, "gate margin"),
    ({"gate_metrics": ["accuracy"]}, "gate metrics"),
    ({"benchmark_fraction": 0.0}, "greater than 0"),
    ({"sample_videos": 0}, "greater than or equal to 1"),
    ({"frames_per_video": "eight"}, "valid integer"),
])
def test_bad_values_fail_with_the_parameter_named(change, message):
    with pytest.raises(ValueError, match=message):
        ExplicitRunSettings.from_parameters({**_defaults(timewarp_explicit), **change})


def test_an_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameters \\['sample_video'\\]"):
        ExplicitRunSettings.from_parameters({**_defaults(timewarp_explicit), "sample_video": 3})
