"""Moved to :mod:`timewarp.data.remote_media`; this name keeps old imports and stored ZenML artifact
types working, with a DeprecationWarning."""

import importlib
import sys
import warnings

warnings.warn("timewarp.remote_media moved to timewarp.data.remote_media", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("timewarp.data.remote_media")
