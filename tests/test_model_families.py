"""Video-LLM family adapters (LLaVA-OneVision, Video-LLaVA, InternVL, VideoLLaMA3).

For each family: a tiny random-weight checkpoint built offline loads through the Auto
classes like a hub checkpoint; ``encode`` pads a batch and marks exactly the answers'
tokens; the forward pass scores the answers; and one optimizer step raises their
likelihood, with gradients reaching the vision tower.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from timewarp.models.base import VideoSample  # noqa: E402

FAMILY_MODULES = ("llava_onevision", "video_llava", "internvl", "video_llama_3")

#: Vision tensors for 2 videos of 4 frames of 64x96: the processors keep the tiny towers'
#: sizes (56 px squares, or 56x84 for VideoLLaMA3) instead of upscaling to hub sizes.
EXPECTED_VISION_SHAPES: dict[str, dict[str, tuple[int, ...]]] = {
    "llava_onevision": {"pixel_values_videos": (2, 4, 3, 56, 56)},
    "video_llava": {"pixel_values_videos": (2, 4, 3, 56, 56)},
    "internvl": {"pixel_values": (8, 3, 56, 56)},  # frames of all videos, one tile each
    # 4 frames x (4x6 patches of 14 px) a video, patches flattened to 3*14*14 values.
    "video_llama_3": {"pixel_values_videos": (2 * 4 * 24, 588), "video_grid_thw": (2, 3)},
}


def _family(module: str) -> Any:
    """The module's FAMILY, or a skip saying precisely why it cannot run here."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    family = importlib.import_module(f"timewarp.models.{module}").FAMILY
    missing = [t for t in family.model_types if t not in CONFIG_MAPPING_NAMES]
    if missing:
        import transformers

        pytest.skip(f"transformers {transformers.__version__} has no model type(s) {missing}")
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed: transformers' video processors cannot be built")
    return family


def _samples() -> list[VideoSample]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(4, 64, 96, 3), dtype=np.uint8)
    # Solid colours with a repeated frame: VideoLLaMA3's token compression drops its tokens.
    colours = np.array([[255, 0, 0], [255, 0, 0], [0, 0, 255], [0, 255, 0]], dtype=np.uint8)
    solid = np.broadcast_to(colours[:, None, None, :], (4, 64, 96, 3)).copy()
    return [
        VideoSample(noise, "Which scene comes first?", "The red scene comes first, then the blue one."),
        VideoSample(solid, "After blue?", "Yes."),
    ]


def _completion_logprob(model: Any, batch: dict[str, Any]) -> Any:
    """Mean log-probability of each row's completion tokens."""
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    logits = model(**inputs).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    mask = batch["completion_mask"][:, 1:].float()
    token_logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(dim=1) / mask.sum(dim=1)


@pytest.mark.parametrize("module", FAMILY_MODULES)
def test_family_builds_loads_encodes_and_trains(module: str, tmp_path: Path) -> None:
    family = _family(module)
    assert family.name == module
    assert family.model_types and family.vision_keys

    ckpt = family.make_tiny(tmp_path / module, seed=0)
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
    model, processor = family.load(str(ckpt))
    assert model.config.model_type in family.model_types
    # The family's real processor class, rebuilt from the saved files.
    assert type(processor).__module__.startswith(f"transformers.models.{module}.")
    tokenizer = processor.tokenizer
    # The module names the training code freezes / targets exist, once each.
    short_names = [name.rsplit(".", 1)[-1] for name, _ in model.named_modules()]
    for module_name in (family.vision_tower_module, family.language_model_module, *family.projector_modules):
        assert short_names.count(module_name) == 1, module_name

    # The saved chat template renders exactly what encode feeds the model.
    samples = _samples()
    question, answer = samples[0].prompt, samples[0].completion
    assert answer is not None
    user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}
    assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    prompt = family.render_prompt(processor, question)
    assert processor.apply_chat_template([user], add_generation_prompt=True, tokenize=False) == prompt
    assert processor.apply_chat_template([user, assistant], tokenize=False) == prompt + family.render_completion(
        processor, answer
    )

    batch = family.encode(processor, samples)
    for key in ("input_ids", "attention_mask", "completion_mask", *family.vision_keys):
        assert key in batch, key
    for key, shape in EXPECTED_VISION_SHAPES[module].items():
        assert tuple(batch[key].shape) == shape, key
    input_ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    assert input_ids.shape == attention.shape == completion.shape and input_ids.shape[0] == 2
    lengths = attention.sum(dim=1)
    assert lengths[0] != lengths[1], "rows of different lengths, so one row is padded"

    media_ids = {getattr(model.config, "image_token_id", None), getattr(model.config, "video_token_id", None)}
    media_ids.discard(None)
    for row, sample in enumerate(samples):
        assert sample.completion is not None
        real, comp = attention[row].bool(), completion[row].bool()
        assert not (comp & ~real).any(), "padding is never part of a completion"
        assert (input_ids[row][~real] == tokenizer.pad_token_id).all()
        positions = comp.nonzero().flatten()
        # The completion is the last real tokens of the row and decodes to the answer + end of turn.
        assert torch.equal(positions, real.nonzero().flatten()[-len(positions) :])
        text = tokenizer.decode(input_ids[row][comp])
        assert text == family.render_completion(processor, sample.completion)
        assert sample.completion in text
        is_media = torch.isin(input_ids[row], torch.tensor(sorted(media_ids)))
        assert is_media[real & ~comp].sum() > 0, "the prompt holds the expanded video"
        assert not is_media[comp].any()

    # No answer: nothing to score.
    unanswered = family.encode(processor, [VideoSample(samples[1].frames, samples[1].prompt)])
    assert unanswered["completion_mask"].sum() == 0
    with pytest.raises(ValueError, match="uint8"):
        family.encode(processor, [VideoSample(samples[0].frames.astype(np.float32), question, answer)])

    # Forward: finite mean log-probabilities of the answers; one step makes them likelier.
    torch.manual_seed(0)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    logprob = _completion_logprob(model, batch)
    assert logprob.shape == (2,) and torch.isfinite(logprob).all() and (logprob < 0).all()
    loss = -logprob.mean()
    loss.backward()
    tower = f".{family.vision_tower_module}."
    vision_grads = [p.grad for name, p in model.named_parameters() if tower in f".{name}" and p.grad is not None]
    assert any(g.abs().sum() > 0 for g in vision_grads), "gradients reach the vision tower"
    optimizer.step()
    optimizer.zero_grad()
    with torch.no_grad():
        new_loss = -_completion_logprob(model, batch).mean()
    assert torch.isfinite(new_loss) and new_loss < loss.detach()

    # Loading a checkpoint of another family through this one fails clearly.
    other = importlib.import_module(f"timewarp.models.{FAMILY_MODULES[FAMILY_MODULES.index(module) - 1]}").FAMILY
    with pytest.raises(ValueError, match="serves"):
        other.load(str(ckpt))


