"""A trained TimeWarp model as a servable MLflow model, logged as "model from code"
(:data:`MODEL_CODE` sets :class:`ServableVideoLLM`; nothing is pickled).

What :func:`log_servable_model` logs (artifact ``model``) is what inference needs and no more:

- full weights, or a LoRA adapter, with the processor and the model card
  (``checkpoint.json``, ``README.md``); never the Trainer's checkpoints, optimizer,
  scheduler, RNG or trainer state (:func:`~timewarp.models.checkpoint.is_training_state`),
  the training log or DPO's reference log-probabilities;
- an adapter of an external base (a hub id or a local folder) as the adapter plus the base's
  id in the model config: loading fetches the base (from the hub, or that folder) and applies
  the adapter with peft;
- an adapter of one of our own models (its ``parent`` in memory) merged into its base, so the
  MLflow model needs no ZenML artifact to load.

The model config (``model_config`` of the MLflow model) holds the family, kind, the scorer
that picks among options, ``frames_per_video`` (the recipe's), the batch size and reply
length, and ``device``/``dtype`` (``auto``: :mod:`timewarp.models.placement` chooses, as
:meth:`~timewarp.models.checkpoint.ModelCheckpoint.load` does); any of them can be
overridden when loading (``mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})``).

Input: a DataFrame with ``video`` (path or URI of an mp4), ``question`` and optionally
``options`` (a list of strings; missing, null or empty for an open question). Output: an
``answer`` column (:mod:`timewarp.evaluation.answering` answers as evaluation scores).
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array

from timewarp.evaluation.answering import QuestionError, VideoQuestion, answer_questions
from timewarp.evaluation.scoring import SCORERS, ScoringConfig
from timewarp.models.checkpoint import CARD, TRAINING_LOG, ModelCheckpoint, is_training_state
from timewarp.data.sample import PALETTE, SampleSpec, make_video

__all__ = ["MODEL_CODE", "SIGNATURE", "ServableVideoLLM", "input_example", "log_servable_model"]

#: The "model from code" file MLflow stores with the model.
MODEL_CODE: Final = Path(__file__).with_name("mlflow_model.py")
#: The model's artifact: weights (or adapter), processor and model card.
WEIGHTS: Final = "model"
#: Training records in a model folder that inference does not read (the training log, DPO's
#: reference log-probabilities, ``timewarp.training.dpo.REFERENCE_FILE``, not imported: trl).
_TRAINING_RECORDS: Final = frozenset({TRAINING_LOG, "reference_logps.json"})
#: Installed distributions the model needs, pinned to their versions here. Listed rather than
#: inferred: MLflow infers them by loading the model, which for a 7B model takes minutes.
#: The timewarp project itself must be installed where the model is served.
_REQUIREMENTS: Final = (
    "mlflow", "torch", "torchvision", "transformers", "peft", "av", "numpy", "pandas", "fsspec", "pillow",
)

SIGNATURE: Final = ModelSignature(
    inputs=Schema([
        ColSpec(DataType.string, "video"),
        ColSpec(DataType.string, "question"),
        ColSpec(Array(DataType.string), "options", required=False),
    ]),
    outputs=Schema([ColSpec(DataType.string, "answer")]),
)


class _PyfuncWithoutServingCheck:
    """``mlflow.pyfunc`` as the flavor of ``Model.log``, minus the check ``Model.log`` runs
    on an input example: it loads the weights and predicts, minutes and a GPU's memory for a
    7B model (``mlflow.transformers`` skips it for large checkpoints too). The example is
    tested instead. ``pyfunc.save_model`` takes no ``validate_serving_input``, hence this."""

    @staticmethod
    def save_model(*, validate_serving_input: bool, **kwargs: Any) -> None:
        mlflow.pyfunc.save_model(**kwargs)


def input_example() -> pd.DataFrame:
    """Two requests about a generated four-second video (inline, as a ``data:`` URI, so the
    example runs anywhere): one with options, one open."""
    video, annotation = make_video("example", 0, SampleSpec.learnable())
    uri = "data:video/mp4;base64," + base64.b64encode(video).decode()
    asked = annotation["content_metadata"]["qAndA"][0]
    options = [asked["answer"], *[colour for colour in PALETTE if colour != asked["answer"]][:3]]
    return pd.DataFrame({
        "video": [uri, uri],
        "question": [asked["question"], "What happens in the video?"],
        "options": [options, None],
    })


def _link_or_copy(source: str, target: str) -> None:
    # A hard link costs no space or time for weights on the same filesystem.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _copy_for_inference(source: Path, target: Path) -> None:
    """Link or copy ``source``'s model files into ``target``; not the card, written anew
    (writing into a linked file would change the source)."""
    target.mkdir()
    for entry in sorted(source.iterdir()):
        if is_training_state(entry.name) or entry.name in _TRAINING_RECORDS or entry.name == CARD:
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target / entry.name))


def _stage(checkpoint: ModelCheckpoint, folder: Path) -> tuple[bool, str]:
    """Write into ``folder`` what the served model loads; (whether it is an adapter, the
    external base it applies to or "")."""
    if checkpoint.adapter and checkpoint.parent is not None:
        checkpoint.save_merged(folder)
        readme = Path(checkpoint.path) / "README.md"
        if readme.is_file():
            shutil.copy2(readme, folder / readme.name)
        return False, ""
    _copy_for_inference(Path(checkpoint.path), folder)
    if not checkpoint.adapter:
        return False, ""
    base = checkpoint.base_model or ""
    if not base or base.startswith("zenml:"):
        raise ValueError(
            f"the {checkpoint.kind} adapter at {checkpoint.path} applies to {base or 'an unrecorded model'}, "
            "which is not in memory: load the adapter through its ZenML artifact (`artifact.load()`), which "
            "resolves its parent model, and log that"
        )
    return True, base


def _requirements() -> list[str]:
    pinned = []
    for name in _REQUIREMENTS:
        try:
            pinned.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue  # not installed here, so not needed by the model logged from here
    return pinned


def log_servable_model(checkpoint: ModelCheckpoint, *, scorer: str, artifact_name: str = "model") -> str:
    """Log ``checkpoint`` (a trained model: its ``path`` is the training output folder) into
    the active MLflow run as a servable model that answers with ``scorer`` (one of
    :data:`~timewarp.evaluation.scoring.SCORERS`); return the model URI. Loads no model,
    except to merge an adapter into its in-memory parent."""
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {SCORERS}, got {scorer!r}")
    if not checkpoint.stored:
        raise ValueError(
            f"{checkpoint.path} is an external model recorded by id, not a folder of weights: "
            "log a trained (or prepared) model"
        )
    if mlflow.active_run() is None:
        raise RuntimeError("log_servable_model logs into the active MLflow run: start one (mlflow.start_run())")
    config = {
        "family": checkpoint.family,
        "kind": checkpoint.kind,
        "scorer": scorer,
        "frames_per_video": int(checkpoint.recipe.get("frames_per_video", ScoringConfig.frames_per_video)),
        "batch_size": ScoringConfig.batch_size,
        "max_new_tokens": ScoringConfig.max_new_tokens,
        "bf16": bool(checkpoint.recipe.get("bf16", True)),
        "device": "auto",
        "dtype": "auto",
    }
    with tempfile.TemporaryDirectory(prefix="timewarp-servable-") as staging:
        folder = Path(staging) / WEIGHTS
        adapter, base = _stage(checkpoint, folder)
        checkpoint.write_card(folder)
        info = Model.log(
            artifact_path=None,  # deprecated in favour of name, yet positional
            name=artifact_name,
            flavor=_PyfuncWithoutServingCheck,
            flavor_name="pyfunc.ModelFromCode",
            validate_serving_input=False,
            python_model=str(MODEL_CODE),
            artifacts={WEIGHTS: str(folder)},
            model_config={**config, "serves_adapter": adapter, "adapter_base": base},
            signature=SIGNATURE,
            input_example=input_example(),
            pip_requirements=_requirements(),
        )
    return info.model_uri


def _options(label: str, value: Any) -> tuple[str, ...]:
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return ()
    if isinstance(value, str) or np.ndim(value) != 1:
        raise QuestionError(f"{label}: options must be a list of strings, got {type(value).__name__}")
    options = tuple(value)
    if not all(isinstance(option, str) for option in options):
        raise QuestionError(f"{label}: options must be a list of strings, got {list(options)!r}")
    return options


def _text(label: str, row: dict[str, Any], column: str, what: str) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        raise QuestionError(f"{label}: no {column}; give {what}")
    return value


def _questions(frame: pd.DataFrame) -> list[VideoQuestion]:
    questions = []
    for position, row in enumerate(frame.to_dict("records")):
        label = f"row {position}"
        questions.append(VideoQuestion(
            video=_text(label, row, "video", "the path or URI of an mp4"),
            question=_text(label, row, "question", "the text to ask about the video"),
            options=_options(label, row.get("options")),
            label=label,
        ))
    return questions


class ServableVideoLLM(mlflow.pyfunc.PythonModel):
    """Loads the logged weights as evaluation does and answers rows of video questions."""

    def load_context(self, context: Any) -> None:
        config = context.model_config
        checkpoint = ModelCheckpoint(
            path=context.artifacts[WEIGHTS], family=config["family"], kind=config["kind"],
            base_model=config["adapter_base"] or None, adapter=bool(config["serves_adapter"]), recipe={"bf16": config["bf16"]},
        )
        self.model, self.processor, self.family = checkpoint.load(device=config["device"], dtype=config["dtype"])
        self.scorer = config["scorer"]
        self.scoring = ScoringConfig(
            frames_per_video=int(config["frames_per_video"]), batch_size=int(config["batch_size"]),
            max_new_tokens=int(config["max_new_tokens"]),
        )

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            answers = answer_questions(
                self.model, self.processor, self.family, _questions(model_input), scorer=self.scorer,
                config=self.scoring,
            )
        except QuestionError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        return pd.DataFrame({"answer": answers})
