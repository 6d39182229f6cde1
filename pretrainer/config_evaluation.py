"""Config groups of what measures a model without training it: the compute planner
(`plan`) and the zero-shot minimal-pair evaluation (`zero_shot`). Part of the one schema in
`pretrainer.config` (its `Config` holds them); here to keep that module short."""

from __future__ import annotations

from dataclasses import dataclass, field

from pretrainer.errors import ConfigError

ZERO_SHOT_SUITES = ("auto", "synthetic", "none")


@dataclass
class PlanConfig:
    """`pretrainer plan`: how to turn the compute count into an expected wall time."""

    tokens_per_s: float | None = None  # a throughput per GPU you measured or expect ...
    flops_per_s: float | None = None  # ... or a sustained FLOP rate per GPU (e.g. 40% of its peak) ...
    measure_steps: int = 0  # ... or > 0: time this many training steps of the real model on trainer.device
    gpus: int = 1  # processes to plan for (torchrun's nproc x nodes): per-GPU memory and wall time at that scale

    def __post_init__(self) -> None:
        if self.measure_steps < 0 or self.gpus < 1:
            raise ConfigError(f"plan.measure_steps must be >= 0 and plan.gpus >= 1, got {self.measure_steps}, "
                              f"{self.gpus}")


@dataclass
class ZeroShotConfig:
    """Minimal pairs scored after pretraining, before fine-tuning (`pretrainer.evaluation`)."""

    # auto: the embedded grammar's pairs when data=synthetic | synthetic: always | none
    suite: str = "auto"
    per_phenomenon: int = 200  # embedded pairs per phenomenon
    blimp_files: list[str] = field(default_factory=list)  # BLiMP-format JSONL files (or dirs of them) to score too
    # > 0: also score the pairs every this many pretraining steps, a curve of when the model
    # learns each phenomenon (summary.json's zero_shot.curve, the report's zero_shot_curve.png).
    # Each point costs one scoring pass (0.7-4.5 s on one CPU core for the embedded suite). 0: after pretraining only.
    every: int = 0

    def __post_init__(self) -> None:
        if self.suite not in ZERO_SHOT_SUITES:
            raise ConfigError(f"zero_shot.suite={self.suite!r} is not valid; choose one of "
                              f"{', '.join(ZERO_SHOT_SUITES)}")
        if self.per_phenomenon < 1:
            raise ConfigError(f"zero_shot.per_phenomenon must be positive, got {self.per_phenomenon}")
        if self.every < 0:
            raise ConfigError(f"zero_shot.every must be >= 0 (0: score after pretraining only), got {self.every}")
