"""What a user sees after ``timewarp_explicit``, in a real headless browser: the ZenML
dashboard (``zenml login --local``) with the run's DAG and the materializers' visualizations,
and the MLflow UI (``make mlflow-ui``) with the run's metrics, a plot and the registered model's
champion alias. Reuses the session's runs (``explicit_runs`` in tests/conftest.py, shared with
tests/test_explicit_pipeline.py); screenshots are kept under .timewarp/test-artifacts/screenshots/."""

import os

import pytest
from mlflow.tracking import MlflowClient

from materializers.text_dataset_materializers import PREVIEW_ITEMS
from tests.browser import chromium, mlflow_ui, screenshot, zenml_dashboard

pytestmark = pytest.mark.pipeline

TIMEOUT_MS = 60_000  # the two CPU cores are shared with the pipeline's own processes


def _visualization(page, step: str, artifact: str):
    """Open an artifact node's side sheet on the run page, load its visualization and return
    the frame that holds it (the dashboard shows HTML visualizations in a sandboxed iframe)."""
    page.locator(f".react-flow__node[data-id='{step}/outputs/step_output/{artifact}']").click()
    sheet = page.get_by_role("dialog")
    sheet.get_by_role("tab", name="Visualization").click()
    sheet.get_by_role("button", name="Load Preview").click()
    return sheet.frame_locator("iframe")


def _close(page) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).click()
    page.get_by_role("dialog").wait_for(state="detached")


def _all_images_rendered(frame, selector: str) -> int:
    images = frame.locator(selector)
    images.first.wait_for()
    sizes = images.evaluate_all("images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert sizes and all(width > 0 for width in sizes), f"{selector}: not every image rendered ({sizes})"
    return len(sizes)


def test_zenml_dashboard_shows_the_dag_and_the_visualizations(explicit_runs, tmp_path):
    run = explicit_runs[0]  # every step executed (the later runs are partly cached)
    preferences = run.steps["generate_training_text"].outputs["preference_pairs"][0].load()
    with zenml_dashboard(os.environ["ZENML_CONFIG_PATH"], tmp_path) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1920, "height": 1400})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/projects/default/runs/{run.id}")
        page.locator(".react-flow__node").first.wait_for()
        page.get_by_role("button", name="Fit view").click()
        for name in run.steps:
            node = page.locator(f".react-flow__node[data-id='step/{name}']")
            node.wait_for()
            assert node.inner_text().splitlines()[0] == name
        screenshot(page, "zenml-run-dag")

        corpus = _visualization(page, "merge_corpus", "corpus")
        corpus.get_by_text("Prepared videos: true and shuffled scene order").wait_for()
        assert _all_images_rendered(corpus, ".strip img") >= 4  # true and shuffled order, two frames each at least
        assert corpus.get_by_text("shuffled order", exact=True).count() >= 1
        screenshot(page, "zenml-corpus-frame-strips")
        _close(page)

        pairs = _visualization(page, "generate_training_text", "preference_pairs")
        header = pairs.locator("table tr").first
        header.wait_for()
        assert header.locator("th").all_inner_texts() == ["question", "chosen", "rejected", "shuffled order", "frames"]
        first = pairs.locator("table tr").nth(1).locator("td")
        assert first.nth(0).inner_text() == preferences.pairs[0].question
        assert first.nth(1).inner_text() == preferences.pairs[0].chosen
        assert first.nth(2).inner_text() == preferences.pairs[0].rejected
        assert pairs.locator("table tr").count() == 1 + min(len(preferences.pairs), PREVIEW_ITEMS)
        _all_images_rendered(pairs, "table img")
        screenshot(page, "zenml-preference-pairs")
        _close(page)

        report = _visualization(page, "compare_models", "evaluation_report")
        _all_images_rendered(report, "img")  # the comparison plot
        assert report.get_by_text("difference [95% CI]").count() == 1
        screenshot(page, "zenml-evaluation-report")


def test_mlflow_ui_shows_metrics_plots_and_the_champion(local_stack, explicit_runs, tmp_path):
    uri, _ = local_stack
    registration = explicit_runs[-1].steps["register_model"].outputs["model_registration"][0].load()
    assert registration["alias"] == "champion"
    mlflow_run = MlflowClient(uri).get_run(registration["mlflow_run_id"])
    experiment = registration["mlflow_experiment_id"]
    accuracy = "eval/text_loglik/accuracy_normal/DPO"
    with mlflow_ui(uri, tmp_path / "mlflow-ui.log") as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{url}/#/experiments/{experiment}/runs/{mlflow_run.info.run_id}")
        page.get_by_text(mlflow_run.info.run_name, exact=True).first.wait_for()
        page.get_by_placeholder("Search metrics").fill(accuracy)
        row = page.get_by_role("row").filter(has=page.get_by_text(accuracy, exact=True))
        row.wait_for()
        assert repr(mlflow_run.data.metrics[accuracy]) in row.inner_text()
        screenshot(page, "mlflow-run-metrics")

        page.goto(f"{url}/#/experiments/{experiment}/runs/{mlflow_run.info.run_id}/artifacts/plots/evaluation.png")
        page.get_by_text("plots/evaluation.png", exact=True).wait_for()
        page.wait_for_function(
            "() => [...document.images].some(i => i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0)")
        screenshot(page, "mlflow-evaluation-plot")

        page.goto(f"{url}/#/models/{registration['registered_model']}")
        version = page.get_by_role("row").filter(has=page.get_by_text(f"Version {registration['version']}", exact=True))
        version.wait_for()
        alias = page.get_by_text("@ champion", exact=True)  # the Aliases column's chip, not the promotion tag
        assert version.get_by_text("@ champion", exact=True).count() == 1 and alias.count() == 1
        screenshot(page, "mlflow-registered-model")
