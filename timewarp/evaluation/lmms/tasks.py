"""Public benchmarks scored by lmms-eval's own task definitions, on local roots offline.

A benchmark root is a folder in the benchmark's Hugging Face layout. lmms-eval downloads a
video dataset's repository and extracts its archives into ``$HF_HOME/<cache_dir>`` only
when that folder is missing, and reads rows with ``datasets.load_dataset(dataset_path,
name=...)``. So a local root is used by (1) giving lmms-eval a private ``HF_HOME`` under
the run's output folder, (2) building its ``cache_dir`` there as lmms-eval would from the
downloaded repository (:func:`_prepare_cache`), and (3) passing the task with
``dataset_path`` set to the root (lmms-eval's task-config override, which a group hands
to each of its tasks). Nothing is downloaded for such a benchmark.

A judge model (TempCompass' fallback when its rules cannot read a reply) is off unless a
:class:`JudgeEndpoint` is given: the task modules read their endpoint from the environment
when loaded, so "off" gives them no endpoint and no key, and TempCompass scores an
unreadable reply 0 at once, counted (:mod:`~timewarp.evaluation.lmms.tempcompass`).
Vinoground is scored over the groups present (:mod:`~timewarp.evaluation.lmms.vinoground`).

This module must not import zenml.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from lmms_eval.tasks import TaskManager

from timewarp.evaluation.lmms import export_tasks, tempcompass, vinoground
from timewarp.evaluation.lmms.adapter import TimewarpLMM
from timewarp.evaluation.lmms.names import BENCHMARK_FAMILIES, ROOT_KEYS
from timewarp.evaluation.lmms.results import (
    BenchmarkResults,
    ItemPrediction,
    JudgeEndpoint,
)

__all__ = ["BENCHMARK_FAMILIES", "BenchmarkResults", "ItemPrediction", "JudgeEndpoint", "run_benchmarks"]

#: Environment the judge-using task modules read at load time.
_JUDGE_ENV = ("API_TYPE", "OPENAI_API_URL", "OPENAI_API_KEY")
#: The ``API_TYPE`` that makes those modules build no endpoint (they only know "openai"/"azure").
_JUDGE_OFF = "off"


class _IndexedTaskManager(TaskManager):
    """lmms-eval's TaskManager whose index (task name -> YAML path, from a walk over its
    thousands of YAML files: seconds) is built once per process; it holds no task config,
    so each run still loads every config afresh."""

    _indexes: ClassVar[dict[tuple[str, bool], dict[str, Any]]] = {}

    def initialize_tasks(self, include_path: Any = None, include_defaults: bool = True) -> dict[str, Any]:
        key = (str(include_path), include_defaults)
        if key not in self._indexes:
            self._indexes[key] = super().initialize_tasks(include_path=include_path, include_defaults=include_defaults)
        return copy.deepcopy(self._indexes[key])


def _family(benchmark: str) -> str | None:
    return next((family for family in BENCHMARK_FAMILIES if benchmark.startswith(family)), None)


def _cache_dir_name(family: str) -> str:
    import lmms_eval.tasks
    from lmms_eval import utils

    template = Path(lmms_eval.tasks.__file__).parent / BENCHMARK_FAMILIES[family]
    return str(utils.load_yaml_config(str(template), mode="simple")["dataset_kwargs"]["cache_dir"])


def _check_names(task_manager: Any, benchmarks: list[str]) -> None:
    known = set(task_manager.all_tasks)
    unknown = [name for name in benchmarks if name not in known]
    if not unknown:
        return
    ours = sorted(name for name in known if _family(name))
    hints = {name: difflib.get_close_matches(name, known, n=3) for name in unknown}
    raise ValueError(
        f"lmms-eval {_version()} knows no task or group {unknown} (closest: {hints}). "
        f"Temporal benchmarks it knows: {', '.join(ours)}"
    )


def _prepare_cache(root: Path, cache_dir: Path) -> None:
    """``cache_dir`` as lmms-eval leaves it after downloading ``root``'s repository: every
    zip and tar under ``root`` extracted into it, then (for tasks that read the repository's
    unpacked folders, e.g. MVBench's ``video`` revision) links to ``root``'s top-level
    entries that extraction did not create. A real folder, rebuilt each run: lmms-eval
    downloads when the folder is missing or is itself a link."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True)
    for archive in sorted(root.rglob("*.zip")):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(cache_dir)
    for archive in sorted(root.rglob("*.tar*")):
        with tarfile.open(archive) as opened:
            opened.extractall(cache_dir, filter="data")
    for entry in sorted(root.iterdir()):
        if not (cache_dir / entry.name).exists():
            (cache_dir / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())


def _leaf_configs(task_manager: Any, name: str) -> dict[str, str | None]:
    """Leaf task -> the dataset config it reads (``dataset_name``), for a task, group or tag."""
    from lmms_eval import utils

    entry = task_manager.task_index[name]
    if entry["type"] == "tag":
        members = entry["task"]
    elif entry["type"] == "group":
        members = utils.load_yaml_config(entry["yaml_path"], mode="simple")["task"]
    else:
        return {name: utils.load_yaml_config(entry["yaml_path"], mode="simple").get("dataset_name")}
    leaves: dict[str, str | None] = {}
    for member in members:
        if isinstance(member, str):
            leaves.update(_leaf_configs(task_manager, member))
    return leaves


def _root_configs(root: Path) -> set[str]:
    """Config names the root's README declares (its YAML front matter's ``configs``); a data
    file a config names that is not in the root is an error naming it."""
    import yaml

    text = (root / "README.md").read_text()
    header = text.split("---", 2)[1] if text.startswith("---") else ""
    configs = (yaml.safe_load(header) or {}).get("configs", [])
    for config in configs:
        files = config.get("data_files", [])
        for entry in files if isinstance(files, list) else [files]:
            patterns = entry.get("path", []) if isinstance(entry, dict) else entry
            for pattern in [patterns] if isinstance(patterns, str) else patterns:
                if not any(root.glob(pattern)):
                    raise FileNotFoundError(
                        f"benchmark root {root}: config {config.get('config_name')!r} names data file {pattern}, "
                        "which is not there; restore it or give a complete copy of the benchmark"
                    )
    return {str(config["config_name"]) for config in configs}


def _check_configs(task_manager: Any, benchmark: str, root: Path) -> None:
    wanted = _leaf_configs(task_manager, benchmark)
    have = _root_configs(root)
    missing = {task: config for task, config in wanted.items() if config is not None and config not in have}
    if missing:
        present = sorted(task for task, config in wanted.items() if config in have)
        raise ValueError(
            f"benchmark root {root} for {benchmark} lacks the configs {sorted(set(missing.values()))} "
            f"(tasks {sorted(missing)}); its README declares {sorted(have)}. Add them, or ask for the tasks it "
            f"has: {present}"
        )


def _check_root(benchmark: str, root: Path) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark root for {benchmark}: {root} is not a folder")
    if not (root / "README.md").is_file():
        raise ValueError(
            f"benchmark root for {benchmark}: {root} has no README.md with a YAML `configs:` list (the Hugging Face "
            "layout that names each config's data files); give a folder in the benchmark's hub layout"
        )


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _judge_environment(judge: JudgeEndpoint | None) -> dict[str, str | None]:
    if judge is None:
        return {"API_TYPE": _JUDGE_OFF, "OPENAI_API_URL": None, "OPENAI_API_KEY": None}
    return {"API_TYPE": "openai", "OPENAI_API_URL": judge.url, "OPENAI_API_KEY": os.environ.get(judge.api_key_env)}


def _version() -> str:
    from importlib.metadata import version

    return version("lmms_eval")


def _metric_values(values: Mapping[str, Any]) -> dict[str, float]:
    metrics = {}
    for key, value in values.items():
        metric, _, _filter = key.partition(",")
        if metric == "alias" or "_stderr" in metric or not isinstance(value, (int, float)):
            continue
        metrics[metric] = float(value)
    return metrics


def _item_score(value: Any) -> float | None:
    """A task's per-item metric value: a number, or a dict carrying ``score`` (MVBench)."""
    if isinstance(value, dict):
        value = value.get("score")
    return float(value) if isinstance(value, (int, float)) else None


def _predictions(
    samples: Mapping[str, list[dict[str, Any]]], metric_names: Mapping[str, set[str]]
) -> list[ItemPrediction]:
    predictions = []
    for task, rows in samples.items():
        for row in rows:
            responses = row.get("filtered_resps") or row.get("resps") or [""]
            while isinstance(responses, list) and responses:
                responses = responses[0]
            scores = {
                name: score for name in metric_names.get(task, ()) if (score := _item_score(row.get(name))) is not None
            }
            predictions.append(
                ItemPrediction(task, int(row["doc_id"]), str(row.get("target", "")), str(responses), scores)
            )
    return predictions


def _skip_filelock_patch() -> None:
    """lmms-eval 0.7.3 patches ``filelock._api`` (filelock 3) so ranks of a distributed run
    share dataset locks; filelock 4 has no ``_api`` and the patch fails on import. One process
    loads each dataset once here, so the patch is marked done instead."""
    import importlib.util

    from lmms_eval import evaluator

    if importlib.util.find_spec("filelock._api") is None:
        evaluator._enable_reentrant_filelocks._patched = True


def _add_group_means(metrics: dict[str, dict[str, float]], leaves: Mapping[str, list[str]]) -> None:
    """A group lmms-eval reports nothing for (TVBench's has no ``aggregate_metric_list``)
    gets each metric's unweighted mean over its leaf tasks, the average over tasks the
    benchmark's papers report."""
    for group, tasks in leaves.items():
        if metrics.get(group) or tasks == [group] or not all(task in metrics for task in tasks):
            continue
        names = set.intersection(*(set(metrics[task]) for task in tasks)) if tasks else set()
        names.discard(tempcompass.RULE_UNREAD)  # a count per task, not a score to average
        if names:
            metrics[group] = {name: sum(metrics[task][name] for task in tasks) / len(tasks) for name in sorted(names)}


def _task_entries(
    task_manager: Any, benchmark: str, judge_on: bool, skipped: dict[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """(task or group, task-config override) to run for ``benchmark``: Vinoground with its
    aggregation over the groups present, TempCompass per leaf task with its rules counted
    (a judge-only leaf of a group asked for with the judge off goes to ``skipped``)."""
    from lmms_eval import utils

    family = _family(benchmark)
    if family == "vinoground":
        return [(benchmark, vinoground.task_override())]
    if family != "tempcompass":
        return [(benchmark, {})]
    entries = []
    for task in _leaf_configs(task_manager, benchmark):
        if task in tempcompass.JUDGE_ONLY and not judge_on and task != benchmark:
            skipped[task] = "scored by a judge model only, and the judge is off (give judge_url to score it)"
            continue
        metric_list = utils.load_yaml_config(task_manager.task_index[task]["yaml_path"], mode="full")["metric_list"]
        entries.append((task, tempcompass.task_override(task, metric_list, judge_on=judge_on)))
    return entries


def run_benchmarks(
    model: TimewarpLMM | tuple[Any, Any, Any],
    benchmarks: list[str],
    benchmark_roots: Mapping[str, str | Path] | None = None,
    limit: int | None = None,
    output_dir: str | Path = "lmms-eval",
    judge: JudgeEndpoint | None = None,
    *,
    frames_per_video: int = 8,
    batch_size: int = 4,
) -> BenchmarkResults:
    """Score ``model`` (the adapter, or a (model, processor, family) triple) on lmms-eval
    tasks or groups ``benchmarks``, ``limit`` items per leaf task. A benchmark whose family
    (``tvbench``, ``mvbench``, ``tempcompass``, ``vinoground``) has a root in
    ``benchmark_roots`` (keyed by family or by the exact name) is read from that folder
    offline (module docstring); others come from the hub. Our ``timewarp_normal`` /
    ``timewarp_shuffled`` read a data-stage export folder, ``benchmark_roots["timewarp"]``
    (:mod:`~timewarp.evaluation.lmms.export_tasks`). ``output_dir`` holds lmms-eval's
    private ``HF_HOME`` (extracted videos, dataset cache)."""
    from lmms_eval.evaluator import simple_evaluate

    benchmark_roots = dict(benchmark_roots or {})
    adapter = (
        model
        if isinstance(model, TimewarpLMM)
        else TimewarpLMM(
            model=model[0],
            processor=model[1],
            family=model[2],
            frames_per_video=frames_per_video,
            batch_size=batch_size,
        )
    )
    output_dir = Path(output_dir).resolve()
    hf_home = output_dir / "hf_home"
    hf_home.mkdir(parents=True, exist_ok=True)
    stray = sorted(set(benchmark_roots) - set(ROOT_KEYS) - set(benchmarks))
    if stray:
        raise ValueError(
            f"benchmark_roots names {stray}, which is neither a benchmark asked for "
            f"nor one of {sorted(ROOT_KEYS)}"
        )
    if limit is not None and any(_family(benchmark) == "vinoground" for benchmark in benchmarks):
        # A limit cuts a group's four items apart, and a cut item would count as wrong.
        raise ValueError("vinoground is scored over whole groups (four items each): run it without a limit")
    exports = export_tasks.export_overrides(benchmarks, benchmark_roots)
    roots: dict[str, Path] = {}
    for benchmark in benchmarks:
        family = _family(benchmark)
        if benchmark in exports:
            continue
        root = benchmark_roots.get(benchmark) or (benchmark_roots.get(family) if family else None)
        if root is None:
            continue
        if family is None:
            raise ValueError(f"{benchmark}: local roots are supported for {sorted(BENCHMARK_FAMILIES)} only")
        roots[benchmark] = Path(root).resolve()
        _check_root(benchmark, roots[benchmark])
    for family in BENCHMARK_FAMILIES:
        # One cache folder per family: its benchmarks must share a root.
        family_roots = {str(root) for benchmark, root in roots.items() if _family(benchmark) == family}
        if len(family_roots) > 1:
            raise ValueError(
                f"{family} benchmarks read one video cache, so one root per run; got {sorted(family_roots)}"
            )
    environment = {"HF_HOME": str(hf_home), **_judge_environment(judge)}
    _skip_filelock_patch()
    with _environment(environment):
        task_manager = _IndexedTaskManager("WARNING", include_path=str(export_tasks.TASKS_DIR))
        _check_names(task_manager, benchmarks)
        tasks: list[str | dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for benchmark in benchmarks:
            local = dict(exports.get(benchmark, {}))
            if benchmark in roots:
                _check_configs(task_manager, benchmark, roots[benchmark])
                _prepare_cache(roots[benchmark], hf_home / _cache_dir_name(_family(benchmark)))
                local["dataset_path"] = str(roots[benchmark])
            for name, override in _task_entries(task_manager, benchmark, judge is not None, skipped):
                entry = {**override, **local}
                tasks.append({"task": name, **entry} if entry else name)
        results = simple_evaluate(
            model=adapter,
            tasks=tasks,
            limit=limit,
            task_manager=task_manager,
            log_samples=True,
            bootstrap_iters=0,
            process_docs_parallel=1,
            verbosity="WARNING",
        )
        leaves = {benchmark: sorted(_leaf_configs(task_manager, benchmark)) for benchmark in benchmarks}
    metrics = {task: _metric_values(values) for task, values in results["results"].items()}
    _add_group_means(metrics, leaves)
    samples = results.get("samples") or {}
    return BenchmarkResults(
        metrics=metrics,
        predictions=_predictions(samples, {task: set(values) for task, values in metrics.items()}),
        item_counts={task: len(rows) for task, rows in samples.items()},
        lmms_eval_version=_version(),
        skipped=skipped,
    )
