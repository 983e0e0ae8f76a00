"""Crash-safe checkpoints for the DPO and SFT trainers.

A ``checkpoint-N`` folder counts only once the Trainer has written all of it: then
:class:`ResumableCheckpointsMixin` adds a completion marker (:data:`COMPLETE_MARKER`: the
size of every file, and the run it belongs to), and only after that may the Trainer's
rotation (``save_total_limit``) delete older checkpoints. :func:`last_complete_checkpoint`
walks the checkpoints newest first, skips (with a warning) any that was killed mid-save,
ran out of disk or is damaged, and refuses a checkpoint of another run (base model, family
or recipe). Resuming a full model loads its weights through transformers' own loading, so
the checkpoint's key names are converted to the model's, and any key left over is an error.

This module must not import zenml.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from timewarp.training.config import TrainingRecipe

__all__ = [
    "COMPLETE_MARKER",
    "ResumableCheckpointsMixin",
    "checkpoint_problem",
    "last_complete_checkpoint",
    "load_full_weights",
    "mark_complete",
    "run_fingerprint",
    "weights_digest",
]

logger = logging.getLogger(__name__)

#: Written into ``checkpoint-N`` after everything else: the folder is whole.
COMPLETE_MARKER = "timewarp_checkpoint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: Recipe fields that change what is kept or logged, not the weights a run trains; a run
#: may resume with other values (e.g. a lower save_total_limit after running out of disk).
_BOOKKEEPING = frozenset({"save_total_limit", "logging_steps", "dataloader_num_workers"})
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


# -- which run a checkpoint belongs to -------------------------------------------------------


def _is_weights_file(name: str) -> bool:
    return name.endswith(".safetensors") or (name.startswith("pytorch_model") and name.endswith(".bin"))


def weights_digest(model_path: str | Path) -> str | None:
    """SHA-256 of a local model folder's weight files (None for a hub id or a folder without
    any). It names the base model by content, so the same model read from another folder (an
    artifact store copies it to a fresh temporary folder per process) is still the same base.
    Reads every weight once per run (a 7B model's ~15 GB: tens of seconds, small beside training)."""
    folder = Path(model_path)
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_weights_file(p.name)) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 23):
                digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(model_path: str | Path, family: str, recipe: TrainingRecipe) -> dict[str, Any]:
    """What a run's checkpoints are recorded with: base model (path or hub id, and the
    digest of its weights), family and recipe."""
    return {
        "base_model": str(model_path),
        "base_weights": weights_digest(model_path),
        "family": family,
        "recipe": json.loads(json.dumps(recipe.to_dict(), sort_keys=True, default=str)),
    }


def _base(run: dict[str, Any]) -> str | None:
    return run.get("base_weights") or run.get("base_model")


def _describe_base(run: dict[str, Any]) -> str:
    weights, name = run.get("base_weights"), run.get("base_model", "(not recorded)")
    return f"{name} (weights sha256 {weights[:12]})" if weights else str(name)


def _value(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "(not recorded)"


def _differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, recorded value, wanted value) for each way the two runs differ."""
    found = []
    if _base(recorded) != _base(wanted):
        found.append(("base model", _describe_base(recorded), _describe_base(wanted)))
    if recorded.get("family") != wanted.get("family"):
        found.append(("family", _value(recorded, "family"), _value(wanted, "family")))
    old, new = recorded.get("recipe") or {}, wanted.get("recipe") or {}
    for key in sorted((set(old) | set(new)) - _BOOKKEEPING):
        if old.get(key) != new.get(key):
            found.append((key, _value(old, key), _value(new, key)))
    return found


def _check_same_run(folder: Path, marker: dict[str, Any], run: dict[str, Any]) -> None:
    differences = _differences(marker.get("run") or {}, run)
    if differences:
        was = ", ".join(f"{what} {old}" for what, old, _ in differences)
        asks = ", ".join(f"{what} {new}" for what, _, new in differences)
        raise ValueError(
            f"{folder} belongs to another training run: it was trained with {was}, but this run asks for "
            f"{asks}. Choose another output folder (checkpoint_root in the pipeline) or delete "
            f"{folder.parent} to start over."
        )


# -- completeness ----------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def mark_complete(folder: str | Path, run: dict[str, Any] | None, step: int) -> Path:
    """Record ``folder`` as a whole checkpoint: its files (flushed to disk first) and their
    sizes, and the run it belongs to; the marker appears atomically (temp name, then
    ``os.replace``)."""
    folder = Path(folder)
    files = {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(COMPLETE_MARKER)
    }
    for name in files:
        _fsync(folder / name)
    temporary = folder / f"{COMPLETE_MARKER}.tmp"
    temporary.write_text(json.dumps({"step": step, "files": files, "run": run}, indent=1))
    _fsync(temporary)
    os.replace(temporary, folder / COMPLETE_MARKER)
    _fsync(folder)
    return folder / COMPLETE_MARKER


def _safetensors_problem(path: Path, size: int) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 <= length <= size - 8:
            return f"{path.name} has no valid safetensors header"
        try:
            header = json.loads(handle.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            return f"{path.name} has a damaged safetensors header"
    if 8 + length + end != size:
        return f"{path.name} holds {size} bytes but its header describes {8 + length + end}"
    return None


def _file_problem(path: Path, size: int) -> str | None:
    """Why one recorded file is not as the marker says (None: it looks whole)."""
    if not path.is_file():
        return f"{path.name} is missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{path.name} has {actual} bytes, {size} when saved (truncated or rewritten)"
    if path.suffix == ".safetensors":
        return _safetensors_problem(path, size)
    if path.suffix in _TORCH_SUFFIXES and not zipfile.is_zipfile(path):
        return f"{path.name} is not a complete torch file"
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            return f"{path.name} is not valid JSON"
    return None


def _read_marker(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return None, f"no {COMPLETE_MARKER} (the save did not finish: killed, out of disk, or an older version)"
    try:
        content = json.loads(marker.read_text())
        files = content["files"]
        if not isinstance(files, dict):
            raise TypeError("files is no mapping")
    except (ValueError, TypeError, KeyError) as error:
        return None, f"{COMPLETE_MARKER} is unreadable ({error})"
    return content, None


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be resumed from (None: it is complete). Cheap: file sizes and
    the headers of safetensors, torch and JSON files, not a checksum of the contents."""
    folder = Path(folder)
    marker, problem = _read_marker(folder)
    if marker is None:
        return problem
    for name, size in marker["files"].items():
        problem = _file_problem(folder / name, int(size))
        if problem:
            return problem
    return None


