"""Writing generated data in the formats its consumers read: TRL's conversational
preference dataset, LLaVA-Hound's DPO jsonl, and the paper's json files."""

from __future__ import annotations

import json
from typing import Any

import fsspec

from timewarp.generation.datasets import MCQBenchmark, PreferenceDataset, SFTDataset


def video_reference(video_id: str) -> str:
    """The video of an item, relative to its dataset's ``media_root``."""
    return f"videos/{video_id}.mp4"


def trl_preference_rows(dataset: PreferenceDataset) -> list[dict[str, Any]]:
    """TRL's conversational preference format; the prompt shows the ORIGINAL video."""
    return [
        {
            "id": pair.id,
            "video_id": pair.video_id,
            "video": video_reference(pair.video_id),
            "prompt": [
                {"role": "user", "content": [{"type": "video", "text": None}, {"type": "text", "text": pair.question}]}
            ],
            "chosen": [{"role": "assistant", "content": [{"type": "text", "text": pair.chosen}]}],
            "rejected": [{"role": "assistant", "content": [{"type": "text", "text": pair.rejected}]}],
            "question_type": pair.question_type,
        }
        for pair in dataset.pairs
    ]


def llava_hound_rows(dataset: PreferenceDataset) -> list[dict[str, Any]]:
    """LLaVA-Hound DPO records. The scores are placeholders, as in the paper's release:
    the DPO loss does not read them."""
    return [
        {
            "id": pair.id,
            "video": pair.video_id,
            "prompt": pair.question,
            "answer": pair.chosen,
            "chosen": pair.chosen,
            "chosen_score": 1.0,
            "rejected": pair.rejected,
            "rejected_score": 0.0,
        }
        for pair in dataset.pairs
    ]


def paper_sft_rows(dataset: SFTDataset) -> list[dict[str, Any]]:
    return [{"id": p.id, "video": p.video_id, "question": p.question, "answer": p.answer} for p in dataset.pairs]


def paper_preference_rows(dataset: PreferenceDataset) -> list[dict[str, Any]]:
    return [
        {"id": p.id, "video": p.video_id, "question": p.question, "answer": p.chosen, "chosen": p.chosen,
         "rejected": p.rejected}
        for p in dataset.pairs
    ]


def paper_benchmark_rows(benchmark: MCQBenchmark) -> list[dict[str, Any]]:
    rows = []
    for item in benchmark.items:
        index = benchmark.answer_index(item)
        rows.append(
            {
                "id": item.id,
                "video": item.video_id,
                "question": item.question_with_options(),
                "answer": "ABCD"[index],
                "options": item.options,
                "answer_index": index,
                "question_type": item.question_type,
            }
        )
    return rows


def export_text(
    export_dir: str,
    sft: SFTDataset,
    preferences: PreferenceDataset,
    normal: MCQBenchmark,
    shuffled: MCQBenchmark,
) -> list[str]:
    """Write every format under ``export_dir`` (local or fsspec URI); return the paths."""
    import datasets

    fs, root = fsspec.core.url_to_fs(export_dir)
    root = root.rstrip("/")
    fs.makedirs(root, exist_ok=True)
    written = []

    def write(name: str, text: str) -> None:
        with fs.open(f"{root}/{name}", "w") as handle:
            handle.write(text)
        written.append(name)

    write("temporal_sft.json", json.dumps(paper_sft_rows(sft), indent=1))
    write("temporal_pref.json", json.dumps(paper_preference_rows(preferences), indent=1))
    write("timewarp_normal_benchmark.json", json.dumps(paper_benchmark_rows(normal), indent=1))
    write("timewarp_shuffled_benchmark.json", json.dumps(paper_benchmark_rows(shuffled), indent=1))
    write("llava_hound_dpo.jsonl", "".join(json.dumps(row) + "\n" for row in llava_hound_rows(preferences)))
    dataset = datasets.Dataset.from_list(trl_preference_rows(preferences))
    dataset.save_to_disk(export_dir.rstrip("/") + "/trl_preference")
    written.append("trl_preference/")
    return written
