"""Command-line options of the training commands (``hdn adapt text``, ``hdn adapt image``, ``hdn
hypernet train``), derived from the fields of their config models (``training/config.py``).

Every field becomes one option, ``--name-with-dashes`` (or the spelling the field names), whose help
is the field's description, default and range. Booleans are ``--x/--no-x`` switches, ``Literal``
fields take one of their values, pairs of numbers are written ``A,B``, mappings ``NAME=VALUE``
(repeatable; changes only the named keys), lists repeat the option. Options left unset keep the
preset's or config file's value.
"""
from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo

from ..atomic import check_output_dir
from ..errors import ConfigError
from ..training.config import (CONFIG_NAME, TrainConfig, build_config, load_config_file, load_preset,
                               on_command_line, option_name, preset_names)

OUT = typer.Option(..., "--out", help="Run directory (created).")
CONFIG = typer.Option(None, "--config", help="YAML file of settings (over the preset's).")
RESUME = typer.Option(False, "--resume", help="Continue the interrupted run in --out with its stored settings "
                                              "(only --steps may change).")
FORCE = typer.Option(False, "--force", help="Start the run in a --out directory that already holds other files.")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Show a progress bar.")
BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` → ``X``."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def show_value(value: Any) -> str:
    """A default as it would be typed on the command line."""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return str(value) or "''"


def _range(field: FieldInfo) -> str:
    """``> 0``, ``>= 0``, ``in [0, 1]``, ``in (0, 1]``, … from the field's constraints ('' when none)."""
    bounds = {attr: getattr(c, attr) for c in field.metadata for attr in BOUNDS  # annotated_types Gt, Ge, …
              if getattr(c, attr, None) is not None}
    low = [(k, v) for k, v in bounds.items() if k in ("gt", "ge")]
    high = [(k, v) for k, v in bounds.items() if k in ("lt", "le")]
    if low and high:
        (lk, lv), (hk, hv) = low[0], high[0]
        return f"in {'(' if lk == 'gt' else '['}{lv}, {hv}{')' if hk == 'lt' else ']'}"
    return "; ".join(f"{BOUNDS[k]} {v}" for k, v in bounds.items())


def setting_help(field: FieldInfo) -> str:
    """The field's description with its default and range, e.g. 'Adam learning rate (default 0.1; > 0).'"""
    description = field.description or ""
    notes = [] if "default" in description else [f"default {show_value(field.get_default(call_default_factory=True))}"]
    notes += [r for r in (_range(field),) if r]
    if re.match(r"[a-z][a-z-]*[ :]", description):  # a sentence, not a value such as "domain_vector, …"
        description = description[0].upper() + description[1:]
    return f"{description} ({'; '.join(notes)})." if notes else f"{description}."


def setting_option(name: str, field: FieldInfo, panel: str = "Settings") -> inspect.Parameter:
    """The command-line option of one setting (default None: unset keeps the lower layers' value),
    listed under ``panel`` in --help."""
    flag, kind = option_name(name, field), _strip_optional(field.annotation)
    origin, extra = get_origin(kind), {}
    if kind is bool:
        decls, annotation = (f"{flag}/--no-{flag[2:]}",), Optional[bool]
    elif origin is Literal:
        decls, annotation = (flag,), Optional[kind]
    elif origin in (dict, list):
        decls, annotation = (flag,), Optional[list[str]]
        extra = {"metavar": "NAME=VALUE"} if origin is dict else {}
    elif origin is tuple:
        decls, annotation, extra = (flag,), Optional[str], {"metavar": ",".join("ABCDEFGH"[:len(get_args(kind))])}
    else:
        decls, annotation = (flag,), Optional[kind if kind in (int, float) else str]
    option = typer.Option(None, *decls, help=setting_help(field), show_default=False, rich_help_panel=panel, **extra)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


def parse_setting(name: str, field: FieldInfo, value: Any) -> Any:
    """Option value → setting value: ``NAME=VALUE`` items → mapping, ``A,B`` → list; pydantic
    converts the strings and checks them."""
    origin = get_origin(_strip_optional(field.annotation))
    if origin is tuple:
        return [part.strip() for part in value.split(",")]
    if origin is not dict:
        return value
    mapping = {}
    for item in value:
        key, sep, number = item.partition("=")
        if not sep or not key.strip():
            flag, example = option_name(name, field), next(iter(field.get_default(call_default_factory=True)), "name")
            raise ConfigError(f"{flag} {item!r}: give NAME=VALUE, e.g. {flag} {example}=1.5")
        mapping[key.strip()] = number.strip()
    return mapping


def _run_options(default_presets: dict[str, Optional[str]]) -> list[inspect.Parameter]:
    """The options every training command has besides its settings: --out, --preset, --config, …"""
    names = [name for kind in default_presets for name in preset_names(kind)]
    defaults = "; ".join(f"{preset} with --images" if kind == "multi_image" else preset
                         for kind, preset in default_presets.items() if preset)
    preset = typer.Option(None, "--preset", show_default=False,
                          help=f"Preset (`hdn presets`): {', '.join(names)} (default {defaults or 'none'}).")
    options = {"out": (OUT, Path), "preset": (preset, Optional[str]), "config": (CONFIG, Optional[Path]),
               "resume": (RESUME, bool), "force": (FORCE, bool), "progress": (PROGRESS, bool)}
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
            for name, (option, annotation) in options.items()]


def training_command(group: typer.Typer, name: str, model: type[TrainConfig],
                     default_presets: dict[str, Optional[str]],
                     select: Optional[Callable[[dict[str, Any]], str]] = None
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func(cfg, out, resume, progress)`` as command ``name`` of ``group``, with the run
    options (--out, --preset, --config, --resume, --force, --progress) and one option per field of
    ``model``. ``default_presets`` maps each preset kind (``trainer:`` of the preset files) the
    command takes to the preset used without --preset (or None); ``select(settings)`` picks the kind
    (default: the first)."""
    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        own_panel = re.split(r" \(|[:.]", inspect.getdoc(model) or name)[0]  # "Text-driven single-domain adaptation"
        params = _run_options(default_presets) + [
            setting_option(n, f, "Training (all trainers)" if n in TrainConfig.model_fields else own_panel)
            for n, f in model.model_fields.items() if on_command_line(f)]

        def command(out: Path, preset: Optional[str], config: Optional[Path], resume: bool, force: bool,
                    progress: bool, **given: Any) -> Any:
            settings = {k: parse_setting(k, model.model_fields[k], v) for k, v in given.items() if v is not None}
            kind = select(settings) if select else next(iter(default_presets))
            cfg = run_config(model, kind, out, resume=resume, force=force, config_file=config, settings=settings,
                             preset=preset or default_presets[kind])
            return func(cfg, out=out, resume=resume, progress=progress)

        command.__name__, command.__doc__ = func.__name__, func.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        group.command(name)(command)
        return func
    return register


def run_config(model: type[TrainConfig], trainer: str, out: Path, *, resume: bool, force: bool,
               preset: Optional[str], config_file: Optional[Path], settings: dict[str, Any]) -> TrainConfig:
    """The run's validated settings, after checking (before any work) that ``out`` can take the run.

    New run: preset (or the model's defaults) ← config file ← options, into a new or empty
    directory (``--force``: one that holds other files). ``--resume``: the stored config.yaml;
    options may repeat its values, and only ``--steps`` may change.
    """
    check_output_dir(out, force=force or resume)
    if not resume:
        layers = [load_preset(preset, trainer) if preset else {}, load_config_file(config_file) if config_file else {}]
        return build_config(model, *layers, updates=settings)
    stored_path = out / CONFIG_NAME
    if not stored_path.is_file():
        raise ConfigError(f"nothing to resume in {out}: {stored_path} does not exist; start the run without --resume")
    stored = load_config_file(stored_path)
    before = build_config(model, stored, {"steps": settings.get("steps")})
    after = build_config(model, stored, updates=settings)
    changed = [option_name(k, model.model_fields[k]) for k in model.model_fields
               if k != "steps" and getattr(before, k) != getattr(after, k)]
    if changed:
        raise ConfigError(f"--resume continues with the settings stored in {stored_path}; only --steps may change "
                          f"({', '.join(changed)} differ): drop them, or start a new run in another --out")
    return before
