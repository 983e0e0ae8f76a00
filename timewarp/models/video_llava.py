"""Video-LLaVA family adapter (transformers ``video_llava``).

Covers ``LanguageBind/Video-LLaVA-7B-hf``, the closest transformers-native relative of
LLaVA-Hound-SFT (same LLaVA-1.5 recipe, Vicuna-7B, 8 frames a video). A LanguageBind
(CLIP ViT-L/14) video tower encodes every frame to ``(224/14)**2 + 1 = 257`` tokens
(CLS kept), so the processor expands one ``<video>`` token into ``frames * 257`` tokens;
frames are resized (shortest edge) and center-cropped to the tower's input size.
The released model was trained on exactly 8 frames a video: sample 8 frames upstream
(the processor does not resample pre-decoded frames).

Chat format: Vicuna v1 as LLaVA trains it (``conv_llava_v1``), BOS added by the
tokenizer::

    <s>{system} USER: <video>\\n{question} ASSISTANT: {answer}</s>

The hub checkpoint documents the same turn layout without the system sentence; encoding
uses the training layout above and the tiny checkpoint's template renders exactly it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from timewarp.models.tiny_tokenizer import make_tiny_tokenizer
from timewarp.models.video_chat import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    ChatVideoFamily,
    build_and_save,
    token_ids,
)

__all__ = ["CHAT_TEMPLATE", "FAMILY", "family", "VideoLlavaFamily"]

SYSTEM_PROMPT: Final = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: Vicuna v1: "{system} USER: {user} ASSISTANT: {answer}</s>", media first in a user turn.
CHAT_TEMPLATE: Final = (
    '{%- set default_system = "' + SYSTEM_PROMPT + '" %}'
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'] if messages[0]['content'] is string"
    " else messages[0]['content'][0]['text'] %}"
    "{%- set turns = messages[1:] %}"
    "{%- else %}{%- set system = default_system %}{%- set turns = messages %}{%- endif %}"
    "{{- system + ' ' }}"
    "{%- for message in turns %}"
    "{{- 'USER: ' if message['role'] == 'user' else 'ASSISTANT: ' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{- '<image>\\n' }}{%- endfor %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'video') %}{{- '<video>\\n' }}{%- endfor %}"
    "{%- for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{- part['text'] }}{%- endfor %}"
    "{%- endif %}"
    "{{- ' ' if message['role'] == 'user' else '</s>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'ASSISTANT:' }}{%- endif %}"
)

#: Tiny tower: 56 px crops, 14 px patches -> 16 patch tokens + CLS = 17 tokens a frame.
TINY_IMAGE_SIZE: Final = 56
TINY_PATCH_SIZE: Final = 14
#: Frames a video of the released checkpoint.
NUM_FRAMES: Final = 8


class VideoLlavaFamily(ChatVideoFamily):
    name: str = "video_llava"
    model_types: tuple[str, ...] = ("video_llava",)
    vision_keys: tuple[str, ...] = ("pixel_values_videos",)
    language_model_module: str = "language_model"
    vision_tower_module: str = "video_tower"
    projector_modules: tuple[str, ...] = ("multi_modal_projector",)
    unused_modules: tuple[str, ...] = ("image_tower",)  # video input never reaches it

    def render_prompt(self, processor: Any, question: str) -> str:
        return f"{SYSTEM_PROMPT} USER: {processor.video_token}\n{question} ASSISTANT:"

    def render_completion(self, processor: Any, answer: str) -> str:
        return f" {answer}{processor.tokenizer.eos_token}"

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        from transformers import (
            CLIPVisionConfig,
            LlamaConfig,
            VideoLlavaConfig,
            VideoLlavaForConditionalGeneration,
            VideoLlavaImageProcessor,
            VideoLlavaProcessor,
            VideoLlavaVideoProcessor,
        )

        side = TINY_IMAGE_SIZE
        tokenizer = make_tiny_tokenizer(
            chat_template=CHAT_TEMPLATE,
            unk_token="<unk>",
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            add_bos_token=True,  # Llama tokenizers prepend <s>
            named_tokens={"image_token": "<image>", "video_token": "<video>"},
        )
        # Explicit sizes: resize the shortest edge to the tower's input and crop, never to 224.
        sizes: dict[str, Any] = {"size": {"shortest_edge": side}, "crop_size": {"height": side, "width": side}}
        processor = VideoLlavaProcessor(
            image_processor=VideoLlavaImageProcessor(**sizes),
            video_processor=VideoLlavaVideoProcessor(**sizes),
            tokenizer=tokenizer,
            patch_size=TINY_PATCH_SIZE,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,  # CLIP's CLS token
            chat_template=CHAT_TEMPLATE,
        )
        tokens_per_frame = (side // TINY_PATCH_SIZE) ** 2 + 1
        config = VideoLlavaConfig(
            vision_config=CLIPVisionConfig(
                **TINY_VISION_SIZES, image_size=side, patch_size=TINY_PATCH_SIZE, projection_dim=32
            ),
            text_config=LlamaConfig(vocab_size=len(tokenizer), **TINY_TEXT_SIZES, **token_ids(tokenizer)),
            image_token_index=processor.image_token_id,
            video_token_index=processor.video_token_id,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            image_seq_length=tokens_per_frame - 1,
            video_seq_length=NUM_FRAMES * tokens_per_frame,
        )
        return build_and_save(VideoLlavaForConditionalGeneration, config, processor, out_dir, seed=seed)


FAMILY: Final = VideoLlavaFamily()
#: Alias: the registry looks up a module attribute named ``family``.
family: Final = FAMILY
