"""Throughput and memory of DPO on video preference pairs: TRL's frames-as-images path vs ours.

Five configurations train the same random-weight Qwen2-VL on the same synthetic pairs
(``--frames`` frames per video, even) for the same steps, each with a freshly loaded model
and a fresh trainer, in this process:

  a  baseline, like for like: TRL's frames-as-images path fed the vision tokens our path is
     fed. Rows carry frames/2 of each video's frames (spread evenly) as an ``images`` list of
     PIL images in a ``datasets.Dataset``; TRL's DataCollatorForVisionPreference renders the
     chat template (one image placeholder per image), tokenises and processes each image,
     which Qwen2-VL's processor makes one temporal patch (the image twice). Live reference
     (adapters disabled with LoRA, a second model in full).
  b  a with ``precompute_ref_log_probs=True``: TRL refuses this for vision datasets, so the
     refusal (TRL's own message) is recorded instead of numbers.
  c  our VideoPreferenceCollator (all frames as one video, two frames per temporal patch,
     read from a prepared corpus's PNGs by FrameSource) through ``build_dpo_trainer``,
     ``precompute_ref_log_probs=False``: a live reference, as in a.
  d  c with the reference log-probs computed once before training (the recipe's default).
  e  for information: TRL's path with every frame as an image (same frames as c and d), so
     twice their vision tokens.

What differs, per pair: a vs c: frames shown (frames/2 images vs all frames as a video) and
the text (one vision start/end pair per image vs one per video); vision tokens and patches
are equal, and the run stops with an error if the counts measured say otherwise. c vs d:
only where the reference log-probs come from. e vs a: twice the images, so twice the vision
tokens. The output lists each pair's frames shown, vision and text tokens per sequence and
reference, as measured.

Per configuration: samples/s (a sample is one preference pair, i.e. two sequences) and
tokens/s (non-padding prompt+completion tokens, vision placeholders included, of the batches
actually trained on) over the timed steps (warm-up steps excluded), on CPU also samples per
second of this process's CPU time (what other jobs on a shared machine disturb least), peak
memory (GPU: peak ``torch.cuda.max_memory_allocated`` over the configuration, model loading
included; CPU: peak RSS above the RSS at its start), and the ratios against a. An untimed step of each path runs
first, so one-time costs (lazy imports, allocator arenas, kernel caches) do not land on a.
The reference pass is reported apart: d's one-off precompute (wall and, on CPU, CPU time;
in all and per pair), c's and d's training throughput, d's with its precompute counted over one epoch, and the break-even
(the epochs after which the stored reference is cheaper than a live one).

    python benchmarks/bench_dpo.py                     # CPU: tiny model, 64x96 frames
    python benchmarks/bench_dpo.py --size 2b           # GPU: Qwen2-VL-2B shapes, 224x224, bf16
    python benchmarks/bench_dpo.py --full --json-out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are built from configs, never fetched
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import PrinterCallback  # noqa: E402

from benchmarks.dpo_meters import MemoryProbe, StepMeter, synchronize  # noqa: E402
from benchmarks.dpo_report import (  # noqa: E402
    BASELINE,
    CONFIGURATIONS,
    LIVE,
    Result,
    differences,
    format_table,
    like_for_like,
    new_result,
    ratios_against,
    reference_cost,
    require_like_for_like,
)
from benchmarks.dpo_workload import Pair, make_model, make_pairs, our_rows, trl_rows, write_corpus  # noqa: E402
from timewarp.data.corpus import VideoCorpus  # noqa: E402
from timewarp.models.qwen2_vl import IMAGE_PAD, VIDEO_PAD, family  # noqa: E402
from timewarp.training.collator import FrameSource, VideoPreferenceCollator  # noqa: E402
from timewarp.training.common import configure_trainable, load_for_training, lora_config, training_device  # noqa: E402
from timewarp.training.config import DPORecipe, LoraRecipe  # noqa: E402
from timewarp.training.dpo import build_dpo_trainer  # noqa: E402
from timewarp.training.reference import compute_reference_logps, with_reference_logps  # noqa: E402


@dataclass
class Settings:
    size: str
    device: str
    steps: int
    warmup: int
    pairs: int
    batch_size: int
    frames: int
    height: int
    width: int
    lora: bool
    lora_r: int
    gradient_checkpointing: bool
    threads: int | None  # torch intra-op threads; None: torch's default
    seed: int = 42


def make_recipe(settings: Settings, precompute: bool) -> DPORecipe:
    values: dict[str, Any] = {
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": 1,  # one optimizer step = one batch
        "max_steps": settings.warmup + settings.steps,
        "frames_per_video": settings.frames,
        "lora": LoraRecipe(r=settings.lora_r, alpha=2 * settings.lora_r) if settings.lora else None,
        "precompute_ref_log_probs": precompute,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "logging_steps": settings.warmup + settings.steps,
        "seed": settings.seed,
        # Nothing written during the run: checkpoints would land inside the timed steps.
        "trl_overrides": {"save_strategy": "no", "disable_tqdm": True},
    }
    if settings.device == "cpu":
        return DPORecipe.cpu_test(**values)
    return DPORecipe.from_dict(values)


def _count_parameters(model: Any) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _finish(result: Result, meter: StepMeter, trainer: Any, settings: Settings) -> Result:
    counts = meter.totals()
    seconds = meter.seconds
    sequences = counts["sequences"]
    pairs = sequences // 2  # a batch is [chosen..., rejected...]
    result.timed_steps, result.timed_s, result.counts = meter.steps, seconds, counts
    result.median_step_s = float(np.median(meter.step_seconds)) if meter.step_seconds else None
    result.collate_share = meter.collate_seconds / seconds
    result.samples_per_s = pairs / seconds
    result.tokens_per_s = counts["tokens"] / seconds
    if settings.device == "cpu":  # on a GPU the host's CPU time says nothing about the work
        result.timed_cpu_s = meter.cpu_seconds
        result.samples_per_cpu_s = pairs / result.timed_cpu_s
    result.parameters, result.trainable_parameters = _count_parameters(trainer.model)
    per_pair = seconds / pairs + (result.precompute_s or 0.0) / settings.pairs
    result.samples_per_s_with_precompute = 1.0 / per_pair
    result.vision_tokens_per_sequence = counts["vision_tokens"] / sequences
    result.vision_patches_per_sequence = counts.get("vision_patches", 0) / sequences
    result.text_tokens_per_sequence = (counts["tokens"] - counts["vision_tokens"]) / sequences
    return result


@contextmanager
def measured(result: Result, device: torch.device) -> Iterator[None]:
    probe = MemoryProbe(device)
    probe.start()
    try:
        yield
    finally:
        # A refused configuration never trained: its peak would only be the model load.
        result.peak_memory_mb = probe.peak_mb() if result.ok else None
        result.memory_at_start_mb = probe.start_mb


def _train(trainer: Any, meter: StepMeter) -> None:
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts would drown the report
    trainer.training_step = meter.wrap(trainer.training_step)  # instance attribute: Trainer calls self.training_step
    trainer.data_collator = meter.wrap_collator(trainer.data_collator)  # the dataloader is built in train()
    trainer.train()


def _dispose(trainer: Any) -> None:
    # Drops accelerate's references to model and optimizer; the rest goes with the caller's
    # frame and MemoryProbe.start() of the next configuration collects it.
    trainer.accelerator.free_memory()


def run_trl_images(key: str, model_path: Path, pairs: list[Pair], settings: Settings, workdir: Path) -> Result:
    """a / b / e: TRL's own vision path (DataCollatorForVisionPreference built by TRL)."""
    from datasets import Dataset
    from trl import DPOTrainer

    configuration = CONFIGURATIONS[key]
    precompute = configuration.reference == "stored"
    result = new_result(key, settings.frames)
    recipe = make_recipe(settings, precompute)
    device = training_device(recipe)
    images = settings.frames // configuration.frame_stride
    dataset = Dataset.from_list(trl_rows(pairs, images))  # frames stored PNG-encoded, decoded per access
    with measured(result, device):
        setup = time.perf_counter()
        model, processor = load_for_training(family, str(model_path), recipe)
        configure_trainable(family, model, recipe)
        ref_model = None if settings.lora else load_for_training(family, str(model_path), recipe)[0]
        meter = StepMeter(settings.warmup, device, _vision_token_ids(processor))
        try:
            trainer = DPOTrainer(
                model=model,
                ref_model=ref_model,
                args=recipe.to_trl(workdir / key),
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora_config(family, model, recipe) if settings.lora else None,
                callbacks=[meter],
            )
        except ValueError as error:
            if not precompute or "precompute_ref_log_probs" not in str(error):
                raise
            result.status = f"refused by TRL: {error}"
            return result
        result.setup_s = time.perf_counter() - setup
        _train(trainer, meter)
        _finish(result, meter, trainer, settings)
        _dispose(trainer)
    return result


