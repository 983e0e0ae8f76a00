"""The benchmark names a run can give a local root for, without importing lmms-eval (the
run settings validate against them when a pipeline is composed).

This module must not import zenml.
"""

from __future__ import annotations

#: Benchmark families :func:`~timewarp.evaluation.lmms.tasks.run_benchmarks` reads from a
#: local root in the benchmark's Hugging Face layout -> the lmms-eval task file whose
#: ``dataset_kwargs.cache_dir`` names the video cache.
BENCHMARK_FAMILIES: dict[str, str] = {
    "tvbench": "tvbench/_default_template_yaml",
    "mvbench": "mvbench/_default_template_yaml",
    "tempcompass": "tempcompass/_default_template_yaml",
    "vinoground": "vinoground/vinoground.yaml",
}
#: The ``benchmark_roots`` key of a data-stage export folder, which our own tasks read.
EXPORT_FAMILY = "timewarp"
#: Our own lmms-eval tasks -> the benchmark variant each scores.
EXPORT_VARIANTS: dict[str, str] = {"timewarp_normal": "normal", "timewarp_shuffled": "shuffled"}
#: Every key ``benchmark_roots`` may use besides a benchmark's own name.
ROOT_KEYS = (*BENCHMARK_FAMILIES, EXPORT_FAMILY)