@pytest.mark.parametrize("module", FAMILY_MODULES)
def test_make_tiny_is_deterministic(module: str, tmp_path: Path) -> None:
    family = _family(module)
    a = family.make_tiny(tmp_path / "a", seed=3)
    b = family.make_tiny(tmp_path / "b", seed=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_tiny_qwen2_vl_spells_each_sample_colour_with_one_token(tmp_path: Path) -> None:
    from transformers import AutoProcessor

    from timewarp.models.qwen2_vl import family
    from timewarp.data.sample import PALETTE

    folder = family.make_tiny(tmp_path / "qwen2_vl", seed=0)
    tokenizer = AutoProcessor.from_pretrained(folder).tokenizer
    for colour in PALETTE:
        # An answer starts a turn with the capitalised colour; questions name it mid-sentence.
        assert tokenizer.tokenize(f"{colour.capitalize()} scene.")[0] == colour.capitalize()
        assert f"Ġ{colour}" in tokenizer.tokenize(f"after the {colour} scene")


def test_every_registered_family_declares_the_whole_contract() -> None:
    from timewarp.models.base import VideoLLMFamily
    from timewarp.models.registry import FAMILY_MODULES as REGISTERED
    from timewarp.models.registry import family_by_name

    for name in REGISTERED:
        family = family_by_name(name)
        assert isinstance(family, VideoLLMFamily), name
        assert family.name == name
        assert isinstance(family.language_model_module, str) and family.language_model_module
        assert isinstance(family.vision_tower_module, str) and family.vision_tower_module
        assert family.projector_modules and all(isinstance(m, str) for m in family.projector_modules)
        assert isinstance(family.unused_modules, tuple)


def test_a_family_without_its_lora_target_declaration_is_refused() -> None:
    from timewarp.models.video_chat import ChatVideoFamily

    class NoLanguageModel(ChatVideoFamily):
        """Everything a chat family needs except ``language_model_module``."""

        name = "no_language_model"
        model_types = ("no_language_model",)
        vision_keys = ("pixel_values_videos",)
        vision_tower_module = "vision_tower"
        projector_modules = ("multi_modal_projector",)
        unused_modules = ()

        def render_prompt(self, processor: Any, question: str) -> str:
            return question

        def render_completion(self, processor: Any, answer: str) -> str:
            return answer

        def make_tiny(self, out_dir: str | Path, *, seed: int = 0) -> Path:
            return Path(out_dir)

    # Without the declaration LoRA could not be kept off the vision tower: refused outright.
    refused = r"NoLanguageModel does not implement the VideoLLMFamily contract: it lacks \['language_model_module'\]"
    with pytest.raises(TypeError, match=refused):
        NoLanguageModel()

    class Complete(NoLanguageModel):
        language_model_module = "language_model"

    assert Complete().language_model_module == "language_model"
