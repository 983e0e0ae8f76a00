from typing import Annotated, Tuple

from zenml import log_metadata, step

from steps._workdir import scratch_dir
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.combine import combine_preferences
from timewarp.generation.datasets import GenerationLog, PreferenceDataset


@step
def combine_pairs(
    preference_pairs: PreferenceDataset,
    corpus: VideoCorpus,
    hound_pairs: PreferenceDataset,
    hound_corpus: VideoCorpus,
) -> Tuple[
    Annotated[PreferenceDataset, "combined_pairs"],
    Annotated[VideoCorpus, "combined_corpus"],
    Annotated[GenerationLog, "combined_generation_log"],
]:
    """The Combined arm: TimeWarp-Explicit pairs plus LLaVA-Hound's, over one corpus; every
    pair keeps its ``source``."""
    combined, merged, log = combine_preferences(
        [(preference_pairs, corpus), (hound_pairs, hound_corpus)], scratch_dir("combined"))
    log_metadata({"combined": {"pairs": len(combined.pairs), "rejected": len(log.rejections),
                               **combined.generator["sources"]}})
    print(f"combined {len(combined.pairs)} pairs ({combined.generator['sources']}), {len(log.rejections)} rejected")
    return combined, merged, log
