from zenml import pipeline

from pipelines.preflight import check_run
from pipelines.reporting import reported
from pipelines.data_stage import data_stage
from timewarp.generation.config import GeneratorConfig
from timewarp.run_config import DataSettings, GenerationSettings


@reported
@pipeline
def timewarp_data(
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
    workers: int | None = None,
    generator: GeneratorConfig = GeneratorConfig(),
    questions_per_video: int = 3,
    mcq_per_video: int = 3,
    benchmark_fraction: float = 0.25,
    paper_overlap: bool = False,
    sample_preset: str = "small",
):
    """FineVideo shards -> scenes -> shuffled scene order -> frames and merged captions ->
    SFT pairs, explicit preference pairs and the normal / shuffled benchmarks.

    With no ``finevideo_root`` it runs on a generated FineVideo miniature.
    """
    parameters = locals()  # the flat parameters, grouped and validated before anything runs
    data = DataSettings(**{name: parameters[name] for name in DataSettings.model_fields})
    generation = GenerationSettings(**{name: parameters[name] for name in GenerationSettings.model_fields})
    check_run()
    artifacts = data_stage(data, generation)
    return artifacts.sft, artifacts.preferences, artifacts.normal, artifacts.shuffled
