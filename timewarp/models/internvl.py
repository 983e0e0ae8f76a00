"""InternVL family adapter (transformers ``internvl``).

Covers the transformers-native InternVL checkpoints (``OpenGVLab/InternVL3-*-hf``,
``OpenGVLab/InternVL3_5-*-HF``): an InternViT vision tower, pixel shuffle (x0.5 per
side) and an MLP projector into a Qwen2 language model. It is the nearest native
relative of InternVideo2.5 (InternVL2.5 + video-specific training), whose own checkpoint
needs ``trust_remote_code``.

A video is one ``<video>`` token in the text; ``InternVLProcessor`` expands it to
``Frame{i}: <img><IMG_CONTEXT>*image_seq_length</img>`` lines, one per frame, and moves
the frames into ``pixel_values`` (one tile a frame, squashed to the tower's square
input). The model sees frames as images: there is no ``pixel_values_videos``.

Chat format (the InternVL3-hf template: ChatML, media in content order, no default
system turn)::

    <|im_start|>user\\n<video>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>\\n
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from timewarp.models.video_chat import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    ChatVideoFamily,
    build_and_save,
    chatml_template,
    make_tiny_chatml_tokenizer,
    token_ids,
)

__all__ = ["CHAT_TEMPLATE", "FAMILY", "family", "InternVLFamily"]

#: ChatML; an image renders as <IMG_CONTEXT>, a video as <video>, each on its own line.
CHAT_TEMPLATE: Final = chatml_template("<IMG_CONTEXT>", "<video>")

#: Tiny tower: 56 px tiles, 14 px patches -> 4x4 grid, pixel-shuffled to 2x2 = 4 tokens a frame.
TINY_IMAGE_SIZE: Final = 56
TINY_PATCH_SIZE: Final = 14
DOWNSAMPLE_RATIO: Final = 0.5


class InternVLFamily(ChatVideoFamily):
    name: str = "internvl"
    model_types: tuple[str, ...] = ("internvl",)
    vision_keys: tuple[str, ...] = ("pixel_values",)
    language_model_module: str = "language_model"
    vision_tower_module: str = "vision_tower"
    projector_modules: tuple[str, ...] = ("multi_modal_projector",)
    unused_modules: tuple[str, ...] = ()

    def render_prompt(self, processor: Any, question: str) -> str:
        return f"<|im_start|>user\n{processor.video_token}\n{question}<|im_end|>\n<|im_start|>assistant\n"

    def render_completion(self, processor: Any, answer: str) -> str:
        return f"{answer}<|im_end|>\n"

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        from transformers import (
            GotOcr2ImageProcessor,
            InternVLConfig,
            InternVLForConditionalGeneration,
            InternVLProcessor,
            InternVLVideoProcessor,
            InternVLVisionConfig,
            Qwen2Config,
        )

        side = TINY_IMAGE_SIZE
        tokenizer = make_tiny_chatml_tokenizer(
            CHAT_TEMPLATE,
            # The attribute names InternVLProcessor reads (as in InternVL3-hf's tokenizer_config).
            {
                "start_image_token": "<img>",
                "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>",
                "video_token": "<video>",
            },
        )
        image_seq_length = int((side // TINY_PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)
        processor = InternVLProcessor(
            image_processor=GotOcr2ImageProcessor(
                size={"height": side, "width": side}, crop_to_patches=True, max_patches=4
            ),
            tokenizer=tokenizer,
            # Explicit size: frames become one tower-sized tile each, never upscaled to 448.
            video_processor=InternVLVideoProcessor(size={"height": side, "width": side}),
            image_seq_length=image_seq_length,
            chat_template=CHAT_TEMPLATE,
        )
        config = InternVLConfig(
            vision_config=InternVLVisionConfig(**TINY_VISION_SIZES, image_size=side, patch_size=TINY_PATCH_SIZE),
            text_config=Qwen2Config(
                vocab_size=len(tokenizer), tie_word_embeddings=True, **TINY_TEXT_SIZES, **token_ids(tokenizer)
            ),
            image_token_id=processor.image_token_id,
            image_seq_length=image_seq_length,
            downsample_ratio=DOWNSAMPLE_RATIO,
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
            tie_word_embeddings=True,
        )
        return build_and_save(InternVLForConditionalGeneration, config, processor, out_dir, seed=seed)


FAMILY: Final = InternVLFamily()
#: Alias: the registry looks up a module attribute named ``family``.
family: Final = FAMILY
