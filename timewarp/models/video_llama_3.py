"""VideoLLaMA3 family adapter (transformers ``video_llama_3``).

Covers the transformers-native VideoLLaMA3 conversions (e.g.
``lkhl/VideoLLaMA3-2B-Image-HF``): a SigLIP-based vision encoder that takes any
resolution (14 px patches, 2D rotary positions), 2x2 patch merging for videos, an MLP
projector and a Qwen2 language model. Frames keep their aspect ratio: each side is
rounded to a multiple of 28 px within a pixel budget shared by all frames.

A video is one ``<|video_pad|>`` token in the text; ``VideoLlama3Processor`` expands it
to ``Time 0.0s:<|video_pad|>*n,Time 1.0s:<|video_pad|>*n,...``. With token compression
(on, as released) the tokens of patches that barely change from the previous frame are
dropped, so ``n`` varies per frame. The timestamps come from ``video_metadata``; the
frames of a :class:`~timewarp.models.base.VideoSample` carry no times, so they are given
``frame_fps`` (default 1 frame a second, the processor's own fallback).

Chat format (VideoLLaMA3's template: ChatML, media in content order, each followed by a
newline, no default system turn)::

    <|im_start|>user\\n<|video_pad|>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>\\n
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from timewarp.models.base import VideoSample
from timewarp.models.video_chat import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    ChatVideoFamily,
    build_and_save,
    chatml_template,
    make_tiny_chatml_tokenizer,
    token_ids,
)

__all__ = ["CHAT_TEMPLATE", "FAMILY", "family", "VideoLlama3Family"]

#: ChatML; an image renders as <|image_pad|>, a video as <|video_pad|>, each on its own line.
CHAT_TEMPLATE: Final = chatml_template("<|image_pad|>", "<|video_pad|>")

TINY_PATCH_SIZE: Final = 14
MERGE_SIZE: Final = 2
#: Pixel budget of a whole video (divided among its frames), so that up to 8 frames of
#: 64x96 keep their size (56x84: 4x6 patches, 2x3 = 6 tokens a frame before compression).
TINY_VIDEO_MAX_PIXELS: Final = 8 * 56 * 84
TINY_MIN_PIXELS: Final = 28 * 28


class VideoLlama3Family(ChatVideoFamily):
    name: str = "video_llama_3"
    model_types: tuple[str, ...] = ("video_llama_3",)
    vision_keys: tuple[str, ...] = (
        "pixel_values_videos",
        "video_grid_thw",
        "video_merge_sizes",
        "video_compression_mask",
    )
    language_model_module: str = "language_model"
    vision_tower_module: str = "vision_model"
    projector_modules: tuple[str, ...] = ("projector",)
    unused_modules: tuple[str, ...] = ()

    def __init__(self, *, frame_fps: float = 1.0, video_size: dict[str, int] | None = None) -> None:
        """
        Args:
            frame_fps: Frame rate assumed for the frames of a sample (they carry no
                timestamps); sets the "Time t s:" prefixes.
            video_size: ``{"shortest_edge": min pixels a frame, "longest_edge": max pixels
                of the whole video}`` for every call, overriding the checkpoint's video
                processor (the released one enlarges frames to at least 128*28*28 pixels).
                ``None`` keeps the checkpoint's setting.
        """
        if frame_fps <= 0:
            raise ValueError("frame_fps must be > 0")
        self.frame_fps = frame_fps
        self.video_size = dict(video_size) if video_size is not None else None

    def render_prompt(self, processor: Any, question: str) -> str:
        return f"<|im_start|>user\n{processor.video_token}\n{question}<|im_end|>\n<|im_start|>assistant\n"

    def render_completion(self, processor: Any, answer: str) -> str:
        return f"{answer}<|im_end|>\n"

    def processor_call_kwargs(self, processor: Any, samples: Sequence[VideoSample]) -> dict[str, Any]:
        # Explicit metadata: timestamps for the "Time t s:" prefixes, and no fps warning.
        metadata = []
        for s in samples:
            n, height, width = s.frames.shape[:3]
            metadata.append(
                {
                    "total_num_frames": n,
                    "fps": self.frame_fps,
                    "duration": n / self.frame_fps,
                    "frames_indices": list(range(n)),
                    "height": height,
                    "width": width,
                }
            )
        kwargs: dict[str, Any] = {"video_metadata": metadata}
        if self.video_size is not None:
            kwargs["size"] = self.video_size
        return kwargs

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        from transformers import (
            Qwen2Config,
            VideoLlama3Config,
            VideoLlama3ForConditionalGeneration,
            VideoLlama3ImageProcessor,
            VideoLlama3Processor,
            VideoLlama3VideoProcessor,
            VideoLlama3VisionConfig,
        )

        tokenizer = make_tiny_chatml_tokenizer(
            CHAT_TEMPLATE,
            {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        )
        processor = VideoLlama3Processor(
            image_processor=VideoLlama3ImageProcessor(
                size={"shortest_edge": TINY_MIN_PIXELS, "longest_edge": 4 * TINY_VIDEO_MAX_PIXELS},
                patch_size=TINY_PATCH_SIZE,
                merge_size=1,  # as released: images are not merged, videos are
            ),
            tokenizer=tokenizer,
            # Explicit pixel budget: the default (128*28*28 min a frame) would upscale small frames.
            video_processor=VideoLlama3VideoProcessor(
                size={"shortest_edge": TINY_MIN_PIXELS, "longest_edge": TINY_VIDEO_MAX_PIXELS},
                patch_size=TINY_PATCH_SIZE,
                merge_size=MERGE_SIZE,
                use_token_compression=True,
            ),
            chat_template=CHAT_TEMPLATE,
        )
        config = VideoLlama3Config(
            vision_config=VideoLlama3VisionConfig(**TINY_VISION_SIZES, patch_size=TINY_PATCH_SIZE),
            text_config=Qwen2Config(
                vocab_size=len(tokenizer), tie_word_embeddings=True, **TINY_TEXT_SIZES, **token_ids(tokenizer)
            ),
            image_token_id=processor.image_token_id,
            video_token_id=processor.video_token_id,
            tie_word_embeddings=True,
        )
        return build_and_save(VideoLlama3ForConditionalGeneration, config, processor, out_dir, seed=seed)


FAMILY: Final = VideoLlama3Family()
#: Alias: the registry looks up a module attribute named ``family``.
family: Final = FAMILY
