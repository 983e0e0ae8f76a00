"""Stages shared by the pipelines: plain functions that call steps, so each pipeline
reads like a table of contents."""

from __future__ import annotations

from typing import Any, NamedTuple

from zenml.client import Client

from pipelines.preflight import check_run
from steps.data import export_corpus, generate_sample, load_hound_pairs, locate_shards, merge_corpus, prepare_videos
from steps.evaluation import compare_models, evaluate_champion, evaluate_model
from steps.generation import (
    check_data_quality,
    combine_pairs,
    export_text,
    generate_benchmark,
    generate_implicit_pairs,
    generate_training_text,
    split_videos,
)
from steps.tracking import register_model
from steps.training import prepare_base_model, train_dpo, train_sft
from timewarp.run_config import DataSettings, ExplicitRunSettings, GenerationSettings, VariantsRunSettings
from timewarp.training.config import DPORecipe, SFTRecipe

#: The DPO arms of the paper's table, each with the step-name suffix of its steps.
DPO_ARMS = {"Base-DPO": "base_dpo", "Combined": "combined", "TimeWarp-Implicit": "implicit",
            "TimeWarp-Explicit": "explicit"}
#: Steps that run the model being trained (on GPU with a GPU recipe), per arm.
ARM_MODEL_STEPS = {"TimeWarp-Implicit": ("generate_implicit_pairs",)}


class DataArtifacts(NamedTuple):
    corpus: Any
    sft: Any
    preferences: Any
    normal: Any
    shuffled: Any
    quality: Any
    split: Any


def data_stage(data: DataSettings, generation: GenerationSettings) -> DataArtifacts:
    """Shards -> corpus -> split -> SFT/preference pairs and benchmarks -> quality gate."""
    seed = data.seed
    shards = (locate_shards(data.finevideo_root) if data.finevideo_root
              else generate_sample(data.sample_videos, seed, data.sample_preset))
    parts, logs = [], []
    for group in range(data.shard_groups):
        part, log = prepare_videos(
            shards,
            max_videos=data.max_videos,
            max_seconds=data.max_seconds,
            min_scenes=data.min_scenes,
            integer_timestamps=data.integer_timestamps,
            seed=seed,
            frames_per_video=data.frames_per_video,
            render_shuffled_videos=data.render_shuffled_videos,
            group=group,
            groups=data.shard_groups,
            workers=data.workers,
            id=f"prepare_videos_{group}" if data.shard_groups > 1 else None,
        )
        parts.append(part)
        logs.append(log)
    corpus, rejections = merge_corpus(parts, logs)

    video_split = split_videos(corpus, data.benchmark_fraction, seed, data.paper_overlap)
    generator = generation.generator
    sft, preferences, training_log = generate_training_text(
        corpus, video_split, generator, generation.questions_per_video, seed)
    normal, shuffled, benchmark_log = generate_benchmark(corpus, video_split, generator, generation.mcq_per_video, seed)
    quality = check_data_quality(sft, preferences, normal, training_log, benchmark_log, video_split)

    if data.export_dir:
        export_corpus(corpus, rejections, data.export_dir)
        export_text(sft, preferences, normal, shuffled, data.export_dir)
    return DataArtifacts(corpus, sft, preferences, normal, shuffled, quality, video_split)


# ---- training runs: checks, recipes, the starting model -------------------------------


