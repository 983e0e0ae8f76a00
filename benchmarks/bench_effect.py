"""The TimeWarp effect in miniature, over seeds: the default ``timewarp_explicit`` run
(learnable sample, tiny Qwen2-VL, SFT then DPO) with SFT trained to a plateau
(its default recipe) and the continued-SFT control, once per
seed, each in full (no step cache), on the local stack in a ZenML and MLflow store of its
own. Prints, per seed and as mean / standard deviation / range over seeds, the accuracy of
the SFT, DPO and control models on the normal and shuffled benchmarks, the DPO - SFT,
control - SFT and DPO - control differences, the epoch the SFT stage stopped at, and the
wall time of each run. DPO - control is also pooled over the seeds, with a paired 95%
interval clustered by (seed, video), and the verdict says which arm wins, or that the
interval includes 0 (no winner).

    python benchmarks/bench_effect.py [--seeds 0 1 2] [--scorer text_loglik] [--config run.yaml] [--cpu-isa avx2]

``--config`` is a ``timewarp_explicit`` run config whose parameters replace the defaults
(default: none; it must not set ``seed``, ``control``, ``checkpoint_root`` or
``registered_model_name``, which the benchmark sets per run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
METRICS = ("accuracy_normal", "accuracy_shuffled")
ARMS = ("SFT", "DPO", "SFT-cont")
#: The SFT stage's record (timewarp.training.sft) shown per seed.
SFT_RECORD = {"SFT stopped epoch": "validation/stopped_epoch", "SFT best epoch": "validation/best_epoch"}


#: ``--cpu-isa``: the vector instructions torch's own kernels (ATen), MKL and oneDNN may use,
#: so one machine can run with the arithmetic of an older one (the usual source of drift
#: between machines for a fixed seed, thread count and deterministic algorithms).
CPU_ISA = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"},
    "sse": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "DNNL_MAX_CPU_ISA": "SSE41"},
}


def _limit_cpu_isa(name: str) -> str:
    """Set ``--cpu-isa`` before torch loads; returns the capability torch then reports."""
    os.environ.update(CPU_ISA.get(name, {}))
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if name != "native" and capability.lower() != CPU_ISA[name]["ATEN_CPU_CAPABILITY"].lower():
        raise SystemExit(f"--cpu-isa {name}: torch still reports {capability} (was torch imported before?)")
    return capability


def _isolate(work: Path) -> None:
    """A ZenML home of the benchmark's own, set before zenml is imported."""
    os.environ["ZENML_CONFIG_PATH"] = str(work / "zenml")
    os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
    os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)  # the pipeline's recipe paths are relative to the repository


def run_seed(seed: int, work: Path, scorer: str, config: str | None) -> tuple[dict, dict]:
    from zenml.client import Client

    from pipelines.timewarp_explicit import timewarp_explicit

    started = time.perf_counter()
    timewarp_explicit.with_options(enable_cache=False, config_path=config)(
        seed=seed, control="sft_continue", checkpoint_root=str(work / "checkpoints"),
        registered_model_name="timewarp-effect-bench",
    )
    seconds = time.perf_counter() - started
    return seed_results(Client().get_pipeline("timewarp_explicit").last_run, seed, seconds, scorer)


def seed_results(run, seed: int, seconds: float, scorer: str) -> tuple[dict, dict]:
    """One finished run's row (accuracies, differences, intervals, the SFT stage's epochs)
    and its DPO and control item results (for the pooled interval)."""
    from timewarp.evaluation.results import compare

    report = run.steps["compare_models"].outputs["evaluation_report"][0].load()
    control = run.steps["compare_control"].outputs["evaluation_report"][0].load()
    dpo_eval = run.steps["evaluate_trained"].outputs["evaluation"][0].load()
    control_eval = run.steps["evaluate_control"].outputs["evaluation"][0].load()
    versus = compare(control_eval, dpo_eval)
    sft_metrics = run.steps["train_sft"].outputs["sft_model"][0].load().final_metrics
    row: dict = {"seed": seed, "seconds": round(seconds, 1), "run": run.name}
    row.update({name: float(sft_metrics[key]) for name, key in SFT_RECORD.items() if key in sft_metrics})
    for metric in METRICS:
        dpo, cont, head = report.row(scorer, metric), control.row(scorer, metric), versus.row(scorer, metric)
        row[f"SFT {metric}"] = dpo.base.value
        row[f"DPO {metric}"] = dpo.trained.value
        row[f"SFT-cont {metric}"] = cont.trained.value
        row[f"DPO-SFT {metric}"] = dpo.difference.value
        row[f"DPO-SFT {metric} 95%"] = [dpo.difference.low, dpo.difference.high]
        row[f"SFT-cont-SFT {metric}"] = cont.difference.value
        row[f"DPO-SFT-cont {metric}"] = head.difference.value
        row[f"DPO-SFT-cont {metric} 95%"] = [head.difference.low, head.difference.high]
        row["items"] = dpo.base.n
    return row, {"DPO": dpo_eval.results[scorer], "SFT-cont": control_eval.results[scorer]}


