"""Scoring video-LLMs on the TimeWarp benchmarks."""
