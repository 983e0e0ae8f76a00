"""Which family adapter serves a checkpoint.

Family modules register themselves by calling :func:`register` when imported. The registry
imports the modules listed in :data:`FAMILY_MODULES` lazily, on the first lookup, so a
family whose module is missing (or cannot be imported, e.g. its transformers classes are
absent) is simply not registered; the others keep working.

This module must not import zenml.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Final

from timewarp.models.base import VideoLLMFamily

__all__ = ["FAMILIES", "FAMILY_MODULES", "family_by_name", "family_for", "register"]

logger = logging.getLogger(__name__)

#: family name -> module that registers it. Add a line per new family; the module must
#: call ``register(<family instance>)`` at import time (or expose a module attribute
#: ``family``, registered for it).
FAMILY_MODULES: Final[dict[str, str]] = {
    "qwen2_vl": "timewarp.models.qwen2_vl",
    "llava_onevision": "timewarp.models.llava_onevision",
    "video_llava": "timewarp.models.video_llava",
    "internvl": "timewarp.models.internvl",
    "video_llama_3": "timewarp.models.video_llama_3",
}

#: Registered families by name (filled by :func:`register`).
FAMILIES: dict[str, VideoLLMFamily] = {}

_imported: set[str] = set()


def register(family: VideoLLMFamily) -> VideoLLMFamily:
    """Add ``family`` (replacing one of the same name). Returns it, so it can decorate or
    wrap an instance."""
    for other in FAMILIES.values():
        clash = set(other.model_types) & set(family.model_types)
        if other.name != family.name and clash:
            raise ValueError(f"{family.name!r} and {other.name!r} both claim model types {sorted(clash)}")
    FAMILIES[family.name] = family
    return family


def _load_modules() -> None:
    for name, module_path in FAMILY_MODULES.items():
        if name in _imported:
            continue
        _imported.add(name)
        try:
            module = importlib.import_module(module_path)
        except ImportError as error:
            logger.debug("family %s not available: %s", name, error)
            continue
        instance = getattr(module, "family", None)
        if name not in FAMILIES and instance is not None:
            register(instance)


def family_by_name(name: str) -> VideoLLMFamily:
    _load_modules()
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"no video-LLM family {name!r}; registered: {sorted(FAMILIES)}") from None


def family_for(
    path_or_id: str | Path, *, revision: str | None = None, trust_remote_code: bool = False
) -> VideoLLMFamily:
    """The family serving the checkpoint's ``config.model_type`` (read with AutoConfig;
    offline when ``path_or_id`` is a local folder)."""
    from transformers import AutoConfig

    _load_modules()
    local = Path(path_or_id).is_dir()
    config = AutoConfig.from_pretrained(
        str(path_or_id), revision=revision, trust_remote_code=trust_remote_code, local_files_only=local
    )
    for family in FAMILIES.values():
        if config.model_type in family.model_types:
            return family
    raise ValueError(
        f"no registered family serves model type {config.model_type!r} ({path_or_id}); "
        f"registered: { {name: f.model_types for name, f in FAMILIES.items()} }"
    )
