from typing import Annotated

from zenml import log_metadata, step

from timewarp.generation.datasets import GenerationLog, MCQBenchmark, PreferenceDataset, SFTDataset
from timewarp.generation.quality import QualityReport, build_report
from timewarp.generation.records import BenchmarkText, TrainingText
from timewarp.generation.splits import VideoSplit


@step
def check_data_quality(
    sft_pairs: SFTDataset,
    preference_pairs: PreferenceDataset,
    normal_benchmark: MCQBenchmark,
    training_generation_log: GenerationLog,
    benchmark_generation_log: GenerationLog,
    video_split: VideoSplit,
) -> Annotated[QualityReport, "data_quality_report"]:
    """The data-quality report; hard violations (leakage, chosen == rejected, malformed
    benchmark items) fail the run after the report is logged on the step."""
    report = build_report(
        TrainingText(sft_pairs.pairs, preference_pairs.pairs, training_generation_log.rejections),
        BenchmarkText(normal_benchmark.items, benchmark_generation_log.rejections),
        video_split,
    )
    log_metadata({"data_quality": report.as_metadata(), "violations": report.violations[:20]})
    report.raise_on_violations()
    return report
