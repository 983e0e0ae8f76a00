from zenml import Model, pipeline

from pipelines.reporting import reported
from pipelines.stages import single_arm
from pipelines.timewarp_explicit import DEFAULT_QUESTION_TYPES
from timewarp.generation.config import GeneratorConfig
from timewarp.run_config import ArmRunSettings
from timewarp.tracking.promotion import GATED_METRICS


@reported
@pipeline(model=Model(name="timewarp-base-dpo", description="Base-DPO: DPO on LLaVA-Hound's 17k video preference pairs"))
def timewarp_base_dpo(
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
    gate_scorer: str = "text_loglik",
    gate_metrics: tuple[str, ...] = GATED_METRICS,
    gate_margin: float = 0.0,
    registered_model_name: str = "timewarp-base-dpo",
    hound_records: str | None = None,
    hound_frames: str | None = None,
    hound_max_pairs: int | None = None,
):
    """Base-DPO: data (for the SFT stage and the benchmarks) -> [SFT] -> DPO on LLaVA-Hound's
    ``sft_dpo_17k.jsonl`` pairs (``hound_records`` + ``hound_frames``, any fsspec URI; unset: a
    generated miniature in the same layout) -> evaluation against the starting model ->
    MLflow registry and promotion (model ``timewarp-base-dpo``).

    Same parameters as ``timewarp_explicit`` (no control arm), plus the LLaVA-Hound source
    and ``hound_max_pairs``.
    """
    return single_arm("Base-DPO", ArmRunSettings.from_parameters(locals()))
