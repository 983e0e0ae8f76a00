"""ZenML materializers, one per domain type of :mod:`timewarp`."""

from materializers.rejection_log_materializer import RejectionLogMaterializer
from materializers.shard_set_materializer import ShardSetMaterializer
from materializers.video_corpus_materializer import VideoCorpusMaterializer

__all__ = ["RejectionLogMaterializer", "ShardSetMaterializer", "VideoCorpusMaterializer"]
