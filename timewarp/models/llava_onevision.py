"""LLaVA-OneVision / LLaVA-Video family adapter (transformers ``llava_onevision``).

Covers ``llava-hf/llava-onevision-qwen2-*-hf`` and ``llava-hf/LLaVA-Video-*-hf``
checkpoints: a SigLIP vision tower, a 2-layer MLP projector and a Qwen2 language model.
A video is one ``<video>`` token in the text; the processor expands it to
``frames * ceil(side/2)**2 + 1`` tokens (each frame's patch grid is 2x2-pooled, plus
one newline embedding), and the frames are squashed to the tower's square input size.

Chat format: the one LLaVA-OneVision was trained with (LLaVA's ``qwen_1_5``
conversation, ChatML with Qwen's default system turn)::

    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n<video>\\n{question}<|im_end|>\\n<|im_start|>assistant\\n{answer}<|im_end|>\\n

The hub's ``chat_template.json`` approximates it (``'<|im_start|>' + role + ' '`` and
no system turn); encoding uses the training format above, and the tiny checkpoint's
template renders exactly that format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from timewarp.models.video_chat import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    ChatVideoFamily,
    build_and_save,
    make_tiny_chatml_tokenizer,
    token_ids,
)

__all__ = ["CHAT_TEMPLATE", "FAMILY", "family", "LlavaOnevisionFamily"]

SYSTEM_PROMPT: Final = "You are a helpful assistant."

#: ChatML in the qwen_1_5 layout; images/videos go first in a turn, each on its own line.
CHAT_TEMPLATE: Final = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{- '<image>\\n' }}{%- endfor %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{- '<video>\\n' }}{%- endfor %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{- part['text'] }}{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

#: Tiny tower: 56 px frames, 14 px patches -> a 4x4 grid, pooled to 2x2 = 4 tokens a frame.
TINY_IMAGE_SIZE: Final = 56
TINY_PATCH_SIZE: Final = 14


class LlavaOnevisionFamily(ChatVideoFamily):
    name: str = "llava_onevision"
    model_types: tuple[str, ...] = ("llava_onevision",)
    vision_keys: tuple[str, ...] = ("pixel_values_videos",)
    language_model_module: str = "language_model"
    vision_tower_module: str = "vision_tower"
    projector_modules: tuple[str, ...] = ("multi_modal_projector",)
    unused_modules: tuple[str, ...] = ()

    def render_prompt(self, processor: Any, question: str) -> str:
        video = processor.video_token
        return (
            f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
            f"<|im_start|>user\n{video}\n{question}<|im_end|>\n<|im_start|>assistant\n"
        )

    def render_completion(self, processor: Any, answer: str) -> str:
        return f"{answer}<|im_end|>\n"

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        from transformers import (
            LlavaOnevisionConfig,
            LlavaOnevisionForConditionalGeneration,
            LlavaOnevisionImageProcessor,
            LlavaOnevisionProcessor,
            LlavaOnevisionVideoProcessor,
            Qwen2Config,
            SiglipVisionConfig,
        )

        side = TINY_IMAGE_SIZE
        # anyres tiling for still images, scaled down from the real 384-px grid.
        pinpoints = [[side * h, side * w] for h in (1, 2) for w in (1, 2)]
        tokenizer = make_tiny_chatml_tokenizer(
            CHAT_TEMPLATE,
            {"image_token": "<image>", "video_token": "<video>"},
        )
        processor = LlavaOnevisionProcessor(
            image_processor=LlavaOnevisionImageProcessor(
                size={"height": side, "width": side}, image_grid_pinpoints=pinpoints
            ),
            tokenizer=tokenizer,
            # Explicit size: frames are squashed to the tower's input, never upscaled to 384.
            video_processor=LlavaOnevisionVideoProcessor(size={"height": side, "width": side}),
            num_image_tokens=(side // TINY_PATCH_SIZE) ** 2,
            vision_feature_select_strategy="full",
            vision_aspect_ratio="anyres_max_9",
            chat_template=CHAT_TEMPLATE,
        )
        config = LlavaOnevisionConfig(
            vision_config=SiglipVisionConfig(
                **TINY_VISION_SIZES, image_size=side, patch_size=TINY_PATCH_SIZE, vision_use_head=False
            ),
            text_config=Qwen2Config(
                vocab_size=len(tokenizer), tie_word_embeddings=True, **TINY_TEXT_SIZES, **token_ids(tokenizer)
            ),
            image_token_index=processor.image_token_id,
            video_token_index=processor.video_token_id,
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            image_grid_pinpoints=pinpoints,
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=True,
        )
        return build_and_save(LlavaOnevisionForConditionalGeneration, config, processor, out_dir, seed=seed)


FAMILY: Final = LlavaOnevisionFamily()
#: Alias: the registry looks up a module attribute named ``family``.
family: Final = FAMILY