def run_ours(
    key: str, model_path: Path, pairs: list[Pair], corpus: VideoCorpus, settings: Settings, workdir: Path
) -> Result:
    """c / d: our collator through build_dpo_trainer, as train_dpo runs it."""
    precompute = CONFIGURATIONS[key].reference == "stored"
    result = new_result(key, settings.frames)
    recipe = make_recipe(settings, precompute)
    device = training_device(recipe)
    rows = our_rows(pairs)
    with measured(result, device):
        setup = time.perf_counter()
        model, processor = load_for_training(family, str(model_path), recipe)
        collator = VideoPreferenceCollator(
            family, processor, FrameSource(corpus, recipe.frames_per_video), max_length=recipe.max_length
        )
        ref_model = None
        if precompute:
            # As train_dpo does: the untouched policy is the reference, before LoRA wrapping.
            model.to(device)
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            batch_size = recipe.ref_batch_size or settings.batch_size
            values = compute_reference_logps(model, collator, rows, batch_size=batch_size)
            synchronize(device)
            result.precompute_s = time.perf_counter() - start
            if settings.device == "cpu":
                result.precompute_cpu_s = time.process_time() - cpu_start
            rows = with_reference_logps(rows, values)
        elif not settings.lora:
            ref_model, _ = load_for_training(family, str(model_path), recipe)
        meter = StepMeter(settings.warmup, device, _vision_token_ids(processor))
        trainer = build_dpo_trainer(
            model, processor, family, rows, collator, recipe, workdir / key, ref_model=ref_model, callbacks=[meter]
        )
        result.setup_s = time.perf_counter() - setup - (result.precompute_s or 0.0)
        _train(trainer, meter)
        _finish(result, meter, trainer, settings)
        _dispose(trainer)
    return result


