"""Moved to :mod:`timewarp.data.finevideo`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.finevideo moved to timewarp.data.finevideo", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.finevideo")
