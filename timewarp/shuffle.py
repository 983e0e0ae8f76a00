"""Moved to :mod:`timewarp.data.shuffle`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.shuffle moved to timewarp.data.shuffle", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.shuffle")
