"""Generation stage steps: split -> SFT/preference pairs and benchmarks -> quality check."""

from steps.generation.check_data_quality import check_data_quality
from steps.generation.combine_pairs import combine_pairs
from steps.generation.export_text import export_text
from steps.generation.generate_benchmark import generate_benchmark
from steps.generation.generate_implicit_pairs import generate_implicit_pairs
from steps.generation.generate_training_text import generate_training_text
from steps.generation.split_videos import split_videos

__all__ = ["check_data_quality", "combine_pairs", "export_text", "generate_benchmark", "generate_implicit_pairs",
           "generate_training_text", "split_videos"]
