"""Moved modules keep their old import paths (user code, stored ZenML artifact types and
older pipeline snapshots name them), each with a DeprecationWarning."""

import importlib
import sys

import pytest
from zenml.utils import source_utils

MOVED = {
    **{f"timewarp.{name}": f"timewarp.data.{name}" for name in (
        "corpus", "export", "finevideo", "ingest", "prepare", "remote_media", "sample", "scenes", "shuffle", "video")},
    "steps.registry": "steps.tracking",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_is_the_moved_module_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_stored_artifact_types_and_step_sources_still_load():
    from steps.tracking import register_model
    from timewarp.data.corpus import VideoCorpus

    with pytest.warns(DeprecationWarning):
        sys.modules.pop("timewarp.corpus", None)
        assert source_utils.load("timewarp.corpus.VideoCorpus") is VideoCorpus
    sys.modules.pop("steps.registry", None)
    sys.modules.pop("steps.registry.register_model", None)
    with pytest.warns(DeprecationWarning):
        assert source_utils.load("steps.registry.register_model.register_model") is register_model
