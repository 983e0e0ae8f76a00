"""Lets ``zenml pipeline run timewarp_evaluate`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_evaluate import timewarp_evaluate

sys.modules[__name__] = timewarp_evaluate  # type: ignore[assignment]
