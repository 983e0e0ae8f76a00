"""The ``timewarp`` lmms-eval model: any of our families and checkpoints answering
lmms-eval's requests with our own frame sampling, prompt encoding and generation, so a
public benchmark scores a model exactly as our evaluation would run it.

- ``generate_until``: the request's video (lmms-eval's ``doc_to_visual``) is read as
  :func:`~timewarp.evaluation.answering.video_frames` reads one (``frames_per_video``
  frames spread evenly), the task's prompt is encoded by ``family.encode`` and answered
  greedily by :func:`~timewarp.models.generate.generate_replies`, batched; a reply is cut at
  the task's first ``until`` string.
- ``loglikelihood``: the summed log-probability of the continuation after the video and the
  context, as training scores a completion (the continuation and the end-of-turn token,
  :func:`~timewarp.models.logprobs.completion_logps`); "greedy" when the greedy reply of as
  many tokens is the continuation.

A request must show exactly one video; a missing file is an error naming it.

This module must not import zenml.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from timewarp.evaluation.answering import video_frames
from timewarp.evaluation.lmms.manifest import MANIFEST
from timewarp.evaluation.lmms.references import load_model_reference
from timewarp.models.base import VideoLLMFamily, VideoSample
from timewarp.models.generate import generate_replies
from timewarp.models.inputs import chunks, model_device, model_inputs
from timewarp.models.logprobs import completion_logps

__all__ = ["MissingVideoError", "TimewarpLMM"]

#: Generation length when a task sets none (lmms-eval's own models default to this too).
DEFAULT_MAX_NEW_TOKENS = 32


class MissingVideoError(FileNotFoundError):
    """A benchmark item's video is not where the task's ``doc_to_visual`` says."""


def _flatten(visuals: Any) -> list[Any]:
    if isinstance(visuals, (list, tuple)):
        return [leaf for item in visuals for leaf in _flatten(item)]
    return [visuals]


def _cut(reply: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop:
            reply = reply.split(stop, 1)[0]
    return reply


class TimewarpLMM(lmms):
    """lmms-eval model over a loaded (model, processor, family) triple, or over the model
    ``pretrained`` names (see :func:`~timewarp.evaluation.lmms.references.load_model_reference`;
    the form ``lmms-eval --model timewarp --model_args pretrained=models:/NAME@champion`` uses)."""

    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        *,
        model: Any = None,
        processor: Any = None,
        family: VideoLLMFamily | None = None,
        frames_per_video: int | str = 8,
        batch_size: int | str = 4,
        device: str | None = None,
        dtype: str | None = None,
        **ignored: Any,
    ) -> None:
        super().__init__()
        if (pretrained is None) == (model is None):
            raise ValueError("give either pretrained (a model reference) or a loaded model, processor and family")
        if pretrained is not None:
            model, processor, family = load_model_reference(pretrained, device=device, dtype=dtype)
        elif processor is None or family is None:
            raise ValueError("a loaded model needs its processor and family too")
        self.model, self.processor, self.family = model, processor, family
        self.model.eval()
        self.frames_per_video = int(frames_per_video)
        self.batch_size = 1 if str(batch_size).startswith("auto") else int(batch_size)

    # -- what every request needs -------------------------------------------------------

    def _doc(self, task: str, split: str, doc_id: int) -> Any:
        return self.task_dict[task][split][doc_id]

    def _video_path(self, doc_to_visual: Any, task: str, split: str, doc_id: int) -> str:
        try:
            visuals = _flatten(doc_to_visual(self._doc(task, split, doc_id)))
        except SystemExit as exit:  # TempCompass' doc_to_visual exits on a missing video
            raise MissingVideoError(f"{task} item {doc_id}: {exit.code}") from None
        if len(visuals) != 1 or not isinstance(visuals[0], str):
            raise ValueError(
                f"{task} item {doc_id}: the timewarp adapter answers about exactly one video per item, "
                f"the task gives {len(visuals)} visual(s) ({[type(v).__name__ for v in visuals]})"
            )
        path = visuals[0]
        if not Path(path).is_file():
            raise MissingVideoError(
                f"{task} item {doc_id}: video {path} does not exist; the benchmark's video folder lacks it "
                "(restore the file in the benchmark root's video archive, or remove the item from its rows)"
            )
        return path

    def _sample(
        self, context: str, doc_to_visual: Any, task: str, split: str, doc_id: int, completion: str | None = None
    ) -> VideoSample:
        frames = video_frames(self._video_path(doc_to_visual, task, split, doc_id), self.frames_per_video)
        return VideoSample(frames, context, completion)

    @staticmethod
    def _request_fields(request: Instance) -> tuple[str, Any, str, str, int]:
        context, _, doc_to_visual, doc_id, task, split = request.args
        return context, doc_to_visual, task, split, doc_id

    def _replies(self, samples: Iterable[VideoSample], max_new_tokens: int, total: int) -> list[str]:
        """Greedy replies to ``samples`` (one place to change how the model is asked)."""
        return generate_replies(
            self.model,
            self.processor,
            self.family,
            samples,
            batch_size=self.batch_size,
            max_new_tokens=max_new_tokens,
            total=total,
            desc="lmms generate",
        )

    # -- lmms-eval's interface -------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[str]:
        replies: list[str | None] = [None] * len(requests)
        by_length: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            gen_kwargs = request.args[1] or {}
            by_length.setdefault(int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS), []).append(index)
        for max_new_tokens, indices in by_length.items():
            # A generator: frames are decoded a batch at a time, never a whole benchmark's at once.
            samples = (self._sample(*self._request_fields(requests[index])) for index in indices)
            for index, reply in zip(indices, self._replies(samples, max_new_tokens, len(indices)), strict=True):
                until = (requests[index].args[1] or {}).get("until") or []
                replies[index] = _cut(reply, [until] if isinstance(until, str) else until)
        return [reply if reply is not None else "" for reply in replies]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        import torch

        results: list[tuple[float, bool]] = []
        device = model_device(self.model)
        for chunk in chunks(requests, self.batch_size):
            samples = []
            for context, doc_to_target, doc_to_visual, doc_id, task, split in (request.args for request in chunk):
                continuation = (
                    doc_to_target if isinstance(doc_to_target, str) else doc_to_target(self._doc(task, split, doc_id))
                )
                samples.append(self._sample(context, doc_to_visual, task, split, doc_id, str(continuation)))
            batch = self.family.encode(self.processor, samples)
            inputs = model_inputs(batch, self.model)
            inputs["completion_mask"] = batch["completion_mask"].to(device)
            with torch.no_grad():
                logps = completion_logps(self.model, inputs).float().cpu().tolist()
            # Greedy: the greedy reply, as long as the longest completion, is the continuation.
            longest = int(batch["completion_mask"].sum(dim=1).max())
            greedy = self._replies([VideoSample(s.frames, s.prompt) for s in samples], longest, len(samples))
            for sample, logp, reply in zip(samples, logps, greedy, strict=True):
                results.append((float(logp), reply.strip() == str(sample.completion).strip()))
        return results

    def clean(self) -> None:
        """Keep the model: lmms-eval's default drops every module attribute after a run, but
        this model is the caller's, reused for the next benchmarks."""
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "the timewarp adapter answers single-turn video questions only; multi-round tasks "
            "(output_type generate_until_multi_round) are not supported"
        )


def _register() -> None:
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(MANIFEST, overwrite=True)


_register()
