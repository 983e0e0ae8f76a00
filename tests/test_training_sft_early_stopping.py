"""The SFT stage trained to a plateau: a validation split of whole training videos, the
validation loss after every epoch, transformers' early stopping keeping the best epoch,
and what the run records; the reproducibility settings (threads, determinism, seed)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from safetensors.torch import load_file  # noqa: E402

from timewarp.data.ingest import list_shards  # noqa: E402
from timewarp.data.prepare import PrepareConfig, prepare_corpus  # noqa: E402
from timewarp.data.sample import make_sample  # noqa: E402
from timewarp.generation.datasets import SFTDataset  # noqa: E402
from timewarp.generation.template import TemplateGenerator  # noqa: E402
from timewarp.models.qwen2_vl import family  # noqa: E402
from timewarp.training.collator import sft_rows  # noqa: E402
from timewarp.training.config import DPORecipe, SFTRecipe, continued_sft_recipe  # noqa: E402
from timewarp.training.sft import train_sft  # noqa: E402
from timewarp.training.validation import validation_split  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """6 generated videos, 3 questions each, and a tiny Qwen2-VL."""
    root = tmp_path_factory.mktemp("sft-plateau")
    make_sample(root, videos=6, seed=5)
    corpus, _ = prepare_corpus(list_shards(str(root)), root / "corpus", PrepareConfig(frames_per_video=4))
    examples = SFTDataset(TemplateGenerator().training_text(corpus.videos, 3).sft, media_root=str(corpus.root))
    return corpus, examples, str(family.make_tiny(root / "tiny", seed=0))


def test_recipe_validates_the_early_stopping_fields(tmp_path):
    with pytest.raises(ValueError, match="needs a validation split"):
        SFTRecipe(early_stopping_patience=2)
    with pytest.raises(ValueError, match="validation_fraction"):
        SFTRecipe(validation_fraction=1.0)
    with pytest.raises(ValueError, match="early_stopping_patience"):
        SFTRecipe(validation_fraction=0.1, early_stopping_patience=0)
    with pytest.raises(ValueError, match="torch_threads"):
        SFTRecipe(torch_threads=0)
    with pytest.raises(ValueError, match="early_stopping_threshold"):
        SFTRecipe(validation_fraction=0.1, early_stopping_patience=2, early_stopping_threshold=-0.1)
    args = SFTRecipe.cpu_test(validation_fraction=0.2, early_stopping_patience=2).to_trl(tmp_path)
    assert (args.eval_strategy, args.save_strategy) == ("epoch", "epoch")
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    # The default recipe trains to the plateau (sft_cpu_plateau.yaml, its older name, repeats
    # it); the control arm never stops early (DPO's fixed budget).
    plateau = SFTRecipe.from_yaml("configs/recipes/sft_cpu_tiny.yaml")
    assert plateau.early_stopping_patience and plateau.validation_fraction > 0 and plateau.torch_threads
    assert plateau.early_stopping_threshold > 0 and plateau.deterministic
    assert SFTRecipe.from_yaml("configs/recipes/sft_cpu_plateau.yaml") == plateau
    control = continued_sft_recipe(plateau, DPORecipe.from_yaml("configs/recipes/dpo_cpu_tiny.yaml"), 100)
    assert control.early_stopping_patience is None and control.validation_fraction == 0.0


def test_validation_split_holds_out_whole_videos_stably():
    rows = [{"id": f"{v}-{q}", "video_id": f"video{v}"} for v in range(40) for q in range(3)]
    split = validation_split(rows, 0.25, seed=7)
    held = {row["video_id"] for row in split.validation}
    assert held and held.isdisjoint({row["video_id"] for row in split.train})
    assert len(split.train) + len(split.validation) == len(rows) and split.validation_videos == len(held)
    assert 3 <= len(held) <= 20  # about a quarter of 40
    # The same on every call and machine (a hash, not a process-salted random), and a video
    # keeps its side when the data grows.
    assert validation_split(list(reversed(rows)), 0.25, seed=7).validation_videos == len(held)
    grown = validation_split(rows + [{"id": "new", "video_id": "video99"}], 0.25, seed=7)
    assert held <= {row["video_id"] for row in grown.validation}
    assert validation_split(rows, 0.25, seed=8).validation != split.validation
    # A tiny fraction still holds out one video; a huge one keeps one to train on.
    assert validation_split(rows, 1e-9, seed=7).validation_videos == 1
    assert validation_split(rows, 0.999999, seed=7).validation_videos == 39
    with pytest.raises(ValueError, match="at least 2 videos"):
        validation_split(rows[:3], 0.5, seed=7)


def test_sft_stops_at_the_plateau_and_keeps_the_best_epoch(tmp_path, data):
    corpus, examples, tiny = data
    # A rate high enough that 6 videos are overfit within a few epochs: the loss on the
    # held-out video turns up, the rate is cut, and 2 epochs without a new best stop the run.
    recipe = SFTRecipe.cpu_test(
        learning_rate=2e-2, lora=None, warmup_ratio=0.0, num_train_epochs=12, validation_fraction=0.3,
        early_stopping_patience=2, save_total_limit=1, torch_threads=1, deterministic=True, seed=3,
        lr_scheduler_type="reduce_lr_on_plateau", lr_scheduler_kwargs={"patience": 0, "factor": 0.25},
    )
    result = train_sft(tiny, examples, corpus, recipe, tmp_path / "sft")
    record = result.final_metrics
    split = validation_split(sft_rows(examples), 0.3, seed=3)
    assert record["validation/examples"] == len(split.validation) > 0
    assert record["validation/train_examples"] + record["validation/examples"] == len(examples.pairs)
    assert record["validation/early_stopping_patience"] == 2
    assert record["reproducibility/torch_threads"] == 1 and record["reproducibility/deterministic"] == 1.0
    assert torch.get_num_threads() == 1
    best, stopped = record["validation/best_epoch"], record["validation/stopped_epoch"]
    assert record["validation/stopped_early"] == 1.0 and stopped < 12
    assert stopped == pytest.approx(best + 2)  # two epochs without improvement, then stop
    # Each of them cut the rate to a quarter.
    rates = {round(e["epoch"] + 0.49): e["learning_rate"] for e in result.history}
    assert rates[round(best) + 1] == pytest.approx(2e-2 * 0.25) and rates[round(best) + 2] == pytest.approx(2e-2 / 16)
    assert record["validation/best_eval_loss"] < record["validation/last_eval_loss"]
    # The saved model is the best epoch's checkpoint, not the last epoch's weights.
    steps_per_epoch = -(-len(split.train) // recipe.per_device_train_batch_size)
    best_checkpoint = tmp_path / "sft" / f"checkpoint-{round(best * steps_per_epoch)}"
    saved, kept = load_file(tmp_path / "sft" / "model.safetensors"), load_file(best_checkpoint / "model.safetensors")
    assert saved.keys() == kept.keys() and all(torch.equal(saved[k], kept[k]) for k in saved)
    assert "validation/stopped_epoch" in (tmp_path / "sft" / "README.md").read_text()


def test_a_loss_that_only_creeps_down_counts_as_the_plateau(tmp_path, data):
    """early_stopping_threshold: an epoch that lowers the validation loss by less than the
    threshold is not a new best for early stopping, so the run ends at the plateau."""
    corpus, examples, tiny = data
    recipe = SFTRecipe.cpu_test(
        learning_rate=1e-2, lora=None, warmup_ratio=0.0, num_train_epochs=12, validation_fraction=0.3,
        early_stopping_patience=2, early_stopping_threshold=10.0, save_total_limit=1, torch_threads=1, seed=3,
    )
    record = train_sft(tiny, examples, corpus, recipe, tmp_path / "sft").final_metrics
    # Epoch 1 sets the first best; no later epoch can beat it by 10, so 2 more end the run.
    assert record["validation/stopped_epoch"] == 3.0 and record["validation/stopped_early"] == 1.0
    assert record["validation/early_stopping_threshold"] == 10.0


def test_a_seed_repeats_exactly(tmp_path, data):
    """Fixed threads, deterministic algorithms and the seed: two runs, the same weights."""
    corpus, examples, tiny = data
    recipe = SFTRecipe.cpu_test(
        learning_rate=1e-2, lora=None, max_steps=3, save_steps=100, validation_fraction=0.3, torch_threads=1,
        deterministic=True, seed=11,
    )
    first = train_sft(tiny, examples, corpus, recipe, tmp_path / "first")
    torch.manual_seed(12345)  # whatever ran before, the run seeds itself
    second = train_sft(tiny, examples, corpus, recipe, tmp_path / "second")
    a, b = load_file(first.output_dir / "model.safetensors"), load_file(second.output_dir / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.final_metrics["reproducibility/seed"] == 11
    assert [e["loss"] for e in first.history] == [e["loss"] for e in second.history]
