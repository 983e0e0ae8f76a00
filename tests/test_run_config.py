"""The pipelines' flat parameters, grouped by stage and validated before anything runs."""

import inspect
import re
from pathlib import Path

import pytest
import yaml

from pipelines.timewarp_base_dpo import timewarp_base_dpo
from pipelines.timewarp_combined import timewarp_combined
from pipelines.timewarp_data import timewarp_data
from pipelines.timewarp_evaluate import timewarp_evaluate
from pipelines.timewarp_explicit import timewarp_explicit
from pipelines.timewarp_implicit import timewarp_implicit
from pipelines.timewarp_variants import timewarp_variants
from timewarp.run_config import (
    GROUPS,
    ArmRunSettings,
    DataSettings,
    ExplicitRunSettings,
    GenerationSettings,
    VariantsRunSettings,
)


def _defaults(pipeline) -> dict:
    return {name: p.default for name, p in inspect.signature(pipeline.entrypoint).parameters.items()}


def test_every_pipeline_parameter_belongs_to_one_group():
    names = [name for group in ExplicitRunSettings.model_fields for name in GROUPS[group].model_fields]
    assert sorted(names) == sorted(_defaults(timewarp_explicit)) and len(set(names)) == len(names)
    everything = [name for model in GROUPS.values() for name in model.model_fields]
    assert len(set(everything)) == len(everything)
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
    ({"benchmark_roots": {"tvbench": "/data/TVBench"}}, "public_benchmarks is empty"),
    ({"public_benchmarks": ["tvbench"], "benchmark_roots": {"tvbnch": "/d"}}, r"benchmark_roots names \['tvbnch'\]"),
    ({"public_benchmarks": ["timewarp_shuffled"]}, "read a data-stage export folder"),
    ({"public_benchmarks": ["vinoground"], "public_benchmark_limit": 5}, "leave public_benchmark_limit unset"),
])
def test_bad_values_fail_with_the_parameter_named(change, message):
    with pytest.raises(ValueError, match=message):
        ExplicitRunSettings.from_parameters({**_defaults(timewarp_explicit), **change})


def test_an_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown parameters \\['sample_video'\\]"):
        ExplicitRunSettings.from_parameters({**_defaults(timewarp_explicit), "sample_video": 3})


@pytest.mark.parametrize(("pipeline", "settings"), [
    (timewarp_implicit, ArmRunSettings), (timewarp_base_dpo, ArmRunSettings), (timewarp_combined, ArmRunSettings),
    (timewarp_variants, VariantsRunSettings),
])
def test_the_variant_pipelines_share_the_explicit_parameters_and_defaults(pipeline, settings):
    defaults = _defaults(pipeline)
    shared = {name: value for name, value in _defaults(timewarp_explicit).items()
              if name not in ("control", "registered_model_name")}
    assert {name: defaults[name] for name in shared if name in defaults} == {
        name: value for name, value in shared.items() if name in defaults}
    # Public benchmarks after registration: timewarp_explicit (and retraining) only.
    assert set(shared) - set(defaults) <= {"gate_scorer", "gate_metrics", "gate_margin", "public_benchmarks",
                                           "benchmark_roots", "public_benchmark_limit"}
    run = settings.from_parameters(defaults)
    assert run.training.with_sft and run.variants.hound_records is None


def test_hound_records_need_their_frames():
    with pytest.raises(ValueError, match="hound_records and hound_frames go together"):
        VariantsRunSettings.from_parameters({**_defaults(timewarp_variants), "hound_records": "s3://b/sft_dpo_17k.jsonl"})


@pytest.mark.parametrize("config", sorted(Path("configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_run_config_is_valid_for_the_pipeline_it_names(config):
    # Each config's header names the pipeline it is for (`zenml pipeline run <name> -c ...`).
    pipelines = {p.name: p for p in (timewarp_data, timewarp_explicit, timewarp_variants, timewarp_evaluate)}
    names = sorted(set(re.findall(r"zenml pipeline run (timewarp_\w+)", config.read_text())))
    assert names, f"{config} does not say which pipeline it is for"
    parameters = yaml.safe_load(config.read_text()).get("parameters", {})
    for name in names:
        defaults = _defaults(pipelines[name])
        unknown = set(parameters) - set(defaults)
        assert not unknown, f"{config} sets {sorted(unknown)}, not parameters of {name}"
        values = {**defaults, **parameters}
        if name == "timewarp_evaluate":
            continue  # no settings groups: its parameters are its own
        if name == "timewarp_data":
            DataSettings(**{k: values[k] for k in DataSettings.model_fields})
            GenerationSettings(**{k: values[k] for k in GenerationSettings.model_fields})
        else:
            (VariantsRunSettings if name == "timewarp_variants" else ExplicitRunSettings).from_parameters(values)
