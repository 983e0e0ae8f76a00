from zenml import Model, pipeline
from zenml.client import Client

from pipelines.stages import data_stage
from steps.evaluation import compare_models, evaluate_model
from steps.registry import register_model
from steps.training import prepare_base_model, train_dpo, train_sft
from timewarp.generation.config import GeneratorConfig
from timewarp.training.config import DPORecipe, SFTRecipe


@pipeline(model=Model(name="timewarp-explicit", description="TimeWarp-Explicit: DPO on true- vs shuffled-order answers"))
def timewarp_explicit(
    finevideo_root: str | None = None,
    max_videos: int | None = None,
    max_seconds: float = 105.0,
    min_scenes: int = 2,
    seed: int = 0,
    frames_per_video: int = 8,
    render_shuffled_videos: bool = False,
    export_dir: str | None = None,
    sample_videos: int = 24,
    integer_timestamps: bool = False,
    shard_groups: int = 1,
    workers: int = 1,
    generator: GeneratorConfig = GeneratorConfig(),
    questions_per_video: int = 3,
    mcq_per_video: int = 3,
    benchmark_fraction: float = 0.25,
    paper_overlap: bool = False,
    base_model: str | None = None,
    model_family: str = "qwen2_vl",
    sft_stage: bool = False,
    sft_recipe: str = "configs/recipes/sft_cpu_tiny.yaml",
    dpo_recipe: str = "configs/recipes/dpo_cpu_tiny.yaml",
    recipe_overrides: dict | None = None,
    checkpoint_root: str = ".timewarp/checkpoints",
    scorers: tuple[str, ...] = ("generation", "loglik"),
    gate_scorer: str = "loglik",
    registered_model_name: str = "timewarp-explicit",
):
    """TimeWarp-Explicit: data -> (optional SFT) -> DPO on true- vs shuffled-order answers
    -> evaluation of the starting and the trained model -> MLflow registry and promotion.

    With no config: the generated sample, the template generator and a tiny ``model_family``
    model built offline, on CPU. ``base_model`` (hub id or path) and a GPU recipe
    (``configs/recipes/dpo_paper.yaml``) train a real model.
    """
    tracker = Client().active_stack.experiment_tracker
    if tracker is None:  # fail before any work, not after training
        raise RuntimeError(
            "timewarp_explicit logs to MLflow, but the active stack has no experiment tracker: "
            "run `make stack` for the local one, or see infra/README.md"
        )
    corpus, sft, preferences, normal, shuffled, _ = data_stage(
        finevideo_root, max_videos, max_seconds, min_scenes, seed, frames_per_video, render_shuffled_videos,
        export_dir, sample_videos, integer_timestamps, shard_groups, workers, generator, questions_per_video,
        mcq_per_video, benchmark_fraction, paper_overlap,
    )
    # Recipes are read here, so the steps' cache keys follow the recipe's content.
    overrides = recipe_overrides or {}
    recipe = DPORecipe.from_yaml(dpo_recipe, **overrides)
    model = prepare_base_model(base_model, model_family, seed)
    if sft_stage:
        model = train_sft(model, sft, corpus, SFTRecipe.from_yaml(sft_recipe, **overrides).to_dict(), checkpoint_root)
    trained = train_dpo(model, preferences, corpus, recipe.to_dict(), checkpoint_root)

    frames, scorer_names = recipe.frames_per_video, list(scorers)
    base_eval = evaluate_model(model, normal, shuffled, corpus, frames, scorer_names, id="evaluate_base")
    trained_eval = evaluate_model(trained, normal, shuffled, corpus, frames, scorer_names, id="evaluate_trained")
    report = compare_models(base_eval, trained_eval)
    register_model.with_options(experiment_tracker=tracker.name)(trained, report, gate_scorer, registered_model_name)
    return trained, report
