"""Throughput and memory of DPO on video preference pairs: TRL's frames-as-images path vs ours.

Four configurations train the same random-weight Qwen2-VL on the same synthetic pairs
(``--frames`` frames per video) for the same steps, each with a freshly loaded model and a
fresh trainer, in this process:

  a  TRL's frames-as-images path (baseline): rows carry the frames as an ``images`` list of
     PIL images in a ``datasets.Dataset``; TRL's DataCollatorForVisionPreference renders the
     chat template (one image placeholder per frame), tokenises and processes every frame as
     a separate image; live reference (adapters disabled with LoRA, a second model in full).
  b  a with ``precompute_ref_log_probs=True``: TRL refuses this for vision datasets, so the
     refusal (TRL's own message) is recorded instead of numbers.
  c  our VideoPreferenceCollator (the frames as one video, read from a prepared corpus's PNGs
     by FrameSource) through ``build_dpo_trainer``, ``precompute_ref_log_probs=False``.
  d  c with the reference log-probs computed once before training (the recipe's default);
     the wall time of that pass is reported apart from the training throughput.

Per configuration: samples/s (a sample is one preference pair, i.e. two sequences) and
tokens/s (non-padding prompt+completion tokens, vision placeholders included, of the batches
actually trained on) over the timed steps (warm-up steps excluded), peak memory (GPU: peak
``torch.cuda.max_memory_allocated`` over the configuration, model loading included; CPU: peak
RSS above the RSS at its start), and the ratios against a. An untimed step of each path runs
first, so one-time costs (lazy imports, allocator arenas, kernel caches) do not land on a.

Why a feeds more: Qwen2-VL's processor makes every image a temporal patch of two copies of
itself, so 8 frames as images give twice the vision patches and tokens of the same 8 frames
as one video (two frames per temporal patch), plus 7 more vision start/end pairs.

    python benchmarks/bench_dpo.py                     # CPU: tiny model, 64x96 frames
    python benchmarks/bench_dpo.py --size 2b           # GPU: Qwen2-VL-2B shapes, 224x224, bf16
    python benchmarks/bench_dpo.py --full --json-out result.json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
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
from PIL import Image  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from timewarp.corpus import PreparedVideo, VideoCorpus  # noqa: E402
from timewarp.models.qwen2_vl import IMAGE_PAD, VIDEO_PAD, QwenVLFamily, family  # noqa: E402
from timewarp.scenes import SceneSpan  # noqa: E402
from timewarp.training.collator import FrameSource, VideoPreferenceCollator  # noqa: E402
from timewarp.training.common import configure_trainable, load_for_training, lora_config, training_device  # noqa: E402
from timewarp.training.config import DPORecipe, LoraRecipe  # noqa: E402
from timewarp.training.dpo import build_dpo_trainer  # noqa: E402
from timewarp.training.reference import compute_reference_logps, with_reference_logps  # noqa: E402

CONFIGS: dict[str, str] = {
    "a": "TRL frames-as-images, live ref",
    "b": "TRL frames-as-images, precomputed ref",
    "c": "ours (video collator), live ref",
    "d": "ours (video collator), precomputed ref",
}

# -- model -----------------------------------------------------------------------------------

#: Qwen/Qwen2-VL-2B-Instruct's config.json: Qwen2-1.5B's language model and the ~0.67B-parameter
#: vision tower all Qwen2-VL sizes share (its merger projects to the LM's width, 1536). 2.21B in all.
QWEN2_VL_2B_TEXT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
}
QWEN2_VL_2B_VISION: dict[str, Any] = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}


class Qwen2VL2BShapes(QwenVLFamily):
    """``make_tiny`` at Qwen2-VL-2B-Instruct's dimensions: same tiny trained tokenizer (its
    special-token ids), same real processor classes, the released model's config shapes with
    random weights. The embedding keeps the released 151936 rows although the tokenizer only
    uses a few hundred ids, so embedding and LM-head costs are the real model's."""

    @staticmethod
    def _tiny_text_config(spec: Any, vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
        return {**QwenVLFamily._tiny_text_config(spec, vocab_size, ids), **QWEN2_VL_2B_TEXT}

    @staticmethod
    def _tiny_vision_config(spec: Any) -> dict[str, Any]:
        return dict(QWEN2_VL_2B_VISION)


def make_model(size: str, folder: Path) -> Path:
    """A random-weight Qwen2-VL checkpoint (model, tokenizer, processor) in ``folder``."""
    maker = family if size == "tiny" else Qwen2VL2BShapes()  # not registered: only writes files
    return maker.make_tiny(folder, seed=0)


# -- data ------------------------------------------------------------------------------------

_SCENES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("a red car drives slowly along a wet street", (200, 40, 40)),
    ("a man in a blue jacket opens the front door", (40, 60, 200)),
    ("two children play football on a green field", (40, 170, 60)),
    ("a yellow taxi stops at the corner to pick someone up", (220, 200, 40)),
    ("a woman pours coffee into a white cup in the kitchen", (230, 230, 230)),
    ("an orange sunset fades behind the hills", (240, 140, 30)),
    ("a purple kite rises over the beach in the wind", (140, 60, 180)),
    ("a grey cat jumps from the sofa onto the table", (120, 120, 120)),
)
QUESTION = "Describe what happens in this video, in the order it happens."