def _vision_token_ids(processor: Any) -> tuple[int, ...]:
    return tuple(processor.tokenizer.convert_tokens_to_ids(token) for token in (IMAGE_PAD, VIDEO_PAD))


def parse_args(argv: list[str] | None = None) -> tuple[Settings, list[str], str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--size", choices=("tiny", "2b"), help="default: 2b on GPU, tiny on CPU")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default: 10 GPU, 24 CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 2)")
    parser.add_argument("--pairs", type=int, help="preference pairs, one video each (default: 64 GPU, 24 CPU)")
    parser.add_argument("--batch-size", type=int, help="pairs per step (default: 4 GPU, 2 CPU)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video, even (default: 8)")
    parser.add_argument("--frame-size", help="HEIGHTxWIDTH of a frame (default: 224x224 GPU, 64x96 CPU)")
    tuning = parser.add_mutually_exclusive_group()
    tuning.add_argument("--lora", dest="lora", action="store_true", default=True, help="LoRA (default)")
    tuning.add_argument("--full", dest="lora", action="store_false", help="full fine-tuning")
    parser.add_argument("--lora-r", type=int, help="LoRA rank (default: 128 as the recipe for 2b, 8 for tiny)")
    parser.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        help="default: on for GPU (the recipe's), off on CPU",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default on CPU: 1; the tiny model's ops gain nothing from more, and on a "
        "shared machine a descheduled OpenMP thread stalls every op: 2 threads ran up to 10x slower here)",
    )
    parser.add_argument("--configs", default="abcde", help="subset of a, b, c, d, e to run (a is the baseline)")
    parser.add_argument("--json-out", help="write the result as JSON here")
    args = parser.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible")
    gpu = device == "cuda"
    height, width = (224, 224) if gpu else (64, 96)
    if args.frame_size:
        try:
            height, width = (int(v) for v in args.frame_size.lower().split("x"))
        except ValueError:
            parser.error(f"--frame-size takes HEIGHTxWIDTH, e.g. 64x96, not {args.frame_size!r}")
    size = args.size or ("2b" if gpu else "tiny")
    settings = Settings(
        size=size,
        device=device,
        steps=args.steps if args.steps is not None else (10 if gpu else 24),
        warmup=args.warmup if args.warmup is not None else 2,
        pairs=args.pairs if args.pairs is not None else (64 if gpu else 24),
        batch_size=args.batch_size if args.batch_size is not None else (4 if gpu else 2),
        frames=args.frames,
        height=height,
        width=width,
        lora=args.lora,
        lora_r=args.lora_r if args.lora_r is not None else (128 if size == "2b" else 8),
        gradient_checkpointing=args.gradient_checkpointing if args.gradient_checkpointing is not None else gpu,
        threads=args.threads if args.threads is not None else (None if gpu else 1),
    )
    if settings.steps < 1 or settings.warmup < 0 or settings.pairs < 1 or settings.batch_size < 1:
        parser.error("need --steps >= 1, --warmup >= 0, --pairs >= 1, --batch-size >= 1")
    if settings.frames < 2 or settings.frames % 2:
        parser.error(
            f"--frames must be even and at least 2, not {settings.frames}: Qwen2-VL packs two frames per "
            "temporal patch, and the baseline (a) gives TRL one image per patch"
        )
    if min(height, width) < 28:
        parser.error("frames must be at least 28x28 (two 14-pixel patches per side)")
    unknown = set(args.configs) - set(CONFIGURATIONS)
    if unknown or BASELINE not in args.configs:
        letters = "".join(CONFIGURATIONS)
        parser.error(f"--configs takes letters from {letters} and must include {BASELINE} (the baseline)")
    return settings, sorted(set(args.configs)), args.json_out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, keys, json_out = parse_args(argv)
    import transformers

    transformers.logging.set_verbosity_error()
    if settings.threads:
        torch.set_num_threads(settings.threads)

    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        model_path = make_model(settings.size, workdir / "model")
        build_s = time.perf_counter() - start
        pairs = make_pairs(settings.pairs, settings.frames, settings.height, settings.width, seed=settings.seed)
        corpus = write_corpus(pairs, workdir / "corpus")
        print(
            f"model {settings.size} built in {build_s:.1f} s; {settings.pairs} pairs of {settings.frames} frames "
            f"{settings.height}x{settings.width}; {settings.warmup} warm-up + {settings.steps} timed steps of "
            f"{settings.batch_size} pairs on {settings.device}; "
            f"{f'LoRA r={settings.lora_r}' if settings.lora else 'full fine-tuning'}",
            flush=True,
        )
        # One untimed step of each path first: lazy imports, allocator arenas and kernel caches
        # (on GPU also cuBLAS workspaces) are paid here, not by whichever configuration runs first
        # (on CPU the first one otherwise showed ~30 MB more peak RSS).
        print("priming: one untimed step of each path", flush=True)
        primer = replace(settings, steps=1, warmup=0)
        run_trl_images(BASELINE, model_path, pairs, primer, workdir / "primer")
        run_ours(LIVE, model_path, pairs, corpus, primer, workdir / "primer")
        for key in keys:
            if CONFIGURATIONS[key].path == "trl":
                results[key] = run_trl_images(key, model_path, pairs, settings, workdir)
            else:
                results[key] = run_ours(key, model_path, pairs, corpus, settings, workdir)
            r = results[key]
            print(f"  ({key}) {r.label}: {f'{r.samples_per_s:.3f} samples/s' if r.ok else r.status}", flush=True)

    ratios = ratios_against(results)
    check = like_for_like(results)
    reference = reference_cost(results, settings.pairs)
    memory_kind = "GPU alloc" if settings.device == "cuda" else "RSS delta"
    report = {
        "settings": asdict(settings),
        "device": torch.cuda.get_device_name() if settings.device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": _trl_version()},
        "memory": "torch.cuda.max_memory_allocated" if settings.device == "cuda" else "peak RSS minus RSS at start",
        "model_build_s": build_s,
        "configurations": {key: {**asdict(r), "ok": r.ok} for key, r in results.items()},
        "baseline": BASELINE,
        "ratios_vs_a": ratios,
        "like_for_like": check,
        "differences": differences(results),
        "reference_pass": reference,
    }
    print()
    print(format_table(results, ratios, memory_kind, reference))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
        print(f"\nJSON written to {json_out}")
    require_like_for_like(check)
    return report


def _trl_version() -> str:
    import trl

    return trl.__version__


if __name__ == "__main__":
    main()
