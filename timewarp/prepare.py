"""Moved to :mod:`timewarp.data.prepare`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.prepare moved to timewarp.data.prepare", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.prepare")
