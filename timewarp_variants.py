"""Lets ``zenml pipeline run timewarp_variants`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_variants import timewarp_variants

sys.modules[__name__] = timewarp_variants  # type: ignore[assignment]
