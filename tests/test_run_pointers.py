"""The last lines of every pipeline say where to look: the MLflow run and the registered
version in the MLflow UI (how to start it when the tracking store is a file), and the run
in the ZenML dashboard (how to start the local one when no server is connected)."""

from __future__ import annotations

from infra.local_stack import LOCAL_TRACKING_URI
from pipelines.reporting import where_to_look

RUN = "689215f3-1941-4c68-87e9-73e734c04764"
REGISTRATION = {"registered_model": "timewarp-explicit", "version": "3", "alias": "champion",
                "mlflow_run_id": "84892b29", "mlflow_experiment_id": "1", "zenml_run": "timewarp_explicit-x"}


def test_a_local_training_run_points_at_the_mlflow_ui_the_version_and_the_local_dashboard():
    assert where_to_look(RUN, "default", REGISTRATION, LOCAL_TRACKING_URI, None) == [
        "Where to look:",
        "  MLflow run 84892b29: `make mlflow-ui`, then http://127.0.0.1:5000/#/experiments/1/runs/84892b29",
        ("  registered model timewarp-explicit version 3 (champion): models:/timewarp-explicit/3, "
         "http://127.0.0.1:5000/#/models/timewarp-explicit/versions/3"),
        ("  ZenML dashboard: `source .venv/bin/activate && zenml login --local`, then "
         f"http://127.0.0.1:8237/projects/default/runs/{RUN}"),
    ]


def test_another_file_store_says_how_to_serve_it():
    lines = where_to_look(RUN, "default", {"mlflow_run_id": "r1", "mlflow_experiment_id": "2"},
                          "sqlite:////tmp/other/mlflow.db", None)
    assert lines[1] == ("  MLflow run r1: `mlflow ui --backend-store-uri sqlite:////tmp/other/mlflow.db`, then "
                        "http://127.0.0.1:5000/#/experiments/2/runs/r1")
    assert not any("registered model" in line for line in lines)  # the variants and benchmark runs register none


def test_servers_are_linked_directly_and_credentials_never_printed():
    lines = where_to_look(RUN, "default", REGISTRATION, "https://user:s3cret@mlflow.example.org:8443/base/",
                          f"https://zenml.example.org/projects/default/runs/{RUN}")
    text = "\n".join(lines)
    assert "s3cret" not in text and "user" not in text
    assert "  MLflow run 84892b29: https://mlflow.example.org:8443/base/#/experiments/1/runs/84892b29" in lines
    assert "https://mlflow.example.org:8443/base/#/models/timewarp-explicit/versions/3" in text
    assert lines[-1] == f"  ZenML dashboard: https://zenml.example.org/projects/default/runs/{RUN}"


def test_a_run_without_mlflow_points_at_the_dashboard_only():
    assert where_to_look(RUN, "p", None, None, None) == [
        "Where to look:",
        ("  ZenML dashboard: `source .venv/bin/activate && zenml login --local`, then "
         f"http://127.0.0.1:8237/projects/p/runs/{RUN}"),
    ]
