from zenml import Model, pipeline

from pipelines.reporting import reported
from pipelines.stages import (
    data_stage,
    evaluate,
    promotion_stage,
    public_benchmark_stage,
    public_benchmark_steps,
    starting_model,
    training_recipes,
)
from steps.evaluation import compare_models
from steps.training import continue_sft, train_dpo
from timewarp.generation.config import GeneratorConfig
from timewarp.run_config import ExplicitRunSettings
from timewarp.tracking.promotion import GATED_METRICS

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
    workers: int | None = None,
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
    public_benchmarks: tuple[str, ...] = (),
    benchmark_roots: dict[str, str] | None = None,
    public_benchmark_limit: int | None = None,
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

    ``public_benchmarks`` (lmms-eval tasks or groups; empty: off) scores the trained model and
    the champion after registration on them, read from ``benchmark_roots`` where given
    (``timewarp_evaluate``'s parameters; :func:`pipelines.stages.public_benchmark_stage`).
    """
    # The flat parameters, grouped and validated (timewarp.run_config) before anything runs.
    run = ExplicitRunSettings.from_parameters(locals())
    control = run.training.control
    dpo, sft = training_recipes(run, ["train_dpo", *public_benchmark_steps(run)], ("continue_sft",) if control else ())

    # ---- data: shards -> corpus -> SFT / preference pairs and benchmarks ----
    data = data_stage(run.data, run.generation)

    # ---- training: [SFT] -> DPO ----
    model = starting_model(run, data, sft)
    trained = train_dpo(model, data.preferences, data.corpus, dpo, run.training.checkpoint_root)

    # ---- evaluation: every model on the normal and shuffled benchmarks ----
    start_eval = evaluate(model, data, run, dpo, id="evaluate_base")
    trained_eval = evaluate(trained, data, run, dpo, id="evaluate_trained")
    report = compare_models(start_eval, trained_eval)
    control_report = None
    if control:
        control_model = continue_sft(model, data.sft, data.preferences, data.corpus, sft, dpo,
                                     run.training.checkpoint_root)
        control_eval = evaluate(control_model, data, run, dpo, id="evaluate_control")
        control_report = compare_models(start_eval, control_eval, id="compare_control")

    # ---- promotion: the registry's champion re-scored, the gate, registration ----
    registration = promotion_stage(trained, report, trained_eval, data, run, dpo, control_report)

    # ---- public benchmarks (off unless public_benchmarks names any) ----
    public_benchmark_stage(trained, registration, run, dpo)
    return trained, report
