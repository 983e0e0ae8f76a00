from dataclasses import replace
from typing import Annotated

from zenml import step

from steps._workdir import scratch_dir
from timewarp.data.ingest import ShardSet, list_shards
from timewarp.data.sample import SampleSpec, make_sample


@step
def generate_sample(videos: int, seed: int, preset: str = "small") -> Annotated[ShardSet, "finevideo_shards"]:
    """A generated FineVideo miniature (``preset``: see :meth:`SampleSpec.preset`); its
    shards are stored inside the artifact."""
    root = scratch_dir("sample")
    make_sample(root, videos=videos, seed=seed, spec=SampleSpec.preset(preset))
    return replace(list_shards(str(root)), generated=True)
