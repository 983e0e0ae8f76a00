"""The configurations benchmarks/bench_dpo.py compares and what it reports about them: ratios
against the like-for-like baseline, the check that the baseline is like for like, what
differs between each pair of configurations, and the reference pass's cost (the one-off
precompute against a live reference in every step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any


@dataclass(frozen=True)
class Configuration:
    key: str
    label: str
    path: str  # "trl" (TRL's DataCollatorForVisionPreference, frames as images) or "ours" (video collator)
    reference: str  # "live" (a reference forward in every step) or "stored" (computed once, before training)
    frame_stride: int = 1  # TRL path: one image per frame_stride frames of the video

    def frames_shown(self, frames: int) -> str:
        if self.path == "ours":
            return f"{frames} frames as one video"
        if self.frame_stride == 1:
            return f"{frames} frames as images"
        return f"{frames // self.frame_stride} of {frames} frames as images"


BASELINE = "a"
LIVE, STORED = "c", "d"  # our path with a live / a stored reference: the reference pass's cost
CONFIGURATIONS: dict[str, Configuration] = {
    c.key: c
    for c in (
        Configuration("a", "TRL frames-as-images, same vision tokens, live ref", "trl", "live", frame_stride=2),
        Configuration(
            "b", "TRL frames-as-images, same vision tokens, precomputed ref", "trl", "stored", frame_stride=2
        ),
        Configuration("c", "ours (video collator), live ref", "ours", "live"),
        Configuration("d", "ours (video collator), stored ref", "ours", "stored"),
        Configuration("e", "TRL frames-as-images, same frames, live ref (info)", "trl", "live"),
    )
}


@dataclass
class Result:
    """One configuration's measurements; a sample is one preference pair (two sequences)."""

    config: str
    label: str
    frames_shown: str
    reference: str
    status: str = "ok"  # or "refused by TRL: <message>"
    samples_per_s: float | None = None
    samples_per_cpu_s: float | None = None  # pairs per second of this process's CPU time (CPU runs only)
    tokens_per_s: float | None = None  # non-padding tokens (text + vision placeholders)
    vision_tokens_per_sequence: float | None = None  # image / video placeholder tokens
    vision_patches_per_sequence: float | None = None  # rows of pixel_values(_videos)
    text_tokens_per_sequence: float | None = None  # the other non-padding tokens (vision start/end too)
    peak_memory_mb: float | None = None
    memory_at_start_mb: float | None = None  # GPU allocated / process RSS when the configuration began
    precompute_s: float | None = None  # reference log-probs over all pairs, before training
    precompute_cpu_s: float | None = None  # its CPU time (CPU runs only)
    setup_s: float | None = None  # model load(s) + trainer construction
    timed_steps: int = 0
    timed_s: float | None = None
    timed_cpu_s: float | None = None  # CPU runs only
    median_step_s: float | None = None  # robust to a busy machine, unlike the mean
    collate_share: float | None = None  # fraction of the timed span spent collating (CPU work)
    samples_per_s_with_precompute: float | None = None  # one epoch, precompute amortised over it
    counts: dict[str, int] = field(default_factory=dict)  # summed over the timed batches
    parameters: int | None = None
    trainable_parameters: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def new_result(key: str, frames: int) -> Result:
    configuration = CONFIGURATIONS[key]
    return Result(key, configuration.label, configuration.frames_shown(frames), configuration.reference)


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def ratios_against(results: dict[str, Result], base_key: str = BASELINE) -> dict[str, dict[str, float | None]]:
    base = results[base_key]
    out: dict[str, dict[str, float | None]] = {}
    for key, result in results.items():
        if key == base_key or not result.ok or not base.ok:
            continue
        out[key] = {
            "samples_per_s": _ratio(result.samples_per_s, base.samples_per_s),
            "samples_per_cpu_s": _ratio(result.samples_per_cpu_s, base.samples_per_cpu_s),
            "tokens_per_s": _ratio(result.tokens_per_s, base.tokens_per_s),
            "peak_memory": _ratio(result.peak_memory_mb, base.peak_memory_mb),
            "samples_per_s_with_precompute": _ratio(result.samples_per_s_with_precompute, base.samples_per_s),
        }
    return out


