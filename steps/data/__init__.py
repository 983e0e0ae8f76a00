"""Data stage steps: shards -> prepared corpus -> export."""

from steps.data.export_corpus import export_corpus
from steps.data.generate_sample import generate_sample
from steps.data.locate_shards import locate_shards
from steps.data.merge_corpus import merge_corpus
from steps.data.prepare_videos import prepare_videos

__all__ = ["export_corpus", "generate_sample", "locate_shards", "merge_corpus", "prepare_videos"]
