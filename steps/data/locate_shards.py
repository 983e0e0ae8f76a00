from typing import Annotated

from zenml import step

from timewarp.data.ingest import ShardSet, list_shards


# Never cached: the listing is re-read each run so changed shards are noticed; steps
# downstream are still served from the cache when the listing's content hash is unchanged.
@step(enable_cache=False)
def locate_shards(finevideo_root: str) -> Annotated[ShardSet, "finevideo_shards"]:
    """The FineVideo-format shards under ``finevideo_root`` (local path or fsspec URI)."""
    return list_shards(finevideo_root)
