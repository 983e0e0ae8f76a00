from typing import Annotated, Any

import mlflow
from zenml import step

from steps.training._checkpoints import run_training_step
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import SFTDataset
from timewarp.models.checkpoint import ModelCheckpoint
from timewarp.tracking.run_log import flatten
from timewarp.training.config import SFTRecipe
from timewarp.training.sft import train_sft as run_sft


@step
def train_sft(
    base_model: ModelCheckpoint,
    sft_pairs: SFTDataset,
    corpus: VideoCorpus,
    recipe: dict[str, Any],
    checkpoint_root: str,
) -> Annotated[ModelCheckpoint, "sft_model"]:
    """Supervised fine-tuning on the SFT pairs (to the validation plateau when the recipe
    asks for early stopping); resumes like ``train_dpo``. The stage's record (validation
    split, best and stopping epoch, threads, determinism, seed) is in the model's metadata
    and card; with the stack's experiment tracker (``with_options(experiment_tracker=)``)
    also in the pipeline run's MLflow run: ``sft_recipe.*`` params and ``sft/*`` metrics."""
    model = run_training_step(
        "SFT", run_sft, base_model, SFTRecipe.from_dict(recipe), recipe, checkpoint_root,
        examples=sft_pairs, corpus=corpus,
    )
    if mlflow.active_run() is not None:
        mlflow.log_params(flatten("sft_recipe.", recipe))
        mlflow.log_metrics({
            f"sft/{key}": float(value) for key, value in model.final_metrics.items()
            if key.startswith(("validation/", "reproducibility/"))
        })
    return model
