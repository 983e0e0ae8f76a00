from collections import Counter
from typing import Annotated

from zenml import log_metadata, step

from timewarp.evaluation.results import ModelEvaluation
from timewarp.evaluation.variants import BASELINE_ARM, VariantsReport
from timewarp.evaluation.variants import compare_variants as compare_arms
from timewarp.generation.datasets import PreferenceDataset


@step
def compare_variants(
    arms: list[str],
    evaluations: list[ModelEvaluation],
    training_pairs: list[PreferenceDataset],
) -> Annotated[VariantsReport, "variants_report"]:
    """The paper's table: ``arms[i]`` scored as ``evaluations[i]``; the first arm is the
    baseline (the model every DPO arm starts from), ``training_pairs[i]`` what ``arms[i + 1]``
    trained on."""
    if arms[0] != BASELINE_ARM or len(evaluations) != len(arms) or len(training_pairs) != len(arms) - 1:
        raise ValueError(f"need the {BASELINE_ARM} arm first, one evaluation per arm and one pair set per DPO arm; "
                         f"got arms {arms}, {len(evaluations)} evaluations, {len(training_pairs)} pair sets")
    pairs = {arm: dict(Counter(p.source for p in dataset.pairs)) for arm, dataset in zip(arms[1:], training_pairs)}
    report = compare_arms(dict(zip(arms, evaluations, strict=True)), pairs)
    for line in report.table_lines():
        print(line)
    log_metadata({"variants": {f"{c.scorer}/{c.metric}/{c.arm}": c.estimate.value for c in report.cells}})
    return report
