from zenml import Model, pipeline
from zenml.client import Client

from pipelines.preflight import check_run
from pipelines.reporting import reported
from pipelines.stages import data_stage
from steps.evaluation import compare_models, evaluate_champion, evaluate_model
from steps.tracking import register_model
from steps.training import continue_sft, prepare_base_model, train_dpo, train_sft
from timewarp.generation.config import GeneratorConfig
from timewarp.run_config import ExplicitRunSettings
from timewarp.tracking.promotion import GATED_METRICS
from timewarp.training.config import DPORecipe, SFTRecipe

#: The embedded default trains on the one-hop questions a tiny model learns in a minute on
#: a CPU; "after"/"before" (find the anchor, then step) stay near chance at that budget.
DEFAULT_QUESTION_TYPES = ("beginning", "end")


@reported
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
    sample_videos: int = 600,
    sample_preset: str = "learnable",
    integer_timestamps: bool = False,
    shard_groups: int = 1,
    workers: int = 2,
    generator: GeneratorConfig = GeneratorConfig(question_types=DEFAULT_QUESTION_TYPES),
    questions_per_video: int = 2,
    mcq_per_video: int = 2,
    benchmark_fraction: float = 0.25,
    paper_overlap: bool = False,
    base_model: str | None = None,
    model_family: str = "qwen2_vl",
    sft_stage: bool | None = None,
    control: str | None = None,
    sft_recipe: str = "configs/recipes/sft_cpu_tiny.yaml",
    dpo_recipe: str = "configs/recipes/dpo_cpu_tiny.yaml",
    recipe_overrides: dict | None = None,
    checkpoint_root: str = ".timewarp/checkpoints",
    scorers: tuple[str, ...] = ("text_loglik",),
    gate_scorer: str = "text_loglik",
    gate_metrics: tuple[str, ...] = GATED_METRICS,
    gate_margin: float = 0.0,
    registered_model_name: str = "timewarp-explicit",
):
    """TimeWarp-Explicit: data -> [SFT] -> DPO on true- vs shuffled-order answers
    -> [continued-SFT control] -> evaluation of every model on the normal and shuffled
    benchmarks -> MLflow registry and promotion.

    With no config: the learnable generated sample, the template generator and a tiny
    ``model_family`` model built offline, first taught by SFT (``sft_stage`` unset: SFT when
    no ``base_model`` is given, as a random model must learn the task before DPO can refine
    it), on CPU. ``control: sft_continue`` also continues SFT for as many examples as DPO
    sees. ``base_model`` (hub id or path) and a GPU recipe (``configs/recipes/dpo_paper.yaml``)
    train a real model.

    Promotion: the registry's current champion is re-scored on this run's benchmark and the
    new model becomes champion when, with ``gate_scorer``, the 95% lower bound (clustered by
    video) of its paired difference from the champion exceeds ``gate_margin`` on every one of
    ``gate_metrics`` (:mod:`timewarp.tracking.promotion`).
    """
    # The flat parameters, grouped and validated (timewarp.run_config) before anything runs.
    run = ExplicitRunSettings.from_parameters(locals())
    data, training, promotion = run.data, run.training, run.promotion
    tracker = Client().active_stack.experiment_tracker
    if tracker is None:  # fail before any work, not after training
        raise RuntimeError(
            "timewarp_explicit logs to MLflow, but the active stack has no experiment tracker: "
            "run `make stack` for the local one, or see infra/README.md"
        )
    # Recipes are read here, so the steps' cache keys follow the recipe's content.
    overrides = training.recipe_overrides or {}
    dpo_values = DPORecipe.from_yaml(training.dpo_recipe, **overrides).to_dict()
    sft_values = SFTRecipe.from_yaml(training.sft_recipe, **SFTRecipe.own_fields(overrides)).to_dict()
    with_sft, control = training.with_sft, training.control
    # The run's training steps and their recipes: on Kubernetes a GPU recipe needs GPU pods.
    trained_on = {"train_dpo": dpo_values, "train_sft": with_sft and sft_values, "continue_sft": control and sft_values}
    check_run(gpu_steps=[step for step, recipe in trained_on.items() if recipe and not recipe["use_cpu"]])

    # ---- data: shards -> corpus -> SFT / preference pairs and benchmarks ----
    corpus, sft, preferences, normal, shuffled, _ = data_stage(data, run.generation)

    # ---- training: [SFT] -> DPO ----
    checkpoint_root = training.checkpoint_root
    model = prepare_base_model(training.base_model, training.model_family, data.seed)
    if with_sft:
        model = train_sft(model, sft, corpus, sft_values, checkpoint_root)
    trained = train_dpo(model, preferences, corpus, dpo_values, checkpoint_root)

    # ---- evaluation: every model on the normal and shuffled benchmarks ----
    evaluation = (normal, shuffled, corpus, dpo_values["frames_per_video"], list(run.evaluation.scorers))
    start_eval = evaluate_model(model, *evaluation, id="evaluate_base")
    trained_eval = evaluate_model(trained, *evaluation, id="evaluate_trained")
    report = compare_models(start_eval, trained_eval)
    control_report = None
    if control:
        control_model = continue_sft(model, sft, preferences, corpus, sft_values, dpo_values, checkpoint_root)
        control_eval = evaluate_model(control_model, *evaluation, id="evaluate_control")
        control_report = compare_models(start_eval, control_eval, id="compare_control")

    # ---- promotion: the registry's champion re-scored, the gate, registration ----
    champion_eval = evaluate_champion(normal, shuffled, corpus, dpo_values["frames_per_video"],
                                      [promotion.gate_scorer], promotion.registered_model_name)
    register_model.with_options(experiment_tracker=tracker.name)(
        trained, report, trained_eval, champion_eval, promotion.gate_scorer, promotion.registered_model_name,
        control_report, list(promotion.gate_metrics), promotion.gate_margin,
    )
    return trained, report

