"""MLflow "model from code" of a trained TimeWarp model: the file MLflow stores with the
model and runs to create it (nothing is pickled). The model is
:class:`~timewarp.tracking.servable.ServableVideoLLM`; see :mod:`timewarp.tracking.servable`.
"""

import mlflow

from timewarp.tracking.servable import ServableVideoLLM

mlflow.models.set_model(ServableVideoLLM())