def pooled_difference(per_seed: list[tuple[int, dict]]) -> dict[str, dict]:
    """DPO - SFT-cont over every seed's items, per metric: the paired bootstrap of
    :func:`~timewarp.evaluation.report.paired_difference`, each (seed, video) one cluster
    (the seeds are separate runs on separate videos), and the verdict."""
    from timewarp.evaluation.report import paired_difference

    def tagged(seed: int, items: list) -> list:
        return [dataclasses.replace(r, item_id=f"{seed}/{r.item_id}", video_id=f"{seed}/{r.cluster}") for r in items]

    out = {}
    for metric in METRICS:
        variant = metric.removeprefix("accuracy_")
        arms = {arm: [r for seed, results in per_seed for r in tagged(seed, results[arm]) if r.variant == variant]
                for arm in ("DPO", "SFT-cont")}
        estimate = paired_difference(arms["SFT-cont"], arms["DPO"])
        out[metric] = {"value": estimate.value, "low": estimate.low, "high": estimate.high, "n": estimate.n,
                       "verdict": verdict(estimate.low, estimate.high)}
    return out


def verdict(low: float, high: float) -> str:
    """Which arm wins by a 95% interval of DPO - SFT-cont."""
    if low > 0:
        return "DPO wins: the whole interval is above 0"
    if high < 0:
        return "continued SFT wins: the whole interval is below 0"
    return "no winner: the interval includes 0"


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    keys = [k for k, v in rows[0].items() if isinstance(v, float) or k == "seconds"]
    out = {}
    for key in keys:
        values = [float(r[key]) for r in rows]
        out[key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scorer", default="text_loglik")
    parser.add_argument("--work", default=str(REPO / ".timewarp" / "bench" / "effect"))
    parser.add_argument("--out", default=None, help="JSON results (default: WORK/results.json)")
    parser.add_argument("--cpu-isa", default="native", choices=("native", *CPU_ISA),
                        help="the CPU's vector instructions torch, MKL and oneDNN may use (native: all this CPU has; "
                        "avx2 or sse: run with an older machine's arithmetic to see how far a seed moves)")
    parser.add_argument("--config", default=None,
                        help="a timewarp_explicit run config (YAML) whose parameters replace the defaults (default: none, "
                        "the default run, SFT trained to a plateau)")
    args = parser.parse_args()
    config = str(Path(args.config).resolve()) if args.config else None
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _isolate(work)
    capability = _limit_cpu_isa(args.cpu_isa)

    from infra.local_stack import ensure_local_stack, other_store_in_this_checkout

    with other_store_in_this_checkout():
        ensure_local_stack(f"sqlite:///{work / 'mlflow.db'}", work / "mlflow-artifacts")
        runs = [run_seed(seed, work, args.scorer, config) for seed in args.seeds]
    rows = [row for row, _ in runs]
    summary = summarise(rows)
    pooled = pooled_difference([(row["seed"], results) for row, results in runs])
    print(f"\nTimeWarp effect, default timewarp_explicit run, scorer {args.scorer}, seeds {args.seeds}, "
          f"{rows[0]['items']} benchmark items per variant, torch CPU kernels {capability}")
    for row in rows:
        print(f"  seed {row['seed']}: {row['seconds']:.0f} s  " + "  ".join(
            f"{m.removeprefix('accuracy_')}: " + " ".join(f"{arm} {row[f'{arm} {m}']:.1%}" for arm in ARMS)
            for m in METRICS
        ))
    print(f"{'':34} {'mean':>7} {'std':>7} {'min':>7} {'max':>7}")
    for key, stats in summary.items():
        difference = key.startswith(("DPO-SFT", "SFT-cont-SFT"))
        shown = [
            f"{stats[s]:7.0f}" if key == "seconds" else f"{stats[s]:7.1f}" if key in SFT_RECORD
            else f"{stats[s]:{'+' if difference and s != 'std' else ''}7.1%}"
            for s in ("mean", "std", "min", "max")
        ]
        print(f"  {key:32} " + " ".join(shown))
    print(f"DPO - SFT-cont over seeds {args.seeds}, 95% paired interval clustered by (seed, video):")
    for metric, result in pooled.items():
        print(f"  {metric:18} {result['value']:+.1%} [{result['low']:+.1%}, {result['high']:+.1%}]  {result['verdict']}")
    out = Path(args.out) if args.out else work / "results.json"
    out.write_text(json.dumps({"scorer": args.scorer, "cpu_capability": capability, "seeds": rows, "summary": summary,
                               "DPO-SFT-cont pooled": pooled}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