def like_for_like(results: dict[str, Result]) -> dict[str, Any] | None:
    """Vision tokens and patches per sequence the baseline and our path were actually fed;
    None unless the baseline and one of our configurations trained."""
    keys = [key for key in (BASELINE, LIVE, STORED) if key in results and results[key].ok]
    if BASELINE not in keys or len(keys) < 2:
        return None
    tokens = {key: results[key].vision_tokens_per_sequence for key in keys}
    patches = {key: results[key].vision_patches_per_sequence for key in keys}
    return {
        "baseline": BASELINE,
        "vision_tokens_per_sequence": tokens,
        "vision_patches_per_sequence": patches,
        "equal": len(set(tokens.values())) == 1 and len(set(patches.values())) == 1,
    }


def require_like_for_like(check: dict[str, Any] | None) -> None:
    if check is not None and not check["equal"]:
        raise RuntimeError(
            f"the baseline ({BASELINE}) was not fed the vision tokens our path was (tokens per sequence "
            f"{check['vision_tokens_per_sequence']}, patches {check['vision_patches_per_sequence']}), so the "
            "ratios against it do not compare like with like. Use an even --frames and a --frame-size whose "
            "sides the image and video processors resize alike (e.g. the defaults)."
        )


def _reference_cost_on(
    live_rate: float | None, stored_rate: float | None, precompute: float, pairs: int
) -> dict[str, float | None]:
    """Per-pair seconds of the reference pass, from pairs/s of c and d and d's precompute
    seconds, all in one time basis (wall or CPU)."""
    live = 1.0 / live_rate if live_rate else None
    stored = 1.0 / stored_rate if stored_rate else None
    per_epoch = live - stored if live is not None and stored is not None else None
    precompute_per_pair = precompute / pairs
    return {
        "precompute_s": precompute,
        "precompute_s_per_pair": precompute_per_pair,
        "train_s_per_pair_live_reference": live,
        "train_s_per_pair_stored_reference": stored,
        "live_reference_s_per_pair_per_epoch": per_epoch,
        # Stored wins once epochs * per_epoch > precompute_per_pair.
        "break_even_epochs": precompute_per_pair / per_epoch if per_epoch is not None and per_epoch > 0 else None,
    }


def reference_cost(results: dict[str, Result], pairs: int) -> dict[str, Any] | None:
    """The stored reference's one-off precompute (d) against a live reference (c), same
    batches otherwise, in wall time and (CPU runs) in CPU time. Break-even: the epochs after
    which computing the reference once costs less than a reference forward in every step
    (None where the live one measured no slower)."""
    live, stored = results.get(LIVE), results.get(STORED)
    if live is None or stored is None or not (live.ok and stored.ok) or stored.precompute_s is None:
        return None
    cost: dict[str, Any] = {
        "pairs": pairs,
        "samples_per_s_live_reference": live.samples_per_s,
        "samples_per_s_stored_reference": stored.samples_per_s,
        "samples_per_s_stored_reference_with_precompute_one_epoch": stored.samples_per_s_with_precompute,
        "wall": _reference_cost_on(live.samples_per_s, stored.samples_per_s, stored.precompute_s, pairs),
        "cpu": None,
    }
    if stored.precompute_cpu_s is not None:
        cost["cpu"] = _reference_cost_on(live.samples_per_cpu_s, stored.samples_per_cpu_s, stored.precompute_cpu_s, pairs)
    return cost


def differences(results: dict[str, Result]) -> dict[str, dict[str, Any]]:
    """For each pair of trained configurations: frames shown, vision and text tokens per
    sequence, and where the reference log-probs come from, each as (first, second), plus
    the names of those that differ."""
    trained = [result for result in results.values() if result.ok]
    out: dict[str, dict[str, Any]] = {}
    for first, second in combinations(trained, 2):
        values = {
            name: (getattr(first, attribute), getattr(second, attribute))
            for name, attribute in (
                ("frames shown", "frames_shown"),
                ("vision tokens/seq", "vision_tokens_per_sequence"),
                ("text tokens/seq", "text_tokens_per_sequence"),
                ("reference", "reference"),
            )
        }
        out[f"{first.config} vs {second.config}"] = {
            **values,
            "differs": [name for name, (x, y) in values.items() if x != y],
        }
    return out


