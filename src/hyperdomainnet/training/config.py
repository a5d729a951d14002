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

Precision = Literal["auto", "fp32", "bf16", "fp16"]
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
    precision: Precision = Field("auto", description="auto: bf16 autocast where the device computes it natively "
                                 "(AMX CPUs, CUDA capability ≥ 8.0), else fp32; a run records the resolved value")
    log_every: int = Field(10, gt=0)
    save_every: int = Field(50, gt=0)
    grid_every: int = Field(50, gt=0)
    grid_samples: int = Field(4, gt=0)
    grid_truncation: float = 0.7
    tensorboard: bool = False
    wandb: bool = False
    low_memory: bool = Field(False, description="recompute the adapted generator's blocks in the backward pass "
                             "(text adaptation also halves its micro-batch when a step runs out of device memory)")
    channels_last: bool | None = Field(None, description="channels-last activations (default: on CUDA and the CPU)")
    compile: bool = Field(False, description="torch.compile the synthesis network")

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
    targets: list[str] = Field(default_factory=list, description="several targets trained at once, each "
                               "'Target' (from source) or 'Target - Source'; empty: the single target")
    parameterization: str = "domain_vector"
    placement: Literal["after_demod", "before_demod"] = "after_demod"
    phase: str | None = Field(None, description="layer group for full fine-tuning")
    auto_layer_k: int = Field(0, ge=0, description="adaptive layer selection: keep k layers (0 = off)")
    auto_layer_iters: int = Field(0, ge=0, description="W+ SGD steps per selection (0 = off)")
    auto_layer_batch: int = Field(8, gt=0)
    clip_device: str | None = Field(None, description="device of the CLIP encoders (default: the generator's)")
    micro_batch: int | None = Field(None, gt=0, description="render and encode at most this many samples at a "
                                    "time; the gradient is the full batch's")

    def prompt_pairs(self) -> list[tuple[str, str]]:
        """(target, source) of every target: ``targets`` (the last " - " separates a given
        source) or the single ``target``."""
        if not self.targets:
            return [(self.target, self.source)]
        pairs = [item.rpartition(" - ") for item in self.targets]
        return [(t.strip(), s.strip()) if sep else (s.strip(), self.source) for t, sep, s in pairs]

    @model_validator(mode="after")
    def _check_prompts_and_losses(self) -> TextAdaptConfig:
        for target, source in self.prompt_pairs():
            if not target.strip():
                raise ValueError("the target prompt is empty; give --target \"a description of the new domain\"")
            if not source.strip():
                raise ValueError("the source prompt is empty; give --source \"a description of the generator's domain\"")
            if source.strip().lower() == target.strip().lower():
                raise ValueError(f"source and target prompts are identical ({target!r}); the text direction would be zero")
        unknown = set(self.losses) - set(TEXT_LOSSES)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)}; known: {', '.join(TEXT_LOSSES)}")
        if self.auto_layer_iters > 0 and self.auto_layer_k == 0:
            raise ValueError("adaptive layer selection (auto_layer_iters > 0) needs auto_layer_k > 0 layers to keep")
        if self.losses.get("indomain") and self.batch < 2:
            raise ValueError("the indomain loss compares pairs of samples; use --batch 2 or more")
        return self


PRESET_COMMANDS = {"text": "hdn adapt text", "image": "hdn adapt image",
                   "multi_text": "hdn hypernet train", "multi_image": "hdn hypernet train --images"}


def _read_preset(name: str) -> dict[str, Any]:
    text = resources.files("hyperdomainnet.configs").joinpath(f"{name}.yaml").read_text()
    return dict(yaml.safe_load(text) or {})


def preset_names(trainer: str | None = None) -> list[str]:
    """Names of the bundled presets (YAML files in hyperdomainnet/configs), optionally of one trainer."""
    names = sorted(p.name[:-5] for p in resources.files("hyperdomainnet.configs").iterdir()
                   if p.name.endswith(".yaml"))
    return [n for n in names if trainer is None or _read_preset(n).get("trainer") == trainer]


def load_preset(name: str, trainer: str | None = None) -> dict[str, Any]:
    """The settings of a bundled preset (its ``trainer`` key checked against ``trainer``)."""
    if name not in preset_names():
        raise HDNError(f"unknown preset {name!r}; known: {', '.join(preset_names(trainer))}")
    settings = _read_preset(name)
    kind = settings.pop("trainer", None)
    if trainer is not None and kind != trainer:
        raise HDNError(f"preset {name!r} is for `{PRESET_COMMANDS.get(kind, kind)}`; presets for this "
                       f"command: {', '.join(preset_names(trainer))}")
    return settings


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


IMAGE_LOSSES = ("direction", "clip_within", "clip_ref", "l2_rec", "lpips_rec", "global", "indomain",
                "offsets_l2", "offsets_l1")
IM2IM_SINGLE_LOSSES = {"direction": 1.0, "clip_within": 0.5, "clip_ref": 30.0, "l2_rec": 10.0, "lpips_rec": 10.0}