def training_recipes(run: ExplicitRunSettings, dpo_steps: list[str], sft_steps: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The run's DPO and SFT recipes as values (read here, so the steps' cache keys follow
    the recipes' content), after the preflight checks: an experiment tracker, and GPU
    settings for the steps whose recipe trains on GPU (``dpo_steps`` use the DPO recipe;
    ``train_sft`` and ``sft_steps`` the SFT recipe)."""
    if Client().active_stack.experiment_tracker is None:  # fail before any work, not after training
        raise RuntimeError(
            "this pipeline logs to MLflow, but the active stack has no experiment tracker: "
            "run `make stack` for the local one, or see infra/README.md"
        )
    training = run.training
    overrides = training.recipe_overrides or {}
    dpo = DPORecipe.from_yaml(training.dpo_recipe, **overrides).to_dict()
    sft = SFTRecipe.from_yaml(training.sft_recipe, **SFTRecipe.own_fields(overrides)).to_dict()
    sft_steps = (*(("train_sft",) if training.with_sft else ()), *sft_steps)
    check_run(gpu_steps=[*(dpo_steps if not dpo["use_cpu"] else ()), *(sft_steps if not sft["use_cpu"] else ())])
    return dpo, sft


def tracker_name() -> str:
    return Client().active_stack.experiment_tracker.name


def starting_model(run: ExplicitRunSettings, data: DataArtifacts, sft_recipe: dict):
    """The model every DPO arm starts from: the base model, taught by SFT first when the run
    has an SFT stage."""
    training = run.training
    model = prepare_base_model(training.base_model, training.model_family, run.data.seed)
    if training.with_sft:
        model = train_sft(model, data.sft, data.corpus, sft_recipe, training.checkpoint_root)
    return model


def evaluate(model, data: DataArtifacts, run: ExplicitRunSettings, dpo_recipe: dict, id: str):
    """``model`` on the run's normal and shuffled benchmarks with every scorer."""
    return evaluate_model(model, data.normal, data.shuffled, data.corpus, dpo_recipe["frames_per_video"],
                          list(run.evaluation.scorers), id=id)


def promotion_stage(trained, report, trained_eval, data: DataArtifacts, run: ExplicitRunSettings, dpo_recipe: dict,
                    control_report=None):
    """The registry's champion re-scored on this run's items, the gate, registration."""
    promotion = run.promotion
    champion_eval = evaluate_champion(data.normal, data.shuffled, data.corpus, dpo_recipe["frames_per_video"],
                                      [promotion.gate_scorer], promotion.registered_model_name)
    return register_model.with_options(experiment_tracker=tracker_name())(
        trained, report, trained_eval, champion_eval, promotion.gate_scorer, promotion.registered_model_name,
        control_report, list(promotion.gate_metrics), promotion.gate_margin,
    )


# ---- the paper's other arms -------------------------------------------------------------


def hound_stage(run: VariantsRunSettings):
    """LLaVA-Hound's DPO pairs and their frames (a generated miniature when none are given)."""
    variants = run.variants
    hound_corpus, hound_pairs, _ = load_hound_pairs(variants.hound_records, variants.hound_frames,
                                                    run.data.frames_per_video, variants.hound_max_pairs, run.data.seed)
    return hound_pairs, hound_corpus


def arm_pairs(arm: str, run: VariantsRunSettings, data: DataArtifacts, model, hound=None):
    """What ``arm`` trains on: (preference pairs, the corpus holding their frames)."""
    if arm == "TimeWarp-Explicit":
        return data.preferences, data.corpus
    if arm == "TimeWarp-Implicit":
        pairs, _ = generate_implicit_pairs(model, data.corpus, data.split, run.data.frames_per_video, run.data.seed,
                                           run.variants.implicit_max_new_tokens)
        return pairs, data.corpus
    hound_pairs, hound_corpus = hound or hound_stage(run)
    if arm == "Base-DPO":
        return hound_pairs, hound_corpus
    if arm == "Combined":
        combined, combined_corpus, _ = combine_pairs(data.preferences, data.corpus, hound_pairs, hound_corpus)
        return combined, combined_corpus
    raise ValueError(f"unknown arm {arm!r}; the DPO arms are {list(DPO_ARMS)}")


def single_arm(arm: str, run: VariantsRunSettings):
    """One arm as its own pipeline: data -> [SFT] -> the arm's pairs -> DPO -> evaluation
    against the starting model -> champion and registration under the arm's model name."""
    dpo, sft = training_recipes(run, ["train_dpo", *ARM_MODEL_STEPS.get(arm, ())])
    data = data_stage(run.data, run.generation)
    model = starting_model(run, data, sft)
    pairs, corpus = arm_pairs(arm, run, data, model)
    trained = train_dpo(model, pairs, corpus, dpo, run.training.checkpoint_root)
    start_eval = evaluate(model, data, run, dpo, id="evaluate_base")
    trained_eval = evaluate(trained, data, run, dpo, id="evaluate_trained")
    report = compare_models(start_eval, trained_eval)
    promotion_stage(trained, report, trained_eval, data, run, dpo)
    return trained, report

