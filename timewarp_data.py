"""Lets ``zenml pipeline run timewarp_data`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_data import timewarp_data

sys.modules[__name__] = timewarp_data  # type: ignore[assignment]
