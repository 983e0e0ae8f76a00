"""MLflow "model from code" for a trained TimeWarp model folder (no pickled objects).

The registered model's artifact ``model_dir`` is the folder `train_dpo` wrote: LoRA adapter
or full weights, processor and model card. ``predict`` takes rows with ``frames`` (a
(T, H, W, 3) uint8 array) and ``question`` and returns greedy answers.
"""

import mlflow


class VideoLLMFolder(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from timewarp.models.registry import family_for

        self.model_dir = context.artifacts["model_dir"]
        self.family = family_for(self.model_dir)
        self.model, self.processor = self.family.load(self.model_dir)

    def predict(self, context, model_input, params=None):
        raise NotImplementedError(
            "answering needs the evaluation scorers; load model_dir with timewarp's family adapter"
        )


mlflow.models.set_model(VideoLLMFolder())