@dataclass(frozen=True)
class Pair:
    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8, true order
    prompt: str
    chosen: str  # scenes narrated in true order
    rejected: str  # the same scenes in a shuffled order (TimeWarp's negative)


def _narrate(captions: list[str]) -> str:
    steps = ["First, ", "Then, ", "After that, ", "Finally, "]
    prefixes = steps[: len(captions) - 1] + ["Finally, "]
    return " ".join(f"{prefix}{caption}." for prefix, caption in zip(prefixes, captions))


def make_pairs(count: int, frames: int, height: int, width: int, seed: int = 0) -> list[Pair]:
    """``count`` pairs, one video each: 3-4 coloured scenes with texture and noise (so the PNGs
    are not trivially small), frames split evenly over the scenes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    pairs = []
    for index in range(count):
        scene_ids = rng.choice(len(_SCENES), size=int(rng.integers(3, 5)), replace=False)
        order = rng.permutation(len(scene_ids))
        while len(scene_ids) > 1 and (order == np.arange(len(scene_ids))).all():
            order = rng.permutation(len(scene_ids))
        video = np.empty((frames, height, width, 3), dtype=np.uint8)
        for f in range(frames):
            _, colour = _SCENES[scene_ids[f * len(scene_ids) // frames]]
            texture = 25 * np.sin((xx + 7 * f) / 9.0)[..., None] * np.cos(yy / 13.0)[..., None]
            noise = rng.normal(0.0, 12.0, size=(height, width, 3))
            video[f] = np.clip(np.asarray(colour) + texture + noise, 0, 255).astype(np.uint8)
        captions = [_SCENES[i][0] for i in scene_ids]
        pairs.append(
            Pair(
                video_id=f"bench{index:05d}",
                frames=video,
                prompt=QUESTION,
                chosen=_narrate(captions),
                rejected=_narrate([captions[i] for i in order]),
            )
        )
    return pairs


def write_corpus(pairs: list[Pair], root: Path, fps: float = 2.0) -> VideoCorpus:
    """The pairs' videos as a prepared corpus (``frames/<id>/NN.png``, as prepare_corpus writes
    them), so our path reads and decodes frames the way training does."""
    videos = []
    for row, pair in enumerate(pairs):
        folder = root / "frames" / pair.video_id
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(pair.frames):
            Image.fromarray(frame).save(folder / f"{i:02d}.png", compress_level=1)
        count = len(pair.frames)
        height, width = pair.frames.shape[1:3]
        videos.append(
            PreparedVideo(
                video_id=pair.video_id,
                shard="bench",
                row=row,
                annotation_filename=f"{pair.video_id}.json",
                duration=count / fps,
                fps=fps,
                width=width,
                height=height,
                scenes=[SceneSpan(0, 0.0, count / fps, pair.chosen)],
                permutation=[0],
                frame_scene=[0] * count,
                frame_times=[i / fps for i in range(count)],
            )
        )
    return VideoCorpus(root=root, videos=videos, rows_read=len(videos))


def trl_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """Rows for TRL's vision path: conversational texts plus the frames as PIL images (TRL
    inserts one image placeholder per image before the user's text)."""
    return [
        {
            "images": [Image.fromarray(frame) for frame in pair.frames],
            "prompt": [{"role": "user", "content": pair.prompt}],
            "chosen": [{"role": "assistant", "content": pair.chosen}],
            "rejected": [{"role": "assistant", "content": pair.rejected}],
        }
        for pair in pairs
    ]


