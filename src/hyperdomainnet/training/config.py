"""Training configurations (pydantic) and named YAML presets mirroring the official configs.

Each setting is declared once, as a field of a config model: type, default, description and
range. The training commands derive their command-line options from these fields
(``cli/train_options.py``): a new field is a new option. A field whose option is not spelled
``--<name-with-dashes>`` names it in ``json_schema_extra={"option": "--loss"}``.

A run's configuration = preset or the model's defaults ← config file ← command-line options;
options holding a mapping (``--loss NAME=COEF``) change the keys they name and keep the others.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from ..errors import ConfigError, first_line
from ..seeds import MAX_SEED

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Beta = Annotated[float, Field(ge=0, lt=1)]
CONFIG_NAME = "config.yaml"

TEXT_LOSSES = ("direction", "global", "indomain", "offsets_l2", "offsets_l1")
IMAGE_LOSSES = ("direction", "clip_within", "clip_ref", "l2_rec", "lpips_rec", "global", "indomain",
                "offsets_l2", "offsets_l1")
IM2IM_SINGLE_LOSSES = {"direction": 1.0, "clip_within": 0.5, "clip_ref": 30.0, "l2_rec": 10.0, "lpips_rec": 10.0}
HYPERNET_TEXT_LOSSES = ("direction", "global", "tt_direction", "offsets_l2", "offsets_l1")
HYPERNET_IMAGE_LOSSES = ("direction", "clip_within", "clip_ref", "l2_rec", "lpips_rec", "tt_direction",
                         "offsets_l2", "offsets_l1")
LOSS_OPTION = {"option": "--loss"}


def losses_help(known: tuple[str, ...]) -> str:
    """Description of a ``losses`` field: its option syntax and the known names."""
    return f"loss coefficient NAME=COEF, repeatable; changes only the named terms (0 = off): {', '.join(known)}"


def check_losses(losses: dict[str, float], known: tuple[str, ...], batch: int) -> None:
    """Raise unless every loss is known and the pairwise indomain term has pairs to compare."""
    unknown = set(losses) - set(known)
    if unknown:
        raise ValueError(f"unknown loss {sorted(unknown)}; known: {', '.join(known)}")
    if losses.get("indomain") and batch < 2:
        raise ValueError("the indomain loss compares pairs of samples; use --batch 2 or more")


class TrainConfig(BaseModel):
    """Fields shared by every trainer: optimisation, sampling, logging, checkpointing.

    Every float must be finite (``allow_inf_nan=False``): NaN or ±inf settings are refused.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    generator: str = Field("ffhq", description="zoo name, checkpoint path, or random:<size> spec")
    steps: int = Field(300, gt=0, description="optimisation steps")
    batch: int = Field(4, gt=0, description="latents per step")
    lr: float = Field(0.1, gt=0, description="Adam learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam betas B1,B2, each in [0, 1)")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay")
    mixing: float = Field(0.9, ge=0, le=1, description="style-mixing probability")
    noise_mode: Literal["random", "const", "none"] = Field("random", description="generator noise")
    clip: str = Field("ViT-B/32:1.0,ViT-B/16:1.0", description="CLIP ensemble of the losses, NAME:WEIGHT,… "
                      "(replaces the preset's ensemble), e.g. ViT-B/32:1.0,ViT-B/16:1.0 or random:tiny")
    losses: dict[str, float] = Field(default_factory=lambda: {"direction": 1.0},
                                     description=losses_help(TEXT_LOSSES), json_schema_extra=LOSS_OPTION)
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed")
    device: str = Field("auto", description="device: auto, cpu, cuda or cuda:N")
    precision: Precision = Field("auto", description="arithmetic precision: auto = bf16 autocast where the device "
                                 "computes it natively (AMX CPUs, CUDA capability >= 8.0), else fp32; fp16 with "
                                 "loss scaling; a run records the resolved value")
    log_every: int = Field(10, gt=0, description="steps between log lines")
    save_every: int = Field(50, gt=0, description="steps between checkpoints")
    grid_every: int = Field(50, gt=0, description="steps between preview grids")
    grid_samples: int = Field(4, gt=0, description="samples per preview row")
    grid_truncation: float = Field(0.7, ge=0, description="truncation psi of the preview samples")
    captions: bool = Field(True, description="caption bands on the preview grids: each row's name")
    tensorboard: bool = Field(False, description="also log to TensorBoard")
    wandb: bool = Field(False, description="also log to Weights & Biases")
    low_memory: bool = Field(False, description="recompute the adapted generator's blocks in the backward pass "
                             "(adaptation runs also halve their micro-batch when a step runs out of device "
                             "memory)")
    channels_last: bool | None = Field(None, description="channels-last activations (default: on CUDA and the CPU)")
    compile: bool = Field(False, description="torch.compile the synthesis network")
    quirks: Literal["corrected", "official"] = Field("corrected", description="official: reproduce the released "
                                                     "research trainer's sampling and losses (docs/REPRODUCTION.md)")
    clip_precision: Literal["fp32", "fp16", "auto"] = Field("fp32", description="CLIP weights' precision; auto: "
                                                            "fp16 on CUDA, fp32 elsewhere (the research code's loader)")

    @field_validator("losses")
    @classmethod
    def _some_loss_on(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or all(c == 0 for c in value.values()):
            raise ValueError("at least one loss needs a non-zero coefficient")
        return value


def split_target(item: str, source: str) -> tuple[str, str]:
    """``"Target - Source"`` → (Target, Source) at the last " - "; a plain prompt keeps ``source``."""
    target, sep, given = item.rpartition(" - ")
    return (target.strip(), given.strip()) if sep else (given.strip(), source)


def read_targets_file(path: str | Path) -> list[str]:
    """The targets a text file lists: one 'Target' or 'Target - Source' per line (blank lines and
    lines starting with # skipped)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --targets file {path} ({getattr(exc, 'strerror', None) or exc}); "
                         "check the path") from None
    targets = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not targets:
        raise ConfigError(f"--targets file {path} lists no targets; write one 'Target' or 'Target - Source' per line")
    return targets


def absolute_path(value: str) -> str:
    """A path as stored in a run's config: absolute (``~`` expanded), so that the run resumes from
    any working directory; a blank value stays as it is."""
    return str(Path(value).expanduser().absolute()) if value.strip() else value


class TextAdaptConfig(TrainConfig):
    """Text-driven single-domain adaptation (StyleGAN-NADA loss + indomain regulariser)."""

    source: str = Field("Photo", description="text describing the generator's domain")
    target: str = Field("", description="text describing the new domain", json_schema_extra={"cli": False})
    targets: list[str] = Field(default_factory=list, json_schema_extra={"option": "--target"},
                               description="text describing the new domain; repeat to train several domains in one "
                               "run ('Target - Source' gives a target its own source)")
    targets_file: Path | None = Field(None, json_schema_extra={"option": "--targets"},
                                      description="file of targets trained in one run: one 'Target' or "
                                      "'Target - Source' per line (# comments)")
    parameterization: str = Field("domain_vector", description="what is trained: domain_vector, "
                                  "style_offset, full (with --phase), or an official ablation")
    placement: Literal["after_demod", "before_demod"] = Field(
        "after_demod", description="where the domain vector scales the weights: after_demod (official) or "
        "before_demod (paper figure)")
    phase: str | None = Field(None, description="layer group for full fine-tuning")
    auto_layer_k: int = Field(0, ge=0, description="adaptive layer selection: keep k layers (0 = off)")
    auto_layer_iters: int = Field(0, ge=0, description="W+ SGD steps per selection (0 = off)")
    auto_layer_batch: int = Field(8, gt=0, description="latents per adaptive layer selection")
    clip_device: str | None = Field(None, description="device of the CLIP encoders (default: the generator's)")
    micro_batch: int | None = Field(None, gt=0, description="render and encode at most this many samples at a "
                                    "time; the gradient is the full batch's")

    def prompt_pairs(self) -> list[tuple[str, str]]:
        """(target, source) of every target: ``targets`` (the last " - " separates a given
        source) or the single ``target``."""
        if not self.targets:
            return [(self.target, self.source)]
        return [split_target(item, self.source) for item in self.targets]

    @model_validator(mode="before")
    @classmethod
    def _gather_targets(cls, data: Any) -> Any:
        """--targets FILE joins the --target list (read once: the stored config lists the targets);
        one target is a single-domain run; with several, the preset's single target is dropped."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        targets = list(data.get("targets") or [])
        if data.get("targets_file") is not None:
            targets, data["targets_file"] = [*targets, *read_targets_file(data["targets_file"])], None
        if len(targets) == 1:
            source = data.get("source", cls.model_fields["source"].default)
            (data["target"], data["source"]), targets = split_target(str(targets[0]), source), []
        elif targets:
            data["target"] = ""
        data["targets"] = targets
        return data

    @model_validator(mode="after")
    def _check_prompts_and_losses(self) -> TextAdaptConfig:
        for target, source in self.prompt_pairs():
            if not target.strip():
                raise ValueError("the target prompt is empty; give --target \"a description of the new domain\"")
            if not source.strip():
                raise ValueError("the source prompt is empty; give --source \"a description of the generator's domain\"")
            if source.strip().lower() == target.strip().lower():
                raise ValueError(f"source and target prompts are identical ({target!r}); the text direction would be zero")
        check_losses(self.losses, TEXT_LOSSES, self.batch)
        if self.auto_layer_iters > 0 and self.auto_layer_k == 0:
            raise ValueError("adaptive layer selection (auto_layer_iters > 0) needs auto_layer_k > 0 layers to keep")
        return self


class ImageAdaptConfig(TrainConfig):
    """One-shot image-driven adaptation (MindTheGap losses on domain modulation).

    Defaults are the official ``im2im_single`` config: batch 4, lr 0.01, the five MindTheGap
    terms, II2S inversion of the reference with 1000 steps and λ_p = 1e-3.
    """

    image: str = Field("", description="path of the reference image", json_schema_extra={"cli": False})
    images: list[str] = Field(default_factory=list, json_schema_extra={"option": "--image"},
                              description="path of the reference image (PNG, JPEG, WebP, …); repeat to train "
                              "one domain per image in one run")
    steps: int = Field(101, gt=0, description="optimisation steps")
    lr: float = Field(0.01, gt=0, description="Adam learning rate")
    losses: dict[str, float] = Field(default_factory=lambda: dict(IM2IM_SINGLE_LOSSES),
                                     description=losses_help(IMAGE_LOSSES), json_schema_extra=LOSS_OPTION)
    grid_truncation: float = Field(0.5, ge=0, description="truncation psi of the preview samples")
    parameterization: Literal["domain_vector", "style_offset"] = Field("domain_vector",
                                                                       description="what is trained")
    placement: Literal["after_demod", "before_demod"] = Field(
        "after_demod", description="where the domain vector scales the weights: after_demod (official) or "
        "before_demod (paper figure)")
    invert_steps: int = Field(1000, ge=0, description="II2S steps for the reference image")
    lambda_p: float = Field(1e-3, ge=0, description="II2S P-norm weight")
    fit: Literal["crop", "pad"] = Field("crop", description="crop (centre square) or pad (white letterbox) "
                                        "the reference to a square")
    align: bool = Field(False, description="FFHQ-align the reference face first (dlib landmarks, as FFHQ)")
    lpips_random_backbone: bool = Field(False, description="LPIPS with a random backbone: runs without the "
                                        "downloaded LPIPS weights (offline tests; not for real results)")
    pnorm_samples: int | None = Field(None, ge=2, description="mapped latents for the P-norm statistics "
                                      "(default: the inversion's)")

    def reference_images(self) -> list[str]:
        """The reference image of every target: ``images``, or the single ``image``."""
        return list(self.images) or [self.image]

    @model_validator(mode="before")
    @classmethod
    def _gather_images(cls, data: Any) -> Any:
        """One --image is a single-target run (``image``); with several, the preset's or config
        file's single ``image`` is dropped."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        images = list(data.get("images") or [])
        if len(images) == 1:
            data["image"], images = images[0], []
        elif images:
            data["image"] = ""
        data["images"] = images
        return data

    @field_validator("image")
    @classmethod
    def _absolute(cls, value: str) -> str:
        """Stored absolute, so that a run resumes from any working directory."""
        return absolute_path(value)

    @field_validator("images")
    @classmethod
    def _all_absolute(cls, value: list[str]) -> list[str]:
        return [absolute_path(v) for v in value]

    @model_validator(mode="after")
    def _check_image_and_losses(self) -> ImageAdaptConfig:
        if not any(path.strip() for path in self.reference_images()):
            raise ValueError("no reference image; give --image ref.png")
        if not all(path.strip() for path in self.reference_images()):
            raise ValueError("an --image is empty; give the path of each reference image")
        check_losses(self.losses, IMAGE_LOSSES, self.batch)
        return self


class HypernetConfig(TrainConfig):
    """HyperDomainNet training on many domains: a text domain list (``domains``) or reference
    images (``images``). Defaults are the official ``td_multiple`` config.

    ``batch`` is the global batch: under ``torchrun`` each of the N processes renders batch / N.
    ``quirks="official"`` reproduces the released trainer where it differs from ours (see
    ``training/multi_text.py``).
    """

    domains: str | None = Field(None, description="'Target - Source' list file or built-in list name")
    images: str | None = Field(None, description="text file listing reference images, one per line")
    test_domains: str = Field("test-close", description="list whose prompts (unseen in training) join the previews")
    steps: int = Field(10001, gt=0, description="optimisation steps")
    batch: int = Field(8, ge=2, description="global batch, split over torchrun processes")
    lr: float = Field(5e-5, gt=0, description="Adam learning rate")
    losses: dict[str, float] = Field(
        default_factory=lambda: {"direction": 1.0, "tt_direction": 0.4}, json_schema_extra=LOSS_OPTION,
        description=losses_help(HYPERNET_TEXT_LOSSES) + " (--images also: clip_within, clip_ref, l2_rec, lpips_rec)")
    mapper_clip: str = Field("ViT-B/32", description="CLIP encoder of the hypernetwork's input")
    width: int = Field(512, gt=0, description="hypernetwork width")
    depth: int = Field(4, gt=0, description="backbone depth (stem + residual blocks)")
    head_depth: int = Field(2, gt=0, description="head depth (residual blocks + output layer)")
    convex_hull: bool = Field(True, description="Dirichlet(2/B) convex-hull mixing of the batch's domains")
    resample: bool = Field(True, description="resample target text embeddings within a cosine bound")
    resample_cos: float = Field(0.95, ge=-1, le=1, description="lower cosine bound of the resampling")
    crop: float = Field(0.8, gt=0, le=1, description="side of the random square crops before CLIP (1 = off)")
    preview_seen: int = Field(2, ge=0, description="training domains shown in preview grids")
    preview_unseen: int = Field(2, ge=0, description="test_domains prompts shown in preview grids")
    grid_every: int = Field(100, gt=0, description="steps between preview grids")
    save_every: int = Field(1000, gt=0, description="steps between checkpoints")
    invert_steps: int = Field(1000, ge=0, description="II2S steps per reference image")
    lambda_p: float = Field(1e-3, ge=0, description="II2S P-norm weight")
    fit: Literal["crop", "pad"] = Field("crop", description="crop (centre square) or pad (white letterbox) "
                                        "each reference to a square")
    lpips_random_backbone: bool = Field(False, description="LPIPS with a random backbone: runs without the "
                                        "downloaded LPIPS weights (offline tests; not for real results)")
    pnorm_samples: int | None = Field(None, ge=2, description="mapped latents for the P-norm statistics "
                                      "(default: the inversion's)")

    @model_validator(mode="after")
    def _check_inputs_and_losses(self) -> HypernetConfig:
        if (self.domains is None) == (self.images is None):
            raise ValueError("give either --domains (a 'Target - Source' list) or --images (a list of "
                             "reference images), not both or neither")
        check_losses(self.losses, HYPERNET_TEXT_LOSSES if self.images is None else HYPERNET_IMAGE_LOSSES,
                     self.batch)
        if self.images is not None and (self.convex_hull or self.resample or self.crop < 1):
            raise ValueError("convex_hull, resample and crop augment text domains only; switch them off for "
                             "--images (the im2im_multiple_base preset does)")
        return self


PRESET_COMMANDS = {"text": "hdn adapt text", "image": "hdn adapt image",
                   "multi_text": "hdn hypernet train", "multi_image": "hdn hypernet train --images"}
CONFIG_MODELS: dict[str, type[TrainConfig]] = {"text": TextAdaptConfig, "image": ImageAdaptConfig,
                                               "multi_text": HypernetConfig, "multi_image": HypernetConfig}
PRESET_KEYS = ("trainer", "description")  # about the preset, not settings


def option_name(name: str, field: FieldInfo) -> str:
    """The command-line spelling of setting ``name``: ``--name-with-dashes`` unless the field names one."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("option") or "--" + name.replace("_", "-"))


def on_command_line(field: FieldInfo) -> bool:
    """Whether the setting has an option (``json_schema_extra={"cli": False}``: presets and files only)."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return bool(extra.get("cli", True))


def is_mapping(field: FieldInfo) -> bool:
    """Whether the setting holds a mapping (updated key by key by command-line options)."""
    return get_origin(field.annotation) is dict


def _read_preset(name: str) -> dict[str, Any]:
    text = resources.files("hyperdomainnet.configs").joinpath(f"{name}.yaml").read_text()
    return dict(yaml.safe_load(text) or {})


def preset_names(trainer: str | None = None) -> list[str]:
    """Names of the bundled presets (YAML files in hyperdomainnet/configs), optionally of one trainer."""
    names = sorted(p.name[:-5] for p in resources.files("hyperdomainnet.configs").iterdir()
                   if p.name.endswith(".yaml"))
    return [n for n in names if trainer is None or _read_preset(n).get("trainer") == trainer]


def preset_info(name: str) -> tuple[str, str]:
    """(trainer, one-line description) of a bundled preset."""
    settings = _read_preset(name)
    return str(settings.get("trainer")), str(settings.get("description", ""))


def load_preset(name: str, trainer: str | None = None) -> dict[str, Any]:
    """The settings of a bundled preset (its ``trainer`` key checked against ``trainer``)."""
    if name not in preset_names():
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(preset_names(trainer))} "
                          "(list them with `hdn presets`)")
    settings = _read_preset(name)
    kind = settings.get("trainer")
    if trainer is not None and kind != trainer:
        raise ConfigError(f"preset {name!r} is for `{PRESET_COMMANDS.get(kind, kind)}`; presets for this "
                          f"command: {', '.join(preset_names(trainer))}")
    return {k: v for k, v in settings.items() if k not in PRESET_KEYS}


def resolve_preset(name: str) -> dict[str, Any]:
    """Every setting a preset runs with: its own values over its config model's defaults (inputs a
    preset leaves to the command line, such as ``image``, keep their empty defaults)."""
    settings = load_preset(name)  # refuses unknown names
    model = CONFIG_MODELS[preset_info(name)[0]]
    return model.model_construct(**settings).model_dump(mode="json", warnings=False)


MAX_CONFIG_BYTES = 1_000_000
MAX_SHOWN = 120  # characters of a rejected value shown in an error


def _shown(text: str) -> str:
    """``text`` cut to ``MAX_SHOWN`` characters for a one-line message."""
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + f"… ({len(text):,} characters)"


class _AliasRefused(yaml.YAMLError):
    """A YAML alias in a settings file (its line in ``args[0]``)."""


class _NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing aliases (``*name``): a few of them nest into an exponential
    "billion laughs" expansion, and settings never need them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Settings from a YAML config file (e.g. a previous run's config.yaml): at most
    ``MAX_CONFIG_BYTES``, no aliases."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is {path.stat().st_size:,} bytes, over the "
                              f"{MAX_CONFIG_BYTES:,} a settings file may have")
        data = yaml.load(path.read_text(), Loader=_NoAliasLoader)  # noqa: S506 — a safe loader
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}); check the path") from None
    except _AliasRefused as exc:
        raise ConfigError(f"config file {path} uses a YAML alias (*name) on line {exc.args[0]}; aliases are "
                          "not accepted: write the values out") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({first_line(exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return data


def _describe_error(cls: type[TrainConfig], err: Any) -> str:
    """``invalid setting lr (--lr): input should be a finite number, got inf``."""
    message = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:
        return message
    name = str(err["loc"][0])
    where = name + "".join(f"[{p}]" for p in err["loc"][1:])
    field = cls.model_fields.get(name)
    option = f" ({option_name(name, field)})" if field is not None else ""
    got = "" if err["type"] in ("missing", "extra_forbidden") else f", got {_shown(repr(err['input']))}"
    return f"invalid setting {where}{option}: {message[0].lower()}{message[1:]}{got}"


def build_config(cls: type[TrainConfig], *layers: dict[str, Any],
                 updates: dict[str, Any] | None = None) -> TrainConfig:
    """Merge settings layers (later wins; ``None`` values are skipped), then ``updates`` (command-line
    options: a mapping changes only the keys it names, over the layers' mapping or the model's
    default), and validate as ``cls``."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update({k: v for k, v in layer.items() if v is not None})
    for key, value in (updates or {}).items():
        field = cls.model_fields.get(key)
        if value is not None and field is not None and is_mapping(field) and isinstance(value, dict):
            base = merged.get(key, field.get_default(call_default_factory=True))
            value = {**(base if isinstance(base, dict) else {}), **value}
        if value is not None:
            merged[key] = value
    try:
        return cls(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe_error(cls, exc.errors()[0])) from None
