"""Moved to :mod:`steps.tracking` (step folders mirror the library's); this name keeps old
imports and pipeline snapshots that name ``steps.registry.register_model`` working."""

import importlib
import sys
import warnings

warnings.warn("steps.registry moved to steps.tracking", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("steps.tracking")
sys.modules[f"{__name__}.register_model"] = importlib.import_module("steps.tracking.register_model")