def _checkpoints_newest_first(output_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def last_complete_checkpoint(output_dir: str | Path, run: dict[str, Any] | None = None) -> str | None:
    """The newest complete ``checkpoint-N`` under ``output_dir`` (None if there is none).
    Incomplete or damaged ones are skipped with a warning naming the folder and why. With
    ``run`` (:func:`run_fingerprint`), a checkpoint of another run raises ``ValueError``."""
    path = Path(output_dir)
    if not path.is_dir():
        return None
    for folder in _checkpoints_newest_first(path):
        problem = checkpoint_problem(folder)
        if problem:
            logger.warning("skipping checkpoint %s: %s", folder, problem)
            continue
        if run is not None:
            marker, _ = _read_marker(folder)
            _check_same_run(folder, marker or {}, run)
        return str(folder)
    return None


# -- loading full weights --------------------------------------------------------------------


def load_full_weights(model: Any, checkpoint: str | Path) -> None:
    """Copy a full-model checkpoint into ``model`` in place (parameters, devices and
    ``requires_grad`` stay). transformers saves some models under other key names than
    their modules have (Qwen2-VL: ``model.layers.*`` for ``model.language_model.layers.*``);
    ``from_pretrained`` converts them back. A missing, unexpected or misshapen key raises."""
    loaded, info = type(model).from_pretrained(str(checkpoint), dtype=model.dtype, output_loading_info=True)
    wrong = {kind: sorted(map(str, info[kind])) for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    wrong = {kind: keys for kind, keys in wrong.items() if keys}
    if wrong:
        raise RuntimeError(
            f"{checkpoint} does not hold this model's weights ({type(model).__name__}): {wrong}. "
            "Resume from a checkpoint of the same model, or train without resuming."
        )
    model.load_state_dict(loaded.state_dict(), strict=True)


class ResumableCheckpointsMixin:
    """Trainer mixin: marks each checkpoint complete once saved (and only then lets older
    ones rotate out), and resumes full models (and loads the best one at the end of an
    early-stopped run) through :func:`load_full_weights`. Set
    ``run_fingerprint`` (:func:`run_fingerprint`) before training."""

    run_fingerprint: dict[str, Any] | None = None

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        args: Any = self.args  # type: ignore[attr-defined]
        run_dir = self._get_output_dir(trial=trial)  # type: ignore[attr-defined]
        step = self.state.global_step  # type: ignore[attr-defined]
        folder = Path(run_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}"
        if args.should_save and folder.exists():  # left by an interrupted attempt: no stale files
            (folder / COMPLETE_MARKER).unlink(missing_ok=True)
            shutil.rmtree(folder)
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        limit, args.save_total_limit = args.save_total_limit, None  # rotate below, once marked
        try:
            super()._save_checkpoint(model, trial)  # type: ignore[misc]
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise OSError(
                errno.ENOSPC,
                f"no space left on the device while saving {folder}: it stays incomplete and is skipped on "
                "resume. Free space (or lower save_total_limit) and run again to resume from the last "
                "complete checkpoint",
            ) from error
        finally:
            args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # type: ignore[attr-defined]
        if args.should_save:
            mark_complete(folder, self.run_fingerprint, step)
            best = self.state.best_model_checkpoint  # type: ignore[attr-defined]
            rotate_checkpoints(output_dir=run_dir, save_total_limit=limit, best_model_checkpoint=best, use_mtime=True)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from transformers import PreTrainedModel

        target = self.model if model is None else model  # type: ignore[attr-defined]
        # PEFT adapters, DeepSpeed and FSDP checkpoints load through the Trainer's own paths.
        special = self.is_deepspeed_enabled or self.is_fsdp_enabled  # type: ignore[attr-defined]
        if special or not isinstance(target, PreTrainedModel):
            super()._load_from_checkpoint(resume_from_checkpoint, model)  # type: ignore[misc]
            return
        logger.info("loading full weights from %s", resume_from_checkpoint)
        load_full_weights(target, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        """``load_best_model_at_end`` (early stopping): the best checkpoint's full weights
        through :func:`load_full_weights`; the Trainer's own path loads the saved key names
        non-strictly and would silently keep the last epoch's weights."""
        from transformers import PreTrainedModel

        special = self.is_deepspeed_enabled or self.is_fsdp_enabled  # type: ignore[attr-defined]
        if special or not isinstance(self.model, PreTrainedModel):  # type: ignore[attr-defined]
            super()._load_best_model()  # type: ignore[misc]
            return
        best = self.state.best_model_checkpoint  # type: ignore[attr-defined]
        logger.info("loading the best checkpoint's full weights from %s", best)
        load_full_weights(self.model, best)  # type: ignore[attr-defined]
