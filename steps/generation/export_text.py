from typing import Annotated

from zenml import step

from timewarp.generation.datasets import MCQBenchmark, PreferenceDataset, SFTDataset
from timewarp.generation.formats import export_text as write_formats


# Never cached: the export folder lives outside the artifact store and may have changed.
@step(enable_cache=False)
def export_text(
    sft_pairs: SFTDataset,
    preference_pairs: PreferenceDataset,
    normal_benchmark: MCQBenchmark,
    shuffled_benchmark: MCQBenchmark,
    export_dir: str,
) -> Annotated[list[str], "exported_text_files"]:
    """TRL preference dataset, LLaVA-Hound jsonl and the paper's json files."""
    return write_formats(export_dir, sft_pairs, preference_pairs, normal_benchmark, shuffled_benchmark)
