"""ZenML pipelines: composition only."""
