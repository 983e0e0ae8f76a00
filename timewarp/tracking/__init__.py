"""Experiment tracking and the model registry (MLflow), without ZenML."""
