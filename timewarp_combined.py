"""Lets ``zenml pipeline run timewarp_combined`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_combined import timewarp_combined

sys.modules[__name__] = timewarp_combined  # type: ignore[assignment]
