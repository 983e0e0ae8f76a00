"""The ``evaluate_model`` step on the local ZenML stack (isolated config, see conftest):
it scores a model on both benchmarks, ``batch_size`` items at a time, and records where
the model ran (device and precision) as step metadata."""

from typing import Annotated, Tuple

import pytest
from zenml import pipeline, step

from steps._workdir import scratch_dir
from steps.evaluation import evaluate_model
from steps.training import prepare_base_model
from timewarp.data.corpus import VideoCorpus
from timewarp.generation.datasets import MCQBenchmark

pytestmark = pytest.mark.pipeline


@step
def tiny_benchmarks() -> Tuple[
    Annotated[VideoCorpus, "corpus"],
    Annotated[MCQBenchmark, "normal_benchmark"],
    Annotated[MCQBenchmark, "shuffled_benchmark"],
]:
    """A small corpus and one question per video, as the data stage makes them."""
    from timewarp.generation.template import TemplateGenerator
    from timewarp.data.ingest import list_shards
    from timewarp.data.prepare import PrepareConfig, prepare_corpus
    from timewarp.data.sample import make_sample

    root = scratch_dir("evaluate-step")
    make_sample(root / "raw", videos=4, seed=1)
    corpus, _ = prepare_corpus(list_shards(str(root / "raw")), root / "corpus", PrepareConfig(frames_per_video=2))
    items = TemplateGenerator().benchmark_text(corpus.videos, 1).items
    return corpus, MCQBenchmark(items, "normal"), MCQBenchmark(items, "shuffled")


@pipeline(enable_cache=False)
def evaluate_tiny_model() -> None:
    corpus, normal, shuffled = tiny_benchmarks()
    model = prepare_base_model(None, "qwen2_vl", 0)
    # Positional, as timewarp_explicit passes them, then the batch size.
    evaluate_model(model, normal, shuffled, corpus, 2, ["loglik", "text_loglik"], 3)


def test_evaluate_model_records_where_it_ran() -> None:
    from zenml.client import Client

    from infra.local_stack import other_store_in_this_checkout
    from timewarp.models.placement import MachineFacts, choose_dtype

    with other_store_in_this_checkout():  # the checkout's active stack stays the user's
        evaluate_tiny_model()
        run = Client().get_pipeline("evaluate_tiny_model").last_run
    step_run = run.steps["evaluate_model"]
    facts = MachineFacts.probe()
    device = "cuda:0" if facts.cuda else "cpu"
    # A base model has no recipe: bf16 where the GPU supports it, float32 on the CPU.
    expected = {"device": device, "dtype": choose_dtype(device, facts), "batch_size": 3}
    assert expected["dtype"] == "float32" or facts.cuda
    assert step_run.run_metadata["placement"] == expected
    evaluation = step_run.outputs["evaluation"][0].load()
    items = run.steps["tiny_benchmarks"].outputs["normal_benchmark"][0].load().items
    assert len(items) > 3  # more than one batch
    for scorer in ("loglik", "text_loglik"):
        assert len(evaluation.results[scorer]) == 2 * len(items)
