"""Where models run (timewarp.models.placement) and how checkpoints load there.

- the device and dtype rule, given the machine's facts (GPU or not, bf16 support, a
  launcher's LOCAL_RANK) and the caller's wishes (explicit device/dtype, use_cpu, bf16);
- ``ModelCheckpoint.load()`` on this machine: float32 on the CPU; an explicit bfloat16
  gives bf16 weights (an adapter's base too) and every scorer still runs on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from timewarp.models.checkpoint import ModelCheckpoint  # noqa: E402
from timewarp.models.placement import (  # noqa: E402
    MachineFacts,
    Placement,
    choose_device,
    choose_dtype,
    choose_placement,
    device_map,
    placement_of,
)

CPU_ONLY = MachineFacts()
GPU = MachineFacts(cuda=True, bf16=True)
OLD_GPU = MachineFacts(cuda=True, bf16=False)  # no native bf16 (compute capability < 8)
LAUNCHED = MachineFacts(cuda=True, bf16=True, local_rank=3)


# ---- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "requested", "use_cpu", "expected"),
    [
        (CPU_ONLY, None, False, "cpu"),
        (GPU, None, False, "cuda"),
        (GPU, "auto", False, "cuda"),
        (LAUNCHED, None, False, "cuda:3"),  # each launched process on its own GPU
        (LAUNCHED, None, True, "cpu"),  # the recipe asks for the CPU
        (MachineFacts(local_rank=1), None, False, "cpu"),  # launched on a machine without GPUs
        (GPU, "cpu", False, "cpu"),  # an explicit request wins
        (CPU_ONLY, "cuda:1", False, "cuda:1"),
        (LAUNCHED, "mps", False, "mps"),
    ],
)
def test_device(facts: MachineFacts, requested: str | None, use_cpu: bool, expected: str) -> None:
    assert choose_device(facts, requested=requested, use_cpu=use_cpu) == expected


@pytest.mark.parametrize(
    ("device", "facts", "bf16", "requested", "expected"),
    [
        ("cuda", GPU, True, None, "bfloat16"),
        ("cuda:3", LAUNCHED, True, "auto", "bfloat16"),
        ("cuda", GPU, False, None, "float32"),  # the recipe trained in float32
        ("cuda", OLD_GPU, True, None, "float32"),  # bf16 wanted, not supported
        ("cpu", GPU, True, None, "float32"),  # a GPU machine, but this model runs on the CPU
        ("mps", CPU_ONLY, True, None, "float32"),
        ("cpu", CPU_ONLY, True, "bfloat16", "bfloat16"),  # asked for explicitly
        ("cuda", GPU, True, "float16", "float16"),
    ],
)
def test_dtype(device: str, facts: MachineFacts, bf16: bool, requested: str | None, expected: str) -> None:
    assert choose_dtype(device, facts, bf16=bf16, requested=requested) == expected


def test_unknown_dtype_is_refused() -> None:
    with pytest.raises(ValueError, match="dtype must be 'auto' or one of"):
        choose_dtype("cpu", CPU_ONLY, requested="int4")


def test_weights_load_straight_onto_an_accelerator() -> None:
    assert device_map("cpu") is None
    assert device_map("cuda:3") == {"": "cuda:3"}
    placement = choose_placement(facts=LAUNCHED)
    assert placement == Placement("cuda:3", "bfloat16")
    assert placement.device_map == {"": "cuda:3"} and placement.torch_dtype is torch.bfloat16
    assert str(placement) == "cuda:3 in bfloat16"
    assert choose_placement(facts=LAUNCHED, use_cpu=True) == Placement("cpu", "float32")
    assert choose_placement(facts=GPU, bf16=False) == Placement("cuda", "float32")


def test_facts_of_this_process() -> None:
    assert MachineFacts.probe({"LOCAL_RANK": "2"}).local_rank == 2
    assert MachineFacts.probe({}).local_rank is None
    probed = MachineFacts.probe({})
    assert probed.cuda == torch.cuda.is_available() and (probed.bf16 <= probed.cuda)
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        MachineFacts.probe({"LOCAL_RANK": "first"})


# ---- checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from timewarp.models.registry import family_by_name

    return family_by_name("qwen2_vl").make_tiny(tmp_path_factory.mktemp("placement") / "tiny", seed=0)


@pytest.fixture(scope="module")
def adapter(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter of the tiny model whose weights change its outputs."""
    from peft import LoraConfig, get_peft_model

    from timewarp.models.registry import family_by_name

    model, _ = family_by_name("qwen2_vl").load(str(tiny))
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1, generator=torch.Generator().manual_seed(0))
    folder = tmp_path_factory.mktemp("placement") / "adapter"
    peft_model.save_pretrained(str(folder))
    return folder


def _weight_dtypes(model: Any) -> set[Any]:
    return {p.dtype for name, p in model.named_parameters() if "lora_" not in name}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU default; a GPU machine loads onto the GPU")
def test_a_checkpoint_loads_in_float32_on_the_cpu(tiny: Path) -> None:
    # The recipe trained in bf16, but the CPU computes in float32.
    model, _, _ = ModelCheckpoint(path=str(tiny), family="qwen2_vl", kind="DPO", recipe={"bf16": True}).load()
    assert placement_of(model) == Placement("cpu", "float32")
    assert _weight_dtypes(model) == {torch.float32}


def test_bfloat16_on_request_and_every_scorer_runs(
    tiny: Path, adapter: Path, sample_root: Path, tmp_path: Path
) -> None:
    from timewarp.evaluation.scoring import ScoringConfig, score_benchmark
    from timewarp.generation.datasets import MCQBenchmark
    from timewarp.generation.template import TemplateGenerator
    from timewarp.data.ingest import list_shards
    from timewarp.data.prepare import PrepareConfig, prepare_corpus

    checkpoint = ModelCheckpoint(
        path=str(adapter), family="qwen2_vl", kind="DPO", base_model=str(tiny), adapter=True, recipe={"bf16": False}
    )
    model, processor, family = checkpoint.load(device="cpu", dtype="bfloat16")
    assert type(model).__name__ == "PeftModel"
    assert placement_of(model) == Placement("cpu", "bfloat16")
    assert _weight_dtypes(model) == {torch.bfloat16}
    assert [p for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0], "the adapter is applied"

    corpus, _ = prepare_corpus(list_shards(str(sample_root)), tmp_path / "corpus", PrepareConfig(frames_per_video=2))
    items = TemplateGenerator().benchmark_text(corpus.videos[:2], 2).items[:3]
    config = ScoringConfig(frames_per_video=2, batch_size=2, max_new_tokens=3)
    for variant in ("normal", "shuffled"):
        results = score_benchmark(model, processor, family, MCQBenchmark(items, variant), corpus, config)
        assert list(results) == list(config.scorers)
        assert all(len(rows) == len(items) for rows in results.values())
        assert all(r.predicted_index in range(4) for r in results["loglik"] + results["text_loglik"])
