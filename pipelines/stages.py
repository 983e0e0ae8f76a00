"""Stages shared by the training pipelines: plain functions that call steps, so each
pipeline reads like a table of contents (the data stage, shared by all, is in
``pipelines/data_stage.py``)."""

from __future__ import annotations

from zenml.client import Client
from zenml.pipelines.compilation_context import PipelineCompilationContext

from pipelines.data_stage import DataArtifacts, data_stage
from pipelines.preflight import check_run, require_experiment_tracker
from steps.data import load_hound_pairs
from steps.evaluation import (
    compare_models,
    evaluate_champion,
    evaluate_model,
    score_checkpoint_public_benchmarks,
    score_public_benchmarks,
)
from steps.generation import combine_pairs, generate_implicit_pairs
from steps.tracking import log_public_benchmarks, register_model
from steps.training import prepare_base_model, train_dpo, train_sft
from timewarp.run_config import ArmRunSettings, ExplicitRunSettings, VariantsRunSettings
from timewarp.training.config import DPORecipe, SFTRecipe

#: The DPO arms of the paper's table, each with the step-name suffix of its steps.
DPO_ARMS = {"Base-DPO": "base_dpo", "Combined": "combined", "TimeWarp-Implicit": "implicit",
            "TimeWarp-Explicit": "explicit"}
#: Steps that run the model being trained (on GPU with a GPU recipe), per arm.
ARM_MODEL_STEPS = {"TimeWarp-Implicit": ("generate_implicit_pairs",)}


# ---- training runs: checks, recipes, the starting model -------------------------------


def training_recipes(run: ExplicitRunSettings, dpo_steps: list[str], sft_steps: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """The run's DPO and SFT recipes as values (read here, so the steps' cache keys follow
    the recipes' content), after the preflight checks: an experiment tracker, and GPU
    settings for the steps whose recipe trains on GPU (``dpo_steps`` use the DPO recipe;
    ``train_sft`` and ``sft_steps`` the SFT recipe)."""
    require_experiment_tracker(PipelineCompilationContext.get().pipeline.name)  # before any work, not after training
    training = run.training
    overrides = training.recipe_overrides or {}
    dpo = DPORecipe.from_yaml(training.dpo_recipe, **overrides).to_dict()
    sft = SFTRecipe.from_yaml(training.sft_recipe, **SFTRecipe.own_fields(overrides)).to_dict()
    sft_steps = (*(("train_sft",) if training.with_sft else ()), *sft_steps)
    check_run(gpu_steps=[*(dpo_steps if not dpo["use_cpu"] else ()), *(sft_steps if not sft["use_cpu"] else ())])
    return dpo, sft


def tracker_name() -> str | None:
    """The active stack's experiment tracker (None without one)."""
    tracker = Client().active_stack.experiment_tracker
    return tracker.name if tracker is not None else None


def starting_model(run: ExplicitRunSettings, data: DataArtifacts, sft_recipe: dict):
    """The model every DPO arm starts from: the base model, taught by SFT first when the run
    has an SFT stage."""
    training = run.training
    model = prepare_base_model(training.base_model, training.model_family, run.data.seed)
    if training.with_sft:
        model = train_sft.with_options(experiment_tracker=tracker_name())(model, data.sft, data.corpus, sft_recipe,
                                                                          training.checkpoint_root)
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


# ---- public benchmarks after registration ----------------------------------------------

#: The MLflow experiment every public-benchmark run logs to (``timewarp_evaluate``'s own).
PUBLIC_BENCHMARK_EXPERIMENT = "timewarp_evaluate"


def public_benchmark_steps(run: ExplicitRunSettings) -> list[str]:
    """The scoring steps :func:`public_benchmark_stage` adds (they run the model: on GPU
    with a GPU recipe)."""
    return [f"score_public_benchmarks_{role}" for role in ("candidate", "champion")] if run.public.public_benchmarks else []


def public_benchmark_stage(trained, registration, run: ExplicitRunSettings, dpo_recipe: dict) -> None:
    """When ``public_benchmarks`` names any, the trained model (role ``candidate``) and the
    registry's champion after registration (``champion``) on them through lmms-eval; each
    logs ``bench/<task>/<metric>`` to its own nested MLflow run in the experiment
    ``timewarp_evaluate`` (run name ``log_public_benchmarks_<role>``, tag ``role``)."""
    public = run.public
    if not public.public_benchmarks:
        return
    from zenml.integrations.mlflow.flavors.mlflow_experiment_tracker_flavor import (
        MLFlowExperimentTrackerSettings,
    )

    benchmarks, roots, limit = list(public.public_benchmarks), public.benchmark_roots, public.public_benchmark_limit
    frames = dpo_recipe["frames_per_video"]
    champion = f"models:/{run.promotion.registered_model_name}@champion"
    scored = {
        "candidate": (score_checkpoint_public_benchmarks(trained, benchmarks, roots, limit, frames,
                                                         id="score_public_benchmarks_candidate", after=registration),
                      f"{run.promotion.registered_model_name} candidate trained in this run"),
        "champion": (score_public_benchmarks(champion, benchmarks, roots, limit, frames,
                                             id="score_public_benchmarks_champion", after=registration), champion),
    }
    for role, (results, label) in scored.items():
        settings = MLFlowExperimentTrackerSettings(experiment_name=PUBLIC_BENCHMARK_EXPERIMENT, nested=True,
                                                   tags={"role": role})
        log_public_benchmarks.with_options(experiment_tracker=tracker_name(),
                                           settings={"experiment_tracker": settings})(
            results, label, id=f"log_public_benchmarks_{role}")


# ---- the paper's other arms -------------------------------------------------------------


def hound_stage(run: ArmRunSettings | VariantsRunSettings):
    """LLaVA-Hound's DPO pairs and their frames (a generated miniature when none are given)."""
    variants = run.variants
    hound_corpus, hound_pairs, _ = load_hound_pairs(variants.hound_records, variants.hound_frames,
                                                    run.data.frames_per_video, variants.hound_max_pairs, run.data.seed)
    return hound_pairs, hound_corpus


def arm_pairs(arm: str, run: ArmRunSettings | VariantsRunSettings, data: DataArtifacts, model, hound=None):
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


def single_arm(arm: str, run: ArmRunSettings):
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

