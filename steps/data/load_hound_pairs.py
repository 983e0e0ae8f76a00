from typing import Annotated, Tuple

from zenml import step

from steps._workdir import scratch_dir
from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.hound import read_hound_pairs, write_hound_miniature
from timewarp.generation.datasets import PreferenceDataset


# Cached by its parameters: the released set does not change under one URI (pin a revision
# in an hf:// URI), and a re-read would hand the DPO arms after it new artifacts, retraining
# them. Content that changed under the same URI: disable this step's cache in the run config.
@step
def load_hound_pairs(
    hound_records: str | None,
    hound_frames: str | None,
    frames_per_video: int,
    max_pairs: int | None,
    seed: int,
) -> Tuple[
    Annotated[VideoCorpus, "hound_corpus"],
    Annotated[PreferenceDataset, "hound_pairs"],
    Annotated[RejectionLog, "hound_rejections"],
]:
    """LLaVA-Hound's DPO pairs (``hound_records``: ``sft_dpo_17k.jsonl``) with their frames
    (``hound_frames``: the folder of per-video frame folders), both any fsspec URI. Neither
    given: a generated miniature in the same layout (``seed``), read by the same reader."""
    if (hound_records is None) != (hound_frames is None):
        raise ValueError(
            f"hound_records ({hound_records!r}) and hound_frames ({hound_frames!r}) go together: set both "
            "(the sft_dpo_17k.jsonl and the folder of its per-video frame folders) or neither (a generated miniature)"
        )
    if hound_records is None:
        hound_records, hound_frames = write_hound_miniature(
            scratch_dir("hound-source"), seed=seed, frames_per_video=frames_per_video
        )
    corpus, pairs, rejections = read_hound_pairs(
        hound_records, hound_frames, scratch_dir("hound"), frames_per_video=frames_per_video, max_pairs=max_pairs
    )
    print(f"LLaVA-Hound: {len(pairs.pairs)} pairs over {len(corpus.videos)} videos from {corpus.rows_read} lines, "
          f"{len(rejections)} rejected {rejections.by_stage()}")
    return corpus, pairs, rejections  # a tuple literal: ZenML reads the three outputs from it
