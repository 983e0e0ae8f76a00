from zenml import pipeline

from pipelines.reporting import reported
from pipelines.stages import (
    DPO_ARMS,
    arm_pairs,
    data_stage,
    evaluate,
    hound_stage,
    starting_model,
    tracker_name,
    training_recipes,
)
from pipelines.timewarp_explicit import DEFAULT_QUESTION_TYPES
from steps.evaluation import compare_variants
from steps.tracking import log_variants
from steps.training import train_dpo
from timewarp.evaluation.variants import BASELINE_ARM
from timewarp.generation.config import GeneratorConfig
from timewarp.run_config import VariantsRunSettings


@reported
@pipeline
def timewarp_variants(
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
    workers: int | None = None,
    generator: GeneratorConfig = GeneratorConfig(question_types=DEFAULT_QUESTION_TYPES),
    questions_per_video: int = 2,
    mcq_per_video: int = 2,
    benchmark_fraction: float = 0.25,
    paper_overlap: bool = False,
    base_model: str | None = None,
    model_family: str = "qwen2_vl",
    sft_stage: bool | None = None,
    sft_recipe: str = "configs/recipes/sft_cpu_tiny.yaml",
    dpo_recipe: str = "configs/recipes/dpo_cpu_tiny.yaml",
    recipe_overrides: dict | None = None,
    checkpoint_root: str = ".timewarp/checkpoints",
    scorers: tuple[str, ...] = ("text_loglik",),
    hound_records: str | None = None,
    hound_frames: str | None = None,
    hound_max_pairs: int | None = None,
    implicit_max_new_tokens: int = 48,
):
    """The paper's table: SFT, Base-DPO, Combined, TimeWarp-Implicit and TimeWarp-Explicit.

    Every DPO arm starts from the same model (the SFT row: the base model, taught by SFT
    first when the run has an SFT stage), trains with the same DPO recipe for the same
    number of optimizer steps (those the recipe takes on the Explicit pairs; a smaller set
    is cycled, a larger one not seen whole), and is scored on the same benchmarks with the
    same scorers. The table (every arm's accuracy with its 95% interval and its paired
    difference from SFT) is printed at the end, shown in the dashboard (``variants_report``)
    and logged to MLflow (experiment ``timewarp_variants``, metrics
    ``eval/<scorer>/<metric>/<arm>``). Parameters as ``timewarp_explicit`` (no control arm,
    no registration) plus the LLaVA-Hound source and ``implicit_max_new_tokens``.
    """
    run = VariantsRunSettings.from_parameters(locals())
    dpo, sft = training_recipes(run, ["generate_implicit_pairs", *(f"train_dpo_{s}" for s in DPO_ARMS.values())])

    # ---- data: the TimeWarp corpus, pairs and benchmarks; LLaVA-Hound's pairs ----
    data = data_stage(run.data, run.generation)
    hound = hound_stage(run)

    # ---- the starting model (the SFT row), then every DPO arm from it ----
    model = starting_model(run, data, sft)
    evaluations = [evaluate(model, data, run, dpo, id="evaluate_sft")]
    trained_on = []
    for arm, suffix in DPO_ARMS.items():
        pairs, corpus = arm_pairs(arm, run, data, model, hound)
        # Explicit trains on its own budget, as in timewarp_explicit (whose run it can reuse).
        budget = None if arm == "TimeWarp-Explicit" else data.preferences
        trained = train_dpo(model, pairs, corpus, dpo, run.training.checkpoint_root, budget, id=f"train_dpo_{suffix}")
        evaluations.append(evaluate(trained, data, run, dpo, id=f"evaluate_{suffix}"))
        trained_on.append(pairs)

    # ---- the table: dashboard, MLflow, terminal ----
    report = compare_variants([BASELINE_ARM, *DPO_ARMS], evaluations, trained_on)
    log_variants.with_options(experiment_tracker=tracker_name())(report, dpo)
    return report
