from typing import Annotated

from zenml import log_metadata, step

from timewarp.evaluation.results import ComparisonReport, ModelEvaluation, compare


@step
def compare_models(base_evaluation: ModelEvaluation, trained_evaluation: ModelEvaluation) -> Annotated[ComparisonReport, "evaluation_report"]:
    """Trained minus base on the same benchmark version, with paired bootstrap intervals
    clustered by video."""
    report = compare(base_evaluation, trained_evaluation)
    for line in report.lines():
        print(line)
    log_metadata({"evaluation": {f"{r.scorer}/{r.metric}/difference": r.difference.value for r in report.rows}})
    return report
