"""Materializers for the generated datasets: parquet records, metadata on what made them,
and a dashboard table of sample items beside their frames."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._html import page, table
from materializers._previews import FramePreview
from materializers._records import load_header, load_records, save_records, write_html
from timewarp.generation.datasets import GenerationLog, MCQBenchmark, PreferenceDataset, SFTDataset
from timewarp.generation.records import OPTION_LETTERS, GenerationRejection, MCQItem, PreferencePair, SFTPair

PREVIEW_ITEMS = 12


def _generator_metadata(generator: dict[str, Any]) -> dict[str, Any]:
    return {f"generator_{k}": v for k, v in generator.items() if isinstance(v, (str, int, float, bool))}


def _item_rows(items: list[Any], preview: FramePreview, cells, shuffled: bool = False) -> str:
    return "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in cells(item)) + f"<td>{preview.strip(item.video_id, shuffled)}</td></tr>"
        for item in items[:PREVIEW_ITEMS]
    )


class SFTDatasetMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (SFTDataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: SFTDataset) -> None:
        save_records(self.uri, "pairs", data.pairs, {"media_root": data.media_root, "generator": data.generator})

    def load(self, data_type: type[Any]) -> SFTDataset:
        header = load_header(self.uri)
        return SFTDataset(load_records(self.uri, "pairs", SFTPair), header["media_root"], header["generator"])

    def extract_metadata(self, data: SFTDataset) -> dict[str, Any]:
        return {"pairs": len(data.pairs), "videos": len({p.video_id for p in data.pairs}),
                "question_types": dict(Counter(p.question_type for p in data.pairs)),
                **_generator_metadata(data.generator)}

    def save_visualizations(self, data: SFTDataset) -> dict[str, VisualizationType]:
        preview = FramePreview(data.media_root)
        rows = _item_rows(data.pairs, preview, lambda p: (html.escape(p.question_type), html.escape(p.question), html.escape(p.answer)))
        body = f"<p>{len(data.pairs)} pairs.</p><table><tr><th>type</th><th>question</th><th>answer</th><th>frames</th></tr>{rows}</table>"
        return {write_html(self.uri, "sft.html", page("SFT pairs", body)): VisualizationType.HTML}


class PreferenceDatasetMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PreferenceDataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: PreferenceDataset) -> None:
        save_records(self.uri, "pairs", data.pairs, {"media_root": data.media_root, "generator": data.generator})

    def load(self, data_type: type[Any]) -> PreferenceDataset:
        header = load_header(self.uri)
        return PreferenceDataset(load_records(self.uri, "pairs", PreferencePair), header["media_root"], header["generator"])

    def extract_metadata(self, data: PreferenceDataset) -> dict[str, Any]:
        return {"pairs": len(data.pairs), "videos": len({p.video_id for p in data.pairs}),
                "question_types": dict(Counter(p.question_type for p in data.pairs)),
                **_generator_metadata(data.generator)}

    def save_visualizations(self, data: PreferenceDataset) -> dict[str, VisualizationType]:
        preview = FramePreview(data.media_root)
        rows = _item_rows(
            data.pairs, preview,
            lambda p: (html.escape(p.question), html.escape(p.chosen), html.escape(p.rejected),
                       html.escape(str([i + 1 for i in p.permutation]))),
        )
        body = (f"<p>{len(data.pairs)} pairs. Chosen follows the true scene order, rejected the shuffled "
                f"order; the model sees the original video (frames shown).</p><table><tr><th>question</th>"
                f"<th>chosen</th><th>rejected</th><th>shuffled order</th><th>frames</th></tr>{rows}</table>")
        return {write_html(self.uri, "preferences.html", page("Preference pairs", body)): VisualizationType.HTML}


class MCQBenchmarkMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (MCQBenchmark,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: MCQBenchmark) -> None:
        save_records(self.uri, "items", data.items,
                     {"variant": data.variant, "media_root": data.media_root, "generator": data.generator})

    def load(self, data_type: type[Any]) -> MCQBenchmark:
        header = load_header(self.uri)
        return MCQBenchmark(load_records(self.uri, "items", MCQItem), header["variant"], header["media_root"],
                            header["generator"])

    def extract_metadata(self, data: MCQBenchmark) -> dict[str, Any]:
        return {"variant": data.variant, "items": len(data.items), "videos": len({i.video_id for i in data.items}),
                "answer_positions": dict(Counter(OPTION_LETTERS[data.answer_index(i)] for i in data.items)),
                "question_types": dict(Counter(i.question_type for i in data.items)),
                **_generator_metadata(data.generator)}

    def save_visualizations(self, data: MCQBenchmark) -> dict[str, VisualizationType]:
        preview = FramePreview(data.media_root)

        def cells(item: MCQItem):
            answer = data.answer_index(item)
            options = "<br>".join(
                ("<b>" if k == answer else "") + f"{OPTION_LETTERS[k]}. {html.escape(o)}" + ("</b>" if k == answer else "")
                for k, o in enumerate(item.options)
            )
            return html.escape(item.question), options

        rows = _item_rows(data.items, preview, cells, shuffled=data.variant == "shuffled")
        body = (f"<p>{len(data.items)} items, scored on the {data.variant} video (answer in bold).</p>"
                f"<table><tr><th>question</th><th>options</th><th>frames</th></tr>{rows}</table>")
        title = f"TimeWarp benchmark ({data.variant})"
        return {write_html(self.uri, "benchmark.html", page(title, body)): VisualizationType.HTML}


class GenerationLogMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (GenerationLog,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: GenerationLog) -> None:
        save_records(self.uri, "rejections", data.rejections)

    def load(self, data_type: type[Any]) -> GenerationLog:
        return GenerationLog(load_records(self.uri, "rejections", GenerationRejection))

    def extract_metadata(self, data: GenerationLog) -> dict[str, Any]:
        return {"rejected": len(data.rejections), "by_task": dict(Counter(r.task for r in data.rejections))}

    def save_visualizations(self, data: GenerationLog) -> dict[str, VisualizationType]:
        body = f"<p>{len(data.rejections)} item(s) not generated.</p>" + table(
            ["video", "task", "reason", "reply"],
            [(r.video_id, r.task, r.reason, r.reply_text[:300]) for r in data.rejections[:200]],
        )
        return {write_html(self.uri, "generation_log.html", page("Generation rejections", body)): VisualizationType.HTML}
