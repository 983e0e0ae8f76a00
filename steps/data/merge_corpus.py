from typing import Annotated, Tuple

from zenml import step

from steps._workdir import scratch_dir
from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.prepare import merge_corpora


@step
def merge_corpus(
    parts: list[VideoCorpus], rejections: list[RejectionLog]
) -> Tuple[Annotated[VideoCorpus, "corpus"], Annotated[RejectionLog, "rejections"]]:
    """One corpus from the shard-group parts; ids seen twice keep their first row."""
    corpus, merged_rejections = merge_corpora(list(zip(parts, rejections)), scratch_dir("corpus"))
    return corpus, merged_rejections
