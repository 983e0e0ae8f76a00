"""Lets ``zenml pipeline run timewarp_implicit`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_implicit import timewarp_implicit

sys.modules[__name__] = timewarp_implicit  # type: ignore[assignment]
