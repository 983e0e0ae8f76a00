"""lmms-eval's registration record of the ``timewarp`` model: the payload of the
``lmms_eval.models`` entry point, so ``lmms-eval --model timewarp`` finds the adapter
without importing it first (importing only this module, never torch).

This module must not import zenml.
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

#: The name lmms-eval knows the adapter by (``--model timewarp``).
MODEL_NAME = "timewarp"

MANIFEST = ModelManifest(model_id=MODEL_NAME, simple_class_path="timewarp.evaluation.lmms.adapter.TimewarpLMM")