class ImageAdaptConfig(TrainConfig):
    """One-shot image-driven adaptation (MindTheGap losses on domain modulation).

    Defaults are the official ``im2im_single`` config: 100 steps, batch 4, lr 0.01, the five
    MindTheGap terms, II2S inversion of the reference with 1000 steps and λ_p = 1e-3.
    """

    image: str = Field("", description="path of the reference image")
    steps: int = Field(100, gt=0)
    lr: float = Field(0.01, gt=0)
    losses: dict[str, float] = Field(default_factory=lambda: dict(IM2IM_SINGLE_LOSSES))
    grid_truncation: float = 0.5
    parameterization: Literal["domain_vector", "style_offset"] = "domain_vector"
    placement: Literal["after_demod", "before_demod"] = "after_demod"
    invert_steps: int = Field(1000, ge=0, description="II2S steps for the reference image")
    lambda_p: float = Field(1e-3, ge=0, description="II2S P-norm weight")
    fit: Literal["crop", "pad"] = "crop"
    align: bool = Field(False, description="FFHQ-align the reference face first (face-alignment extra)")
    lpips_random_backbone: bool = Field(False, description="LPIPS with a random backbone (offline tests only)")
    pnorm_samples: int | None = Field(None, ge=2, description="mapped latents for the P-norm statistics "
                                      "(None: the inversion default)")

    @model_validator(mode="after")
    def _check_image_and_losses(self) -> ImageAdaptConfig:
        if not self.image.strip():
            raise ValueError("no reference image; give --image ref.png")
        unknown = set(self.losses) - set(IMAGE_LOSSES)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)}; known: {', '.join(IMAGE_LOSSES)}")
        if self.losses.get("indomain") and self.batch < 2:
            raise ValueError("the indomain loss compares pairs of samples; use --batch 2 or more")
        return self


HYPERNET_TEXT_LOSSES = ("direction", "global", "tt_direction", "offsets_l2", "offsets_l1")
HYPERNET_IMAGE_LOSSES = ("direction", "clip_within", "clip_ref", "l2_rec", "lpips_rec", "tt_direction",
                         "offsets_l2", "offsets_l1")


class HypernetConfig(TrainConfig):
    """HyperDomainNet training on many domains: a text domain list (``domains``) or reference
    images (``images``). Defaults are the official ``td_multiple`` config (DESIGN §6).

    ``batch`` is the global batch: under ``torchrun`` each of the N processes renders batch / N.
    ``quirks="official"`` reproduces the released trainer where it differs from ours (see
    ``training/multi_text.py``).
    """

    domains: str | None = Field(None, description="'Target - Source' list file or built-in list name")
    images: str | None = Field(None, description="text file listing reference images, one per line")
    test_domains: str = Field("test-close", description="list whose prompts (unseen in training) join the previews")
    steps: int = Field(10000, gt=0)
    batch: int = Field(8, ge=2)
    lr: float = Field(5e-5, gt=0)
    losses: dict[str, float] = Field(default_factory=lambda: {"direction": 1.0, "tt_direction": 0.4})
    mapper_clip: str = Field("ViT-B/32", description="CLIP encoder of the hypernetwork's input")
    width: int = Field(512, gt=0)
    depth: int = Field(4, gt=0)
    head_depth: int = Field(2, gt=0)
    convex_hull: bool = Field(True, description="Dirichlet(2/B) convex-hull mixing of the batch's domains")
    resample: bool = Field(True, description="resample target text embeddings within a cosine bound")
    resample_cos: float = Field(0.95, ge=-1, le=1, description="lower cosine bound of the resampling")
    crop: float = Field(0.8, gt=0, le=1, description="side of the random square crops before CLIP (1 = off)")
    quirks: Literal["corrected", "official"] = "corrected"
    preview_seen: int = Field(2, ge=0, description="training domains shown in preview grids")
    preview_unseen: int = Field(2, ge=0, description="test_domains prompts shown in preview grids")
    grid_every: int = Field(100, gt=0)
    save_every: int = Field(1000, gt=0)
    invert_steps: int = Field(1000, ge=0, description="II2S steps per reference image")
    lambda_p: float = Field(1e-3, ge=0, description="II2S P-norm weight")
    fit: Literal["crop", "pad"] = "crop"
    lpips_random_backbone: bool = Field(False, description="LPIPS with a random backbone (offline tests only)")
    pnorm_samples: int | None = Field(None, ge=2, description="mapped latents for the P-norm statistics")

    @model_validator(mode="after")
    def _check_inputs_and_losses(self) -> HypernetConfig:
        if (self.domains is None) == (self.images is None):
            raise ValueError("give either --domains (a 'Target - Source' list) or --images (a list of "
                             "reference images), not both or neither")
        known = HYPERNET_TEXT_LOSSES if self.images is None else HYPERNET_IMAGE_LOSSES
        unknown = set(self.losses) - set(known)
        if unknown:
            raise ValueError(f"unknown loss {sorted(unknown)} for this variant; known: {', '.join(known)}")
        if self.images is not None and (self.convex_hull or self.resample or self.crop < 1):
            raise ValueError("convex_hull, resample and crop augment text domains only; switch them off for "
                             "--images (the im2im_multiple_base preset does)")
        return self
