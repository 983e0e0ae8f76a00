from typing import Annotated, Tuple

from zenml import step

from steps.generation._generator import corpus_uri, log_generation_stats, step_generator
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.config import GeneratorConfig
from timewarp.generation.datasets import GenerationLog, PreferenceDataset, SFTDataset
from timewarp.generation.splits import VideoSplit


@step
def generate_training_text(
    corpus: VideoCorpus, video_split: VideoSplit, generator: GeneratorConfig, questions_per_video: int, seed: int
) -> Tuple[
    Annotated[SFTDataset, "sft_pairs"],
    Annotated[PreferenceDataset, "preference_pairs"],
    Annotated[GenerationLog, "training_generation_log"],
]:
    """SFT pairs and explicit preference pairs (chosen: true order, rejected: shuffled)."""
    backend = step_generator(generator, seed)
    train = set(video_split.train_ids)
    text = backend.training_text([v for v in corpus.videos if v.video_id in train], questions_per_video)
    log_generation_stats(backend)
    media_root, description = corpus_uri(), backend.describe()
    sft = SFTDataset(text.sft, media_root, description)
    preferences = PreferenceDataset(text.preferences, media_root, description)
    return sft, preferences, GenerationLog(text.rejections)
