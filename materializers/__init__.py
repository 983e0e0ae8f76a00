"""ZenML materializers, one per domain type of :mod:`timewarp`."""

from materializers.evaluation_materializers import (
    BenchmarkResultsMaterializer,
    ComparisonReportMaterializer,
    ModelEvaluationMaterializer,
    VariantsReportMaterializer,
)
from materializers.json_materializers import QualityReportMaterializer, VideoSplitMaterializer
from materializers.model_checkpoint_materializer import ModelCheckpointMaterializer
from materializers.rejection_log_materializer import RejectionLogMaterializer
from materializers.shard_set_materializer import ShardSetMaterializer
from materializers.text_dataset_materializers import (
    GenerationLogMaterializer,
    MCQBenchmarkMaterializer,
    PreferenceDatasetMaterializer,
    SFTDatasetMaterializer,
)
from materializers.video_corpus_materializer import VideoCorpusMaterializer

__all__ = [
    "BenchmarkResultsMaterializer",
    "ComparisonReportMaterializer",
    "ModelEvaluationMaterializer",
    "GenerationLogMaterializer",
    "MCQBenchmarkMaterializer",
    "ModelCheckpointMaterializer",
    "PreferenceDatasetMaterializer",
    "QualityReportMaterializer",
    "RejectionLogMaterializer",
    "SFTDatasetMaterializer",
    "ShardSetMaterializer",
    "VideoCorpusMaterializer",
    "VariantsReportMaterializer",
    "VideoSplitMaterializer",
]
