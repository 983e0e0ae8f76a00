from typing import Annotated

from zenml import step

from timewarp.data.corpus import VideoCorpus
from timewarp.generation.splits import VideoSplit, split_videos as split


@step
def split_videos(
    corpus: VideoCorpus, benchmark_fraction: float, seed: int, paper_overlap: bool
) -> Annotated[VideoSplit, "video_split"]:
    """Training and benchmark videos, disjoint by id unless reproducing the paper's overlap."""
    return split([v.video_id for v in corpus.videos], benchmark_fraction, seed, paper_overlap)
