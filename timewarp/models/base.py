"""The contract every video-LLM family adapter implements.

A family adapter knows what differs between model families: how frames enter the chat
template and the processor, which tensors the forward pass needs, which submodules training
freezes, adapts with LoRA or trains in full, and how to build a tiny random-weight
checkpoint of the family offline. Training and evaluation code only talk to
:class:`VideoLLMFamily`, and read its declarations directly: a family must state every one
(an empty tuple where it has none), so a new family cannot silently get, say, LoRA on its
vision tower because it forgot to name its language model.

A new family: subclass :class:`VideoLLMFamily` (or
:class:`~timewarp.models.video_chat.ChatVideoFamily` for models that take a video as one
placeholder token) in one module, and add one line to
:data:`timewarp.models.registry.FAMILY_MODULES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoLLMFamily", "VideoSample"]


@dataclass(frozen=True)
class VideoSample:
    """One example: the frames shown, the user's question and (for training or scoring)
    the assistant's answer."""

    frames: np.ndarray  # (T, H, W, 3) uint8, in the order the model is shown them
    prompt: str
    completion: str | None = None


class VideoLLMFamily(ABC):
    """A model family's adapter. The declarations below are abstract properties: a subclass
    states each as a class attribute (or a property); one left out makes the class abstract,
    and creating an instance fails naming what is missing."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The family's registry name, e.g. ``"qwen2_vl"``."""

    @property
    @abstractmethod
    def model_types(self) -> tuple[str, ...]:
        """transformers ``config.model_type`` values the family serves."""

    @property
    @abstractmethod
    def vision_keys(self) -> tuple[str, ...]:
        """Processor outputs the forward pass needs besides the text tensors."""

    @property
    @abstractmethod
    def language_model_module(self) -> str:
        """Name (last path component) of the submodule holding the language model: LoRA
        targets are restricted to it, so same-named projections elsewhere stay frozen."""

    @property
    @abstractmethod
    def vision_tower_module(self) -> str:
        """Name of the vision encoder's submodule, frozen in full fine-tuning unless the
        recipe trains it (its projector parts excepted)."""

    @property
    @abstractmethod
    def projector_modules(self) -> tuple[str, ...]:
        """Names of the multimodal projector's modules (those a model lacks are skipped):
        trained in full, with their own learning rate when the recipe sets one."""

    @property
    @abstractmethod
    def unused_modules(self) -> tuple[str, ...]:
        """Names of towers the family's video input never reaches (frozen: no gradients,
        no optimizer state); ``()`` when there are none."""

    def __new__(cls, *args: Any, **kwargs: Any) -> VideoLLMFamily:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(
                f"{cls.__name__} does not implement the VideoLLMFamily contract: it lacks {missing}; "
                "declare each in the class (see timewarp.models.base.VideoLLMFamily)"
            )
        return super().__new__(cls)

    def load(
        self,
        path: str,
        *,
        dtype: Any = "auto",
        device_map: Any = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> tuple[Any, Any]:
        """(model, processor) from a hub id or a local folder (read offline) via transformers'
        Auto classes; a checkpoint of a model type the family does not serve is refused."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        hub_kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
        if Path(path).is_dir():
            hub_kwargs["local_files_only"] = True
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=device_map, **hub_kwargs)
        if model.config.model_type not in self.model_types:
            raise ValueError(
                f"{path} is a {model.config.model_type!r} checkpoint; the {self.name} family serves {self.model_types}"
            )
        processor = AutoProcessor.from_pretrained(path, **hub_kwargs)
        return model, processor

    @abstractmethod
    def encode(self, processor: Any, samples: list[VideoSample]) -> dict[str, Any]:
        """A padded batch: ``input_ids``, ``attention_mask``, ``completion_mask`` (1 on the
        answer's tokens, 0 elsewhere; all 0 when ``completion`` is None) and the family's
        vision tensors, rows in the order of ``samples``."""

    @abstractmethod
    def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
        """Write a tiny random-weight checkpoint (model, tokenizer with the family's special
        tokens and chat template, the family's real processor) that ``load`` reads exactly
        like a hub checkpoint. Offline, deterministic for a seed."""
