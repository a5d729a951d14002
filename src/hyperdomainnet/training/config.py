"""Training configurations (pydantic) and named YAML presets mirroring the official configs.

A run's configuration = preset (optional) ← config file (optional) ← command-line overrides.
Everything the official single-domain configs set can be expressed here; the preset files in
``hyperdomainnet/configs`` reproduce them (see DESIGN §5).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import HDNError

Precision = Literal["fp32", "bf16", "fp16"]
TEXT_LOSSES = ("direction", "global", "indomain", "offsets_l2", "offsets_l1")
CONFIG_NAME = "config.yaml"


class TrainConfig(BaseModel):
    """Fields shared by every trainer: optimisation, sampling, logging, checkpointing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    generator: str = Field("ffhq", description="zoo name, checkpoint path, or random:<size> spec")
    steps: int = Field(300, gt=0)
    batch: int = Field(4, gt=0)
    lr: float = Field(0.1, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    mixing: float = Field(0.9, ge=0, le=1, description="style-mixing probability")
    noise_mode: Literal["random", "const", "none"] = "random"
    clip: str = Field("ViT-B/32:1.0,ViT-B/16:1.0", description="CLIP ensemble spec")
    losses: dict[str, float] = Field(default_factory=lambda: {"direction": 1.0})
    seed: int = 0
    device: str = "auto"
    precision: Precision = "fp32"
    log_every: int = Field(10, gt=0)
    save_every: int = Field(50, gt=0)
    grid_every: int = Field(50, gt=0)
    grid_samples: int = Field(4, gt=0)
    grid_truncation: float = 0.7
    tensorboard: bool = False
    wandb: bool = False

    @field_validator("losses")
    @classmethod
    def _finite_coefficients(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or all(c == 0 for c in value.values()):
            raise ValueError("at least one loss needs a non-zero coefficient")
        return value


class TextAdaptConfig(TrainConfig):
    """Text-driven single-domain adaptation (StyleGAN-NADA loss + indomain regulariser)."""

    source: str = "Photo"
    target: str = ""
    parameterization: str = "domain_vector"
    placement: Literal["after_demod", "before_demod"] = "after_demod"
    phase: str | None = Field(None, description="layer group for full fine-tuning")
    auto_layer_k: int = Field(0, ge=0, description="adaptive layer selection: keep k layers (0 = off)")
    auto_layer_iters: int = Field(0, ge=0, description="W+ SGD steps per selection (0 = off)")
    auto_layer_batch: int = Field(8, gt=0)

    @model_validator(mode="after")
    def _check_prompts_and_losses(self) -> TextAdaptConfig:
        if not self.target.strip():
            raise ValueError("the target prompt is empty; give --target \"a description of the new domain\"")
        if not self.source.strip():
            raise ValueError("the source prompt is empty; give --source \"a description of the generator's domain\"")
        if self.source.strip().lower() == self.target.strip().lower():
            raise ValueError(f"source and target prompts are identical ({self.target!r}); the text direction would be zero")
        unknown = set(self.losses) - set(TEXT_LOSSES)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)}; known: {', '.join(TEXT_LOSSES)}")
        if self.auto_layer_iters > 0 and self.auto_layer_k == 0:
            raise ValueError("adaptive layer selection (auto_layer_iters > 0) needs auto_layer_k > 0 layers to keep")
        if self.losses.get("indomain") and self.batch < 2:
            raise ValueError("the indomain loss compares pairs of samples; use --batch 2 or more")
        return self


def preset_names() -> list[str]:
    """Names of the bundled presets (YAML files in hyperdomainnet/configs)."""
    return sorted(p.name[:-5] for p in resources.files("hyperdomainnet.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The settings of a bundled preset, as a dict of config fields."""
    if name not in preset_names():
        raise HDNError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    text = resources.files("hyperdomainnet.configs").joinpath(f"{name}.yaml").read_text()
    return dict(yaml.safe_load(text) or {})


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML config file (e.g. a previous run's config.yaml)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise HDNError(f"cannot read config file {path} ({exc.strerror}); check the path") from None
    except yaml.YAMLError as exc:
        raise HDNError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise HDNError(f"config file {path} must hold a mapping of settings")
    return data


def build_config(cls: type[TrainConfig], *layers: dict[str, Any]) -> TrainConfig:
    """Merge settings layers (later wins; ``None`` values are skipped) and validate as ``cls``."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    try:
        return cls(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        raise HDNError(f"invalid setting {where + ': ' if where else ''}{message}") from None
