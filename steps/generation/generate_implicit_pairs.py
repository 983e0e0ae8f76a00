from typing import Annotated, Tuple

from zenml import log_metadata, step

from steps.generation._generator import corpus_uri
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import GenerationLog, PreferenceDataset
from timewarp.generation.implicit import ImplicitConfig, generate_implicit_pairs as implicit_pairs
from timewarp.generation.splits import VideoSplit
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.models.placement import placement_of


@step
def generate_implicit_pairs(
    model: ModelCheckpoint,
    corpus: VideoCorpus,
    video_split: VideoSplit,
    frames_per_video: int,
    seed: int,
    max_new_tokens: int = ImplicitConfig.max_new_tokens,
    batch_size: int = ImplicitConfig.batch_size,
) -> Tuple[Annotated[PreferenceDataset, "implicit_pairs"], Annotated[GenerationLog, "implicit_generation_log"]]:
    """TimeWarp-Implicit pairs for the training videos: ``model``'s own answers on clean
    frames (chosen) vs corrupted frames or an imagined-events prompt (rejected), on the GPU
    when there is one (see :meth:`ModelCheckpoint.load`). Replies are cached, so a retried
    step resumes; the call counters are recorded as step metadata ``generation``."""
    loaded, processor, family = model.load()
    placement = placement_of(loaded)
    print(f"generating implicit pairs with the {model.kind} model {model.path} on {placement}")
    config = ImplicitConfig(frames_per_video=frames_per_video, max_new_tokens=max_new_tokens, batch_size=batch_size,
                            seed=seed)
    train = set(video_split.train_ids)
    video_ids = [video.video_id for video in corpus.videos if video.video_id in train]
    pairs, log = implicit_pairs(loaded, processor, family, corpus, video_ids, config,
                                model_label=f"{model.kind} {model.path}", media_root=corpus_uri())
    counts = pairs.generator["counts"]
    log_metadata({"generation": counts,
                  "placement": {"device": placement.device, "dtype": placement.dtype, "batch_size": batch_size}})
    if not pairs.pairs:
        reasons = sorted({rejection.reason for rejection in log.rejections})
        raise ValueError(f"no implicit pairs from {counts['videos']} training videos; every one was rejected: "
                         f"{reasons[:5]}. Raise max_new_tokens or check the model's replies")
    return pairs, log
