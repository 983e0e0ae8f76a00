"""Thin ZenML steps over :mod:`timewarp`, grouped by stage.

Importing the materializers registers them as the default for their domain types, so
every step output of those types is stored by them (never pickled).
"""

import materializers  # noqa: F401