def our_rows(pairs: list[Pair]) -> list[dict[str, Any]]:
    """Rows as ``preference_rows`` makes them (ids and texts; frames read per batch)."""
    return [
        {
            "id": f"pair-{p.video_id}",
            "video_id": p.video_id,
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
        }
        for p in pairs
    ]


# -- measuring -------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepMeter(TrainerCallback):
    """Times the optimizer steps after the first ``warmup`` ones and counts what their batches
    fed the model (counted in ``training_step``, not in the collator: accelerate's dataloader
    collates one batch ahead)."""

    def __init__(self, warmup: int, device: torch.device, vision_token_ids: tuple[int, ...]) -> None:
        self.warmup = warmup
        self.device = device
        self.vision_token_ids = torch.tensor(vision_token_ids)
        self.counting = False
        self.start: float | None = None
        self.end: float | None = None
        self.steps = 0
        self.step_seconds: list[float] = []  # each timed step, collation of its batch included
        self.collate_seconds = 0.0  # inside the collator while timing (one batch early: prefetch)
        self._totals: dict[str, Any] = {}

    def _mark(self) -> float:
        _sync(self.device)
        return time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.warmup == 0:
            self.start, self.counting = self._mark(), True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.warmup:
            self.start, self.counting = self._mark(), True
        elif state.global_step > self.warmup:
            previous = self.end if self.end is not None else self.start
            self.end, self.steps = self._mark(), state.global_step - self.warmup
            if previous is not None:
                self.step_seconds.append(self.end - previous)

    def _add(self, key: str, value: Any) -> None:
        # Kept as device tensors: an .item() per step would add a sync inside the timed span.
        self._totals[key] = self._totals[key] + value if key in self._totals else value

    def wrap(self, training_step: Callable[..., Any]) -> Callable[..., Any]:
        def counted_step(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if self.counting:
                ids = inputs["input_ids"]
                self._add("sequences", ids.shape[0])
                self._add("tokens", inputs["attention_mask"].sum())
                self._add("padded_tokens", ids.numel())
                self._add("vision_tokens", torch.isin(ids, self.vision_token_ids.to(ids.device)).sum())
                pixels = inputs.get("pixel_values_videos", inputs.get("pixel_values"))
                if pixels is not None:
                    self._add("vision_patches", pixels.shape[0])
            return training_step(model, inputs, *args, **kwargs)

        return counted_step

    def wrap_collator(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> Callable[..., Any]:
        def timed_collator(rows: list[dict[str, Any]]) -> dict[str, Any]:
            start = time.perf_counter()
            batch = collator(rows)
            if self.counting:
                self.collate_seconds += time.perf_counter() - start
            return batch

        return timed_collator

    def totals(self) -> dict[str, int]:
        return {key: int(value) for key, value in self._totals.items()}

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("no timed steps: need --steps >= 1 after the warm-up")
        return self.end - self.start


def _proc_status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryProbe:
    """Peak memory of one configuration. GPU: ``max_memory_allocated`` after a reset. CPU: the
    kernel's high-water RSS mark (reset through ``/proc/self/clear_refs``) minus the RSS at the
    start, after freed heap has been handed back (``malloc_trim``); None where Linux does not
    allow it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._base_kb: int | None = None
        self.start_mb: float | None = None  # what earlier configurations left behind (should be ~0 on GPU)

    @staticmethod
    def _release() -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass

    def start(self) -> None:
        self._release()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM)
        except OSError:
            self._base_kb = None
            return
        self._base_kb = _proc_status_kb("VmRSS")
        self.start_mb = None if self._base_kb is None else self._base_kb / 1024

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        peak = _proc_status_kb("VmHWM")
        if self._base_kb is None or peak is None:
            return None
        return (peak - self._base_kb) / 1024


# -- configurations --------------------------------------------------------------------------


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


@dataclass
class Result:
    """One configuration's measurements; a sample is one preference pair (two sequences)."""

    config: str
    label: str
    status: str = "ok"  # or "refused by TRL: <message>"
    samples_per_s: float | None = None
    tokens_per_s: float | None = None  # non-padding tokens (text + vision placeholders)
    peak_memory_mb: float | None = None
    memory_at_start_mb: float | None = None  # GPU allocated / process RSS when the configuration began
    precompute_s: float | None = None  # reference log-probs over all pairs, before training
    setup_s: float | None = None  # model load(s) + trainer construction
    timed_steps: int = 0
    timed_s: float | None = None
    median_step_s: float | None = None  # robust to a busy machine, unlike the mean
    collate_share: float | None = None  # fraction of the timed span spent collating (CPU work)
    samples_per_s_with_precompute: float | None = None  # one epoch, precompute amortised over it
    counts: dict[str, int] = field(default_factory=dict)  # summed over the timed batches
    parameters: int | None = None
    trainable_parameters: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


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
    pairs = counts["sequences"] // 2  # a batch is [chosen..., rejected...]
    result.timed_steps, result.timed_s, result.counts = meter.steps, seconds, counts
    result.median_step_s = float(np.median(meter.step_seconds)) if meter.step_seconds else None
    result.collate_share = meter.collate_seconds / seconds
    result.samples_per_s = pairs / seconds
    result.tokens_per_s = counts["tokens"] / seconds
    result.parameters, result.trainable_parameters = _count_parameters(trainer.model)
    per_pair = seconds / pairs + (result.precompute_s or 0.0) / settings.pairs
    result.samples_per_s_with_precompute = 1.0 / per_pair
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


def run_trl_images(
    key: str, model_path: Path, pairs: list[Pair], settings: Settings, workdir: Path, precompute: bool
) -> Result:
    """a / b: TRL's own vision path (DataCollatorForVisionPreference built by TRL)."""
    from datasets import Dataset
    from trl import DPOTrainer

    result = Result(key, CONFIGS[key])
    recipe = make_recipe(settings, precompute)
    device = training_device(recipe)
    dataset = Dataset.from_list(trl_rows(pairs))  # frames stored PNG-encoded, decoded per access
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
    key: str,
    model_path: Path,
    pairs: list[Pair],
    corpus: VideoCorpus,
    settings: Settings,
    workdir: Path,
    precompute: bool,
) -> Result:
    """c / d: our collator through build_dpo_trainer, as train_dpo runs it."""
    result = Result(key, CONFIGS[key])
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
            _sync(device)
            start = time.perf_counter()
            batch_size = recipe.ref_batch_size or settings.batch_size
            values = compute_reference_logps(model, collator, rows, batch_size=batch_size)
            _sync(device)
            result.precompute_s = time.perf_counter() - start
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


# -- report ----------------------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def ratios_against(results: dict[str, Result], base_key: str = "a") -> dict[str, dict[str, float | None]]:
    base = results[base_key]
    out: dict[str, dict[str, float | None]] = {}
    for key, result in results.items():
        if key == base_key or not result.ok or not base.ok:
            continue
        out[key] = {
            "samples_per_s": _ratio(result.samples_per_s, base.samples_per_s),
            "tokens_per_s": _ratio(result.tokens_per_s, base.tokens_per_s),
            "peak_memory": _ratio(result.peak_memory_mb, base.peak_memory_mb),
            "samples_per_s_with_precompute": _ratio(result.samples_per_s_with_precompute, base.samples_per_s),
        }
    return out


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def format_table(results: dict[str, Result], ratios: dict[str, dict[str, float | None]], memory_kind: str) -> str:
    """The table (ratios against a), then the refusal messages and the amortised precompute."""
    header = ["config", "samples/s", "tokens/s", "vision tok/seq", "collating", f"peak {memory_kind}"]
    header += ["ref precompute"]
    header += ["samples/s vs a", "tokens/s vs a", "memory vs a"]
    rows, notes = [], []
    for key, r in results.items():
        name = f"({key}) {r.label}"
        if not r.ok:
            rows.append([name, "refused by TRL (below)"] + [""] * (len(header) - 2))
            notes.append(f"({key}) {r.status}")
            continue
        ratio = ratios.get(key, {})
        sequences = r.counts.get("sequences", 0)
        rows.append(
            [
                name,
                _fmt(r.samples_per_s, ".3f"),
                _fmt(r.tokens_per_s, ".1f"),
                _fmt(r.counts["vision_tokens"] / sequences if sequences else None, ".0f"),
                _fmt(None if r.collate_share is None else 100 * r.collate_share, ".0f", " %"),
                _fmt(r.peak_memory_mb, ".0f", " MB"),
                "-" if r.precompute_s is None else _fmt(r.precompute_s, ".2f", " s"),
                "baseline" if key == "a" else _fmt(ratio.get("samples_per_s"), ".2f", "x"),
                "" if key == "a" else _fmt(ratio.get("tokens_per_s"), ".2f", "x"),
                "" if key == "a" else _fmt(ratio.get("peak_memory"), ".2f", "x"),
            ]
        )
        if r.precompute_s is not None:
            notes.append(
                f"({key}) counting its reference precompute once per epoch: "
                f"{_fmt(r.samples_per_s_with_precompute, '.3f')} samples/s "
                f"({_fmt(ratio.get('samples_per_s_with_precompute'), '.2f', 'x')} a)"
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    table = [line(header), "-" * len(line(header)), *(line(row) for row in rows)]
    return "\n".join(table + ([""] + notes if notes else []))


def parse_args(argv: list[str] | None = None) -> tuple[Settings, list[str], str | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--size", choices=("tiny", "2b"), help="default: 2b on GPU, tiny on CPU")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default: 10 GPU, 24 CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 2)")
    parser.add_argument("--pairs", type=int, help="preference pairs, one video each (default: 64 GPU, 24 CPU)")
    parser.add_argument("--batch-size", type=int, help="pairs per step (default: 4 GPU, 2 CPU)")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
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
    parser.add_argument("--configs", default="abcd", help="subset of a, b, c, d to run (a is the baseline)")
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
    if min(height, width) < 28:
        parser.error("frames must be at least 28x28 (two 14-pixel patches per side)")
    unknown = set(args.configs) - set(CONFIGS)
    if unknown or "a" not in args.configs:
        parser.error("--configs takes letters from abcd and must include a (the baseline)")
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
        run_trl_images("a", model_path, pairs, primer, workdir / "primer", precompute=False)
        run_ours("c", model_path, pairs, corpus, primer, workdir / "primer", precompute=False)
        for key in keys:
            if key in "ab":
                results[key] = run_trl_images(key, model_path, pairs, settings, workdir, precompute=key == "b")
            else:
                results[key] = run_ours(key, model_path, pairs, corpus, settings, workdir, precompute=key == "d")
            r = results[key]
            print(f"  ({key}) {r.label}: {f'{r.samples_per_s:.3f} samples/s' if r.ok else r.status}", flush=True)

    ratios = ratios_against(results)
    memory_kind = "GPU alloc" if settings.device == "cuda" else "RSS delta"
    report = {
        "settings": asdict(settings),
        "device": torch.cuda.get_device_name() if settings.device == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": _trl_version()},
        "memory": "torch.cuda.max_memory_allocated" if settings.device == "cuda" else "peak RSS minus RSS at start",
        "model_build_s": build_s,
        "configurations": {key: {**asdict(r), "ok": r.ok} for key, r in results.items()},
        "ratios_vs_a": ratios,
    }
    print()
    print(format_table(results, ratios, memory_kind))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))
        print(f"\nJSON written to {json_out}")
    return report


def _trl_version() -> str:
    import trl

    return trl.__version__


if __name__ == "__main__":
    main()
