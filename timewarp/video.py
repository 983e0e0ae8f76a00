"""Moved to :mod:`timewarp.data.video`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.video moved to timewarp.data.video", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.video")
