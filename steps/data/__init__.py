"""Data stage steps: shards -> prepared corpus -> export."""

from steps.data.export_corpus import export_corpus
from steps.data.generate_sample import generate_sample
from steps.data.load_hound_pairs import load_hound_pairs
from steps.data.locate_shards import locate_shards
from steps.data.merge_corpus import merge_corpus
from steps.data.prepare_videos import prepare_videos

__all__ = [
    "export_corpus", "generate_sample", "load_hound_pairs", "locate_shards", "merge_corpus", "prepare_videos",
]
