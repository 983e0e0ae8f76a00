"""Family adapter for Qwen2-VL, Qwen2.5-VL and Qwen3-VL (native video input).

The three generations share the chat format (ChatML with ``<|vision_start|><|video_pad|>
<|vision_end|>`` for a video), the processor interface and the forward inputs
(``pixel_values_videos``, ``video_grid_thw``, ``mm_token_type_ids``; Qwen2.5-VL adds
``second_per_grid_ts``), so one adapter serves them all. Differences handled here:

- frame size: the video processors' default minimum enlarges small frames many times
  (~30x more patches for 96x64 frames), so every call passes an explicit
  ``size={"shortest_edge", "longest_edge"}`` derived from per-frame pixel bounds. Qwen3-VL
  measures those bounds over the whole clip (frames x height x width), Qwen2/2.5-VL per frame.
- frame sampling: Qwen3-VL's processor re-samples frames at 2 fps by default; the frames we
  pass are already the ones to show, so sampling is switched off.
- timestamps: Qwen2.5-VL (``second_per_grid_ts``) and Qwen3-VL (``<t seconds>`` text) need a
  frame rate; :class:`~timewarp.models.base.VideoSample` carries none, so ``frames_fps`` is
  assumed (qwen-vl-utils' default of 2 fps).

This module must not import zenml.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.registry import register
from timewarp.models.tiny_tokenizer import EOS_TOKEN, PAD_TOKEN, SPECIAL_TOKENS, VIDEO_CORPUS, train_byte_level_bpe

__all__ = [
    "QWEN_VL_CHAT_TEMPLATE",
    "QwenVLFamily",
    "VARIANTS",
    "available_variants",
    "family",
]

VISION_START: Final = "<|vision_start|>"
VISION_END: Final = "<|vision_end|>"
VISION_PAD: Final = "<|vision_pad|>"
IMAGE_PAD: Final = "<|image_pad|>"
VIDEO_PAD: Final = "<|video_pad|>"
VISION_TOKENS: Final = (VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)

#: Qwen2-VL-Instruct's chat template (without tool calls): a default system turn, and for
#: list contents one ``<|vision_start|><|video_pad|><|vision_end|>`` per video entry, which
#: the processor expands to the video's patch tokens.
QWEN_VL_CHAT_TEMPLATE: Final = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}"
    "{{- message['content'] }}"
    "{%- else %}"
    "{%- for content in message['content'] %}"
    "{%- if content['type'] == 'image' or 'image' in content %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content['type'] == 'video' or 'video' in content %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}"
    "{{- content['text'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


@dataclass(frozen=True)
class _Variant:
    model_type: str
    transformers_module: str  # transformers.models.<name>; absent in older releases
    patch_size: int
    # Pixel bounds of the video processor apply to the whole clip (Qwen3-VL) or per frame.
    clip_level_pixels: bool
    needs_fps: bool  # the processor derives timestamps / second_per_grid_ts from an fps


#: Every generation this adapter knows, newest last; :func:`available_variants` filters them
#: by the installed transformers.
VARIANTS: Final[dict[str, _Variant]] = {
    "qwen2_vl": _Variant("qwen2_vl", "qwen2_vl", 14, False, False),
    "qwen2_5_vl": _Variant("qwen2_5_vl", "qwen2_5_vl", 14, False, True),
    "qwen3_vl": _Variant("qwen3_vl", "qwen3_vl", 16, True, True),
}


def available_variants() -> tuple[str, ...]:
    """Variants whose model code ships with the installed transformers."""
    return tuple(
        name
        for name, variant in VARIANTS.items()
        if importlib.util.find_spec(f"transformers.models.{variant.transformers_module}") is not None
    )


class QwenVLFamily(VideoLLMFamily):
    """Qwen2-VL / Qwen2.5-VL / Qwen3-VL behind :class:`~timewarp.models.base.VideoLLMFamily`.

    Args:
        min_frame_pixels: Smallest frame area (pixels) the processor resizes to; frames at
            least this large keep their size (rounded to the patch grid).
        max_frame_pixels: Largest frame area; bigger frames are scaled down.
        frames_fps: Frame rate assumed for the frames of a sample, for the variants whose
            positions or prompts encode time.
    """

    name = "qwen2_vl"
    model_types = tuple(VARIANTS)
    vision_keys = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts", "mm_token_type_ids")
    #: Submodule holding the language model: LoRA targets are restricted to it, so the vision
    #: tower's identically named projections (Qwen2.5-VL's MLP) stay frozen.
    language_model_module = "language_model"
    #: Submodule holding the vision encoder (and the projector, ``merger``).
    vision_tower_module = "visual"
    #: The projector: ``merger``, plus Qwen3-VL's ``deepstack_merger_list`` (absent before).
    projector_modules: tuple[str, ...] = ("merger", "deepstack_merger_list")
    unused_modules: tuple[str, ...] = ()

    def __init__(
        self, *, min_frame_pixels: int = 56 * 56, max_frame_pixels: int = 448 * 448, frames_fps: float = 2.0
    ) -> None:
        if not 0 < min_frame_pixels <= max_frame_pixels:
            raise ValueError("need 0 < min_frame_pixels <= max_frame_pixels")
        self.min_frame_pixels = min_frame_pixels
        self.max_frame_pixels = max_frame_pixels
        self.frames_fps = frames_fps

    # -- model type helpers ---------------------------------------------------------------

    @staticmethod
    def variant_of(processor_or_model: Any) -> _Variant:
        """The variant of a loaded model (``config.model_type``) or processor (class name)."""
        config = getattr(processor_or_model, "config", None)
        if config is not None:
            return VARIANTS[config.model_type]
        class_name = type(processor_or_model).__name__
        for prefix, key in (("Qwen3VL", "qwen3_vl"), ("Qwen2_5_VL", "qwen2_5_vl"), ("Qwen2VL", "qwen2_vl")):
            if class_name.startswith(prefix):
                return VARIANTS[key]
        raise ValueError(f"{class_name} is not a Qwen2-VL / Qwen2.5-VL / Qwen3-VL processor")

    # -- encoding ---------------------------------------------------------------------------

    def _video_size(self, variant: _Variant, frame_count: int) -> dict[str, int]:
        if not variant.clip_level_pixels:
            return {"shortest_edge": self.min_frame_pixels, "longest_edge": self.max_frame_pixels}
        frames = frame_count + frame_count % 2  # the processor pads to its temporal patch of 2
        return {"shortest_edge": self.min_frame_pixels * frames, "longest_edge": self.max_frame_pixels * frames}

    def _prompt_and_completion(self, processor: Any, sample: VideoSample) -> tuple[str, str]:
        user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": sample.prompt}]}
        prompt = processor.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
        if sample.completion is None:
            return prompt, ""
        assistant = {"role": "assistant", "content": [{"type": "text", "text": sample.completion}]}
        full = processor.apply_chat_template([user, assistant], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with an answer appended")
        # The rest of the assistant turn: answer, <|im_end|> and the newline, as TRL trains it.
        return prompt, full[len(prompt) :]

    def encode_one(self, processor: Any, sample: VideoSample) -> dict[str, Any]:
        """One unpadded row: 1-D ``input_ids``/``attention_mask``/``completion_mask``/
        ``mm_token_type_ids`` and the video tensors of its single video."""
        import torch

        variant = self.variant_of(processor)
        frames = np.ascontiguousarray(sample.frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
        prompt, completion = self._prompt_and_completion(processor, sample)
        video_kwargs: dict[str, Any] = {
            "size": self._video_size(variant, len(frames)),
            "do_sample_frames": False,  # the frames given are the frames to show
            "cap_pixels_per_frame": False,  # explicit size above is the whole budget
        }
        if variant.needs_fps:
            video_kwargs["video_metadata"] = [
                {"total_num_frames": len(frames), "fps": self.frames_fps, "frames_indices": list(range(len(frames)))}
            ]
        processed = processor(
            text=[prompt],
            videos=[frames],
            return_tensors="pt",
            add_special_tokens=False,
            videos_kwargs=video_kwargs,
        )
        prompt_ids = processed["input_ids"][0]
        completion_ids = torch.tensor(
            processor.tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else [],
            dtype=prompt_ids.dtype,
        )
        row: dict[str, Any] = {
            "input_ids": torch.cat([prompt_ids, completion_ids]),
            "completion_mask": torch.cat(
                [torch.zeros(len(prompt_ids), dtype=torch.long), torch.ones(len(completion_ids), dtype=torch.long)]
            ),
        }
        row["attention_mask"] = torch.ones_like(row["input_ids"])
        if "mm_token_type_ids" in processed:
            row["mm_token_type_ids"] = torch.cat(
                [processed["mm_token_type_ids"][0], torch.zeros(len(completion_ids), dtype=torch.long)]
            )
        row["pixel_values_videos"] = processed["pixel_values_videos"]
        row["video_grid_thw"] = processed["video_grid_thw"]
        if "second_per_grid_ts" in processed:
            row["second_per_grid_ts"] = torch.as_tensor(processed["second_per_grid_ts"], dtype=torch.float32)
        return row

    def encode(self, processor: Any, samples: list[VideoSample]) -> dict[str, Any]:
        """Right-padded batch (pad token id, attention 0, completion 0), video tensors
        concatenated in row order."""
        import torch
        from torch.nn.utils.rnn import pad_sequence

        if not samples:
            raise ValueError("no samples to encode")
        rows = [self.encode_one(processor, sample) for sample in samples]
        pad_id = processor.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = processor.tokenizer.eos_token_id
        batch: dict[str, Any] = {
            "input_ids": pad_sequence([r["input_ids"] for r in rows], batch_first=True, padding_value=pad_id),
        }
        for key in ("attention_mask", "completion_mask", "mm_token_type_ids"):
            if key in rows[0]:
                batch[key] = pad_sequence([r[key] for r in rows], batch_first=True, padding_value=0)
        for key in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
            if key in rows[0]:
                batch[key] = torch.cat([r[key] for r in rows], dim=0)
        return batch

    # -- tiny checkpoints -------------------------------------------------------------------

    def make_tiny(self, out_dir: str | Path, *, seed: int = 0, variant: str = "qwen2_vl") -> Path:
        """A tiny random-weight checkpoint of ``variant`` (see :func:`available_variants`):
        a few hundred thousand parameters, the real processor classes, frame bounds that keep
        small test frames at their size. Offline and deterministic for a seed."""
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, PreTrainedTokenizerFast

        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {tuple(VARIANTS)}")
        if variant not in available_variants():
            raise ValueError(f"transformers has no {variant!r} model code installed")
        spec = VARIANTS[variant]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)

        from timewarp.data.sample import caption_vocabulary

        # The generated sample's words (colours, "scene") become single tokens, so a tiny
        # model answers a colour with one token.
        tokenizer_object = train_byte_level_bpe(
            SPECIAL_TOKENS, vocab_size=1024, extra_corpus=(*VIDEO_CORPUS, *caption_vocabulary() * 8)
        )
        tokenizer_object.add_special_tokens(list(VISION_TOKENS))
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=tokenizer_object,
            eos_token=EOS_TOKEN,
            pad_token=PAD_TOKEN,
            unk_token=None,
            bos_token=None,
            chat_template=QWEN_VL_CHAT_TEMPLATE,
            model_max_length=4096,
            clean_up_tokenization_spaces=False,
            padding_side="right",
        )
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (*VISION_TOKENS, EOS_TOKEN, PAD_TOKEN)}

        config = AutoConfig.for_model(
            spec.model_type,
            text_config=self._tiny_text_config(spec, len(tokenizer), ids),
            vision_config=self._tiny_vision_config(spec),
            image_token_id=ids[IMAGE_PAD],
            video_token_id=ids[VIDEO_PAD],
            vision_start_token_id=ids[VISION_START],
            vision_end_token_id=ids[VISION_END],
            tie_word_embeddings=True,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForImageTextToText.from_config(config).eval()
        model.generation_config.eos_token_id = [ids[EOS_TOKEN], ids[PAD_TOKEN]]
        model.generation_config.pad_token_id = ids[PAD_TOKEN]
        model.generation_config.bos_token_id = None
        model.save_pretrained(out)

        # The real processor classes, built from their defaults plus our frame bounds.
        size = {"shortest_edge": self.min_frame_pixels, "longest_edge": self.max_frame_pixels}
        if spec.clip_level_pixels:  # bounds over a clip of (up to) 8 frames
            size = {"shortest_edge": 2 * self.min_frame_pixels, "longest_edge": 8 * self.max_frame_pixels}
        processor_class, image_processor_class, video_processor_class = self._processor_classes(spec)
        video_processor = video_processor_class(size=size, do_sample_frames=False)
        image_processor = image_processor_class(size=size, patch_size=spec.patch_size)
        processor = processor_class(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=QWEN_VL_CHAT_TEMPLATE,
        )
        processor.save_pretrained(out)
        return out

    @staticmethod
    def _processor_classes(spec: _Variant) -> tuple[type, type, type]:
        import transformers

        processor_class, video_processor_class = {
            "qwen2_vl": ("Qwen2VLProcessor", "Qwen2VLVideoProcessor"),
            "qwen2_5_vl": ("Qwen2_5_VLProcessor", "Qwen2VLVideoProcessor"),
            "qwen3_vl": ("Qwen3VLProcessor", "Qwen3VLVideoProcessor"),
        }[spec.model_type]
        return (
            getattr(transformers, processor_class),
            transformers.Qwen2VLImageProcessor,
            getattr(transformers, video_processor_class),
        )

    @staticmethod
    def _tiny_text_config(spec: _Variant, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
        # Width 128 (head_dim 32; Qwen3-VL keeps head_dim 16): big enough to learn the
        # embedded default's temporal questions in a minute on a CPU, as 64 is not.
        # mrope_section must sum to head_dim / 2.
        text: dict[str, Any] = {
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "initializer_range": 0.1,
            "pad_token_id": ids[PAD_TOKEN],
            "eos_token_id": ids[EOS_TOKEN],
            "bos_token_id": None,
        }
        if spec.model_type == "qwen3_vl":
            text["head_dim"] = 16
            text["rope_parameters"] = {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            }
        else:
            text["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]}
        return text

    @staticmethod
    def _tiny_vision_config(spec: _Variant) -> dict[str, Any]:
        if spec.model_type == "qwen2_vl":
            return {"depth": 2, "embed_dim": 32, "hidden_size": 128, "mlp_ratio": 2, "num_heads": 2}
        if spec.model_type == "qwen2_5_vl":
            return {
                "depth": 2,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": 128,
                "window_size": 56,
                "fullatt_block_indexes": [1],
            }
        return {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 128,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0],
        }


#: The registered instance (default frame bounds).
family = register(QwenVLFamily())
