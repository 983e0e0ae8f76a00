"""Moved to :mod:`timewarp.data.sample`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.sample moved to timewarp.data.sample", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.sample")
