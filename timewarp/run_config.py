"""The settings of a run, grouped by stage and validated once, when the pipeline is composed.

Users still set the pipelines' flat parameters (the documented contract: ``sample_videos:``,
``gate_margin:`` ... in a run YAML); each pipeline builds these groups from them first, so a
bad value fails with pydantic's message before any step runs, and the stages take a group
whole instead of a long row of positional arguments.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from timewarp.evaluation.scoring import SCORERS
from timewarp.generation.config import GeneratorConfig
from timewarp.tracking.promotion import GATED_METRICS, GatePolicy



class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(_Settings):
    """Shards -> corpus -> split (``timewarp_data`` and the data stage of every pipeline)."""

    finevideo_root: str | None = Field(None, description="FineVideo-layout shards (any fsspec URI); unset: a generated sample")
    max_videos: int | None = Field(None, ge=1, description="the first rows read, over all shards")
    max_seconds: float = Field(105.0, gt=0, description="scenes are kept up to this time")
    min_scenes: int = Field(2, ge=1, description="videos with fewer scenes are rejected")
    seed: int = Field(0, description="shuffles, split and sample")
    frames_per_video: int = Field(8, ge=1, description="frames stored per video")
    render_shuffled_videos: bool = Field(False, description="also encode the shuffled videos as mp4")
    export_dir: str | None = Field(None, description="write the paper's layout here")
    sample_videos: int = Field(24, ge=1, description="videos of the generated sample")
    sample_preset: str = Field("small", description="the generated sample's preset")
    integer_timestamps: bool = Field(False, description="the released scripts' whole-second scene times")
    shard_groups: int = Field(1, ge=1, description="parallel prepare_videos steps")
    workers: int | None = Field(None, ge=1, description="processes per prepare_videos step; unset: one per core")
    benchmark_fraction: float = Field(0.25, gt=0, lt=1, description="share of videos held out for the benchmarks")
    paper_overlap: bool = Field(False, description="let benchmark videos also give training data, as the paper did")


class GenerationSettings(_Settings):
    """Training text and benchmarks from the corpus."""

    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    questions_per_video: int = Field(3, ge=1, description="training questions per video")
    mcq_per_video: int = Field(3, ge=1, description="benchmark questions per video")


class TrainingSettings(_Settings):
    """The base model, the SFT stage, DPO and the control arm."""

    base_model: str | None = None
    model_family: str = "qwen2_vl"
    sft_stage: bool | None = None
    control: Literal["sft_continue"] | None = None
    sft_recipe: str = "configs/recipes/sft_cpu_tiny.yaml"
    dpo_recipe: str = "configs/recipes/dpo_cpu_tiny.yaml"
    recipe_overrides: dict[str, Any] | None = None
    checkpoint_root: str = ".timewarp/checkpoints"

    @property
    def with_sft(self) -> bool:
        """SFT first: as asked, else when no ``base_model`` is given (a random tiny model must
        learn the task before DPO can refine it)."""
        return self.sft_stage if self.sft_stage is not None else self.base_model is None

    @model_validator(mode="after")
    def _control_needs_sft(self) -> TrainingSettings:
        if self.control and not self.with_sft:
            raise ValueError("control: sft_continue continues the SFT stage; it needs sft_stage")
        return self


class EvaluationSettings(_Settings):
    scorers: tuple[str, ...] = ("text_loglik",)

    @model_validator(mode="after")
    def _known_scorers(self) -> EvaluationSettings:
        unknown = [s for s in self.scorers if s not in SCORERS]
        if unknown or not self.scorers:
            raise ValueError(f"scorers must be a non-empty subset of {SCORERS}, got {list(self.scorers)}")
        return self


class PromotionSettings(_Settings):
    gate_scorer: str = "text_loglik"
    gate_metrics: tuple[str, ...] = GATED_METRICS
    gate_margin: float = 0.0
    registered_model_name: str = "timewarp-explicit"

    def policy(self) -> GatePolicy:
        return GatePolicy(self.gate_scorer, self.gate_metrics, self.gate_margin)

    @model_validator(mode="after")
    def _valid_policy(self) -> PromotionSettings:
        self.policy()  # GatePolicy's own checks: metrics and margin
        return self


class PublicBenchmarkSettings(_Settings):
    """Public benchmarks through lmms-eval on the trained model and the registry's champion
    after registration (``timewarp_explicit``, retraining); off when ``public_benchmarks`` is
    empty. Task names are checked against lmms-eval's index when the scoring step starts."""

    public_benchmarks: tuple[str, ...] = Field(
        (), description="lmms-eval tasks or groups (tvbench, mvbench, tempcompass, vinoground, timewarp_normal, ...)")
    benchmark_roots: dict[str, str] | None = Field(
        None, description="benchmark (or family, or 'timewarp' for an export folder) -> a local copy in its hub layout")
    public_benchmark_limit: int | None = Field(None, ge=1, description="items per task; unset: all")

    @model_validator(mode="after")
    def _consistent(self) -> PublicBenchmarkSettings:
        from timewarp.evaluation.lmms.names import EXPORT_FAMILY, EXPORT_VARIANTS, ROOT_KEYS

        names = self.public_benchmarks
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"public_benchmarks must name distinct lmms-eval tasks or groups, got {list(names)}")
        roots = self.benchmark_roots or {}
        if roots and not names:
            raise ValueError("benchmark_roots is set but public_benchmarks is empty: name the benchmarks to run")
        stray = sorted(set(roots) - set(ROOT_KEYS) - set(names))
        if stray:
            raise ValueError(f"benchmark_roots names {stray}: neither one of public_benchmarks nor of {list(ROOT_KEYS)}")
        rootless = [name for name in names if name in EXPORT_VARIANTS and name not in roots and EXPORT_FAMILY not in roots]
        if rootless:
            raise ValueError(f"{rootless} read a data-stage export folder: set benchmark_roots {{{EXPORT_FAMILY}: <export_dir>}}")
        if self.public_benchmark_limit is not None and "vinoground" in names:
            raise ValueError("vinoground is scored over whole groups: leave public_benchmark_limit unset")
        return self


