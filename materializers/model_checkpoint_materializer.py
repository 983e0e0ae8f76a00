"""Materializer for :class:`ModelCheckpoint`: the model folder (weights or adapter,
processor, model card, training log; not the Trainer's checkpoints and optimizer state,
which only resuming reads, from the local folder) in the artifact store; external hub models are
recorded by id only. Metadata: family, kind, base model, final metrics; view: the model
card and the training curves."""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer
from zenml.utils import io_utils

from materializers._html import page, table
from materializers._records import write_html
from materializers._storage import is_local, upload_folder
from timewarp.models.checkpoint import ModelCheckpoint, is_training_state
from timewarp.plots import training_curves_png

EXTERNAL = "external.json"


class ModelCheckpointMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelCheckpoint,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: ModelCheckpoint) -> None:
        if data.stored:
            data.write_card(data.path)
            upload_folder(data.path, self.uri, exclude=is_training_state)
        else:
            with fileio.open(os.path.join(self.uri, EXTERNAL), "w") as handle:
                handle.write(json.dumps(data.to_dict()))

    def load(self, data_type: type[Any]) -> ModelCheckpoint:
        if fileio.exists(os.path.join(self.uri, EXTERNAL)):
            with fileio.open(os.path.join(self.uri, EXTERNAL), "r") as handle:
                return ModelCheckpoint.from_dict(json.loads(handle.read()))
        folder = self.uri
        if not is_local(self.uri):
            with self.get_temporary_directory(delete_at_exit=False) as local:
                io_utils.copy_dir(self.uri, local)
                folder = local
        checkpoint = ModelCheckpoint.read_card(folder)
        checkpoint.path = folder  # the card recorded the scratch folder it was trained in
        if checkpoint.adapter and checkpoint.parent_artifact:
            # The adapter applies to one of our models: found by its artifact, in any process.
            from zenml.client import Client

            checkpoint.parent = Client().get_artifact_version(checkpoint.parent_artifact).load()
        return checkpoint

    def extract_metadata(self, data: ModelCheckpoint) -> dict[str, Any]:
        metadata: dict[str, Any] = {"family": data.family, "kind": data.kind, "adapter": data.adapter,
                                    "base_model": data.base_model or data.path, "stored": data.stored}
        metadata.update({k: v for k, v in data.final_metrics.items() if isinstance(v, (int, float))})
        return metadata

    def save_visualizations(self, data: ModelCheckpoint) -> dict[str, VisualizationType]:
        body = table(["field", "value"], [(k, v) for k, v in data.describe().items() if k != "final_metrics"])
        if data.history:
            image = base64.b64encode(training_curves_png(data.history)).decode()
            body += f"<h3>Training curves</h3><img src='data:image/png;base64,{image}' style='max-width:100%'>"
        card = Path(data.path) / "README.md"
        if data.stored and card.exists():
            body += f"<h3>Model card</h3><pre>{html.escape(card.read_text())}</pre>"
        return {write_html(self.uri, "model.html", page(f"{data.kind} model ({data.family})", body)): VisualizationType.HTML}