def _fmt(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _describe(name: str, values: tuple[Any, Any]) -> str:
    x, y = values
    if isinstance(x, float):
        return f"{name} {x:.1f} = {y:.1f}" if x == y else f"{name} {x:.1f} vs {y:.1f} ({x - y:+.1f})"
    return f"{name} {x} = {y}" if x == y else f"{name} {x} vs {y}"


def format_differences(pairs: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, values in pairs.items():
        parts = [_describe(attribute, values[attribute]) for attribute in values if attribute != "differs"]
        lines.append(f"{name}: " + "; ".join(parts))
    return lines


def _format_reference_basis(name: str, basis: dict[str, Any]) -> str:
    break_even = basis["break_even_epochs"]
    verdict = (
        f"stored cheaper than live from {break_even:.2f} epochs on"
        if break_even is not None
        else "no break-even (the live reference measured no slower per step)"
    )
    return (
        f"  {name}: precompute {basis['precompute_s']:.2f} s once = {basis['precompute_s_per_pair']:.4f} s/pair; "
        f"training {_fmt(basis['train_s_per_pair_live_reference'], '.4f')} s/pair live, "
        f"{_fmt(basis['train_s_per_pair_stored_reference'], '.4f')} s/pair stored, so a live reference costs "
        f"{_fmt(basis['live_reference_s_per_pair_per_epoch'], '.4f')} s/pair every epoch; {verdict}"
    )


def format_reference_cost(cost: dict[str, Any]) -> list[str]:
    lines = [
        f"reference pass ({STORED} stored vs {LIVE} live, same batches, {cost['pairs']} pairs): samples/s live "
        f"{_fmt(cost['samples_per_s_live_reference'], '.3f')}, stored "
        f"{_fmt(cost['samples_per_s_stored_reference'], '.3f')} (training only), stored with its precompute over "
        f"one epoch {_fmt(cost['samples_per_s_stored_reference_with_precompute_one_epoch'], '.3f')}",
        _format_reference_basis("wall time", cost["wall"]),
    ]
    if cost["cpu"] is not None:
        lines.append(_format_reference_basis("CPU time", cost["cpu"]))
    return lines


def format_table(
    results: dict[str, Result],
    ratios: dict[str, dict[str, float | None]],
    memory_kind: str,
    reference: dict[str, Any] | None,
) -> str:
    """The table (ratios against the baseline), then refusals, the like-for-like check, what
    differs between configurations and the reference pass's cost."""
    header = ["config", "frames shown", "vision tok/seq", "text tok/seq", "samples/s", "samples/CPU-s", "tokens/s"]
    header += ["collating"]
    header += [f"peak {memory_kind}", f"samples/s vs {BASELINE}", f"samples/CPU-s vs {BASELINE}"]
    header += [f"tokens/s vs {BASELINE}", f"memory vs {BASELINE}"]
    rows, notes = [], []
    for key, r in results.items():
        name = f"({key}) {r.label}"
        if not r.ok:
            rows.append([name, r.frames_shown, "refused by TRL (below)"] + [""] * (len(header) - 3))
            notes.append(f"({key}) {r.status}")
            continue
        ratio = ratios.get(key, {})
        base = key == BASELINE
        rows.append(
            [
                name,
                r.frames_shown,
                _fmt(r.vision_tokens_per_sequence, ".0f"),
                _fmt(r.text_tokens_per_sequence, ".1f"),
                _fmt(r.samples_per_s, ".3f"),
                _fmt(r.samples_per_cpu_s, ".3f"),
                _fmt(r.tokens_per_s, ".1f"),
                _fmt(None if r.collate_share is None else 100 * r.collate_share, ".0f", " %"),
                _fmt(r.peak_memory_mb, ".0f", " MB"),
                "baseline" if base else _fmt(ratio.get("samples_per_s"), ".2f", "x"),
                "" if base else _fmt(ratio.get("samples_per_cpu_s"), ".2f", "x"),
                "" if base else _fmt(ratio.get("tokens_per_s"), ".2f", "x"),
                "" if base else _fmt(ratio.get("peak_memory"), ".2f", "x"),
            ]
        )
        if r.precompute_s is not None:
            notes.append(
                f"({key}) counting its reference precompute once per epoch: "
                f"{_fmt(r.samples_per_s_with_precompute, '.3f')} samples/s "
                f"({_fmt(ratio.get('samples_per_s_with_precompute'), '.2f', 'x')} {BASELINE})"
            )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    table = [line(header), "-" * len(line(header)), *(line(row) for row in rows)]
    check = like_for_like(results)
    if check is not None:
        verdict = "equal" if check["equal"] else "NOT EQUAL"
        notes.append(
            f"like for like: vision tokens/seq {check['vision_tokens_per_sequence']}, vision patches/seq "
            f"{check['vision_patches_per_sequence']}: {verdict}"
        )
    notes += format_differences(differences(results))
    if reference is not None:
        notes += format_reference_cost(reference)
    return "\n".join(table + ([""] + notes if notes else []))
