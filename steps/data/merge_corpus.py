from typing import Annotated, Tuple

from zenml import step

from steps._workdir import scratch_dir
from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.outcome import outcome_lines, require_videos
from timewarp.data.prepare import merge_corpora


@step
def merge_corpus(
    parts: list[VideoCorpus], rejections: list[RejectionLog]
) -> Tuple[Annotated[VideoCorpus, "corpus"], Annotated[RejectionLog, "rejections"]]:
    """One corpus from the shard-group parts; ids seen twice keep their first row. Prints
    what became of the rows; fails here, saying why, when no row became a video."""
    corpus, merged_rejections = merge_corpora(list(zip(parts, rejections)), scratch_dir("corpus"))
    print("\n".join(outcome_lines(corpus, merged_rejections)))
    require_videos(corpus, merged_rejections)
    return corpus, merged_rejections