class VariantsSettings(_Settings):
    """The other arms' data: LLaVA-Hound's DPO set (Base-DPO, Combined) and the model's own
    answers (TimeWarp-Implicit)."""

    hound_records: str | None = Field(
        None, description="LLaVA-Hound's sft_dpo_17k.jsonl (any fsspec URI); unset: a generated miniature")
    hound_frames: str | None = Field(None, description="the folder of its per-video frame folders")
    hound_max_pairs: int | None = Field(None, ge=1, description="the first valid pairs read")
    implicit_max_new_tokens: int = Field(48, ge=1, description="longest self-generated answer, in tokens")

    @model_validator(mode="after")
    def _records_with_frames(self) -> VariantsSettings:
        if (self.hound_records is None) != (self.hound_frames is None):
            raise ValueError("hound_records and hound_frames go together: the pairs and their frame folders")
        return self


class _RunSettings(_Settings):
    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> Any:
        """The groups from a pipeline's flat parameters (each name belongs to one group)."""
        groups: dict[str, dict[str, Any]] = {name: {} for name in cls.model_fields}
        owners = {field: group for group in groups for field in GROUPS[group].model_fields}
        unknown = sorted(set(parameters) - set(owners))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; the parameters are {sorted(owners)}")
        for name, value in parameters.items():
            groups[owners[name]][name] = value
        return cls(**groups)


class ExplicitRunSettings(_RunSettings):
    """Every group of a ``timewarp_explicit`` run, checked against each other."""

    data: DataSettings
    generation: GenerationSettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    promotion: PromotionSettings
    public: PublicBenchmarkSettings

    @model_validator(mode="after")
    def _gate_scorer_is_scored(self) -> ExplicitRunSettings:
        if self.promotion.gate_scorer not in self.evaluation.scorers:
            raise ValueError(
                f"gate_scorer {self.promotion.gate_scorer!r} is not one of the scorers {list(self.evaluation.scorers)}"
            )
        return self


class ArmRunSettings(ExplicitRunSettings):
    """A run of one of the paper's other arms as its own pipeline (``timewarp_implicit``,
    ``timewarp_base_dpo``, ``timewarp_combined``): an explicit run plus the arm's data."""

    variants: VariantsSettings


class VariantsRunSettings(_RunSettings):
    """A ``timewarp_variants`` run: every arm, no registration."""

    data: DataSettings
    generation: GenerationSettings
    training: TrainingSettings
    evaluation: EvaluationSettings
    variants: VariantsSettings


#: Each group of the run settings and its settings class.
GROUPS: dict[str, type[_Settings]] = {
    "data": DataSettings, "generation": GenerationSettings, "training": TrainingSettings,
    "evaluation": EvaluationSettings, "promotion": PromotionSettings, "variants": VariantsSettings,
    "public": PublicBenchmarkSettings,
}
