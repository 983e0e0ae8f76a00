"""TempCompass through lmms-eval's own rules, with its judge fallback on or off, and
counted.

lmms-eval 0.7.3 scores ``multi-choice``, ``yes_no`` and ``caption_matching`` replies by
rules and asks a GPT judge (``requests.post`` to ``OPENAI_API_URL``) for a reply the rules
cannot read; ``captioning`` is scored by the judge only. An absent judge is retried 10
times, 1-2 s apart, then scores the item 0 (``captioning``: -1, also not right).
:func:`task_override` runs each task with a private copy of lmms-eval's ``utils`` module
(its rules and prompts unchanged) and adds the metric :data:`RULE_UNREAD`, the items the
rules could not read. With the judge on, those items go to the judge as in lmms-eval; with
it off, the copy's judge call answers "no judge" at once, so such an item scores 0, as
lmms-eval's would after its retries, without the retries and with no request made.
:data:`JUDGE_ONLY` tasks cannot be scored with the judge off and are left out, reported.

This module must not import zenml.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["JUDGE_ONLY", "RULE_UNREAD", "task_override"]

#: Tasks lmms-eval scores by the judge alone.
JUDGE_ONLY = ("tempcompass_captioning",)
#: Items whose reply the rules could not read (the judge scored them, or, off, they score 0).
RULE_UNREAD = "rule_unread_items"
_PROCESS_RESULTS = {
    "tempcompass_multi_choice": "tempcompass_process_results_multi_choice",
    "tempcompass_yes_no": "tempcompass_process_results_yes_no",
    "tempcompass_caption_matching": "tempcompass_process_results_caption_matching",
    "tempcompass_captioning": "tempcompass_process_results_captioning",
}


def _lmms_eval_utils(judge_on: bool) -> ModuleType:
    """A fresh copy of lmms-eval's TempCompass ``utils`` (it reads ``HF_HOME`` and the judge
    endpoint from the environment on load, as the task's own copy does)."""
    import lmms_eval.tasks

    path = Path(lmms_eval.tasks.__file__).parent / "tempcompass" / "utils.py"
    spec = importlib.util.spec_from_file_location("timewarp_tempcompass_utils", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not judge_on:
        # lmms-eval's outcome once its retries are spent: no judge reply, rating 0.
        module.get_eval_result = lambda prompt, maxtry=10, sys_prompt=None: (None, 0)
    return module


def task_override(task: str, base_metric_list: list[dict[str, Any]], *, judge_on: bool) -> dict[str, Any]:
    """Task-config entries for ``task``: lmms-eval's ``process_results`` from the copy (module
    docstring) plus :data:`RULE_UNREAD`, and the task's own metrics (``base_metric_list``,
    from its YAML) plus that count."""
    if task in JUDGE_ONLY and not judge_on:
        raise ValueError(f"{task} is scored by a judge model only; give a judge endpoint or leave it out")
    score = getattr(_lmms_eval_utils(judge_on), _PROCESS_RESULTS[task])

    def process_results(doc: dict, results: list[str]) -> dict[str, Any]:
        record = score(doc, results)
        # Captioning has no rules: every reply is the judge's to read.
        record[RULE_UNREAD] = int(not record["avg_accuracy"].get("match_success", False))
        return record

    return {
        "process_results": process_results,
        "metric_list": [
            *base_metric_list,
            {"metric": RULE_UNREAD, "aggregation": lambda counts: float(sum(counts)), "higher_is_better": False},
        ],
    }
