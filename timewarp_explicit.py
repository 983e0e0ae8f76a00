"""Lets ``zenml pipeline run timewarp_explicit`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_explicit import timewarp_explicit

sys.modules[__name__] = timewarp_explicit  # type: ignore[assignment]
