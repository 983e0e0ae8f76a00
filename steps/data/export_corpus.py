from typing import Annotated

from zenml import get_step_context, step

from timewarp.data.corpus import RejectionLog, VideoCorpus
from timewarp.data.export import export_corpus as write_export


# Never cached: the export folder lives outside the artifact store and may have changed.
@step(enable_cache=False)
def export_corpus(corpus: VideoCorpus, rejections: RejectionLog, export_dir: str) -> Annotated[str, "export_uri"]:
    """Write the corpus in the paper's layout, with a lineage file pointing back here."""
    context = get_step_context()
    lineage = {
        "pipeline": context.pipeline.name,
        "pipeline_run_id": str(context.pipeline_run.id),
        "corpus_artifact_version_id": str(context.inputs["corpus"][0].id),
        "rejections_artifact_version_id": str(context.inputs["rejections"][0].id),
    }
    write_export(corpus, rejections, export_dir, lineage)
    return export_dir
