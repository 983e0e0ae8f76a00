"""Lets ``zenml pipeline run timewarp_base_dpo`` (a bare name) find the pipeline: the CLI
imports a bare word as a module, so this module replaces itself with the pipeline."""

import sys

from pipelines.timewarp_base_dpo import timewarp_base_dpo

sys.modules[__name__] = timewarp_base_dpo  # type: ignore[assignment]
