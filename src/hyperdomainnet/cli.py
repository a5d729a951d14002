"""The ``hdn`` command. Every user error ends as one line on stderr and exit status 1."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from . import __version__
from .errors import HDNError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Domain adaptation of StyleGAN2 with domain modulation and HyperDomainNet.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hyperdomainnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """hdn: adapt StyleGAN2 generators to new domains by text or image."""


@app.command()
def models() -> None:
    """List the pretrained generators of the zoo and whether they are downloaded."""
    from . import zoo

    for entry in zoo.list_entries():
        cached = zoo.cached_path(entry.name)
        typer.echo(f"{entry.name:32s} {entry.arch.size:>5d} px  {entry.format:13s} "
                   f"{'downloaded' if cached else 'not downloaded'}  aliases: {', '.join(entry.aliases)}")


@app.command()
def download(names: list[str] = typer.Argument(..., help="Zoo names or aliases, e.g. ffhq church.")) -> None:
    """Download pretrained generators into the cache (HDN_HOME), verifying checksums."""
    from . import zoo

    for name in names:
        path = zoo.fetch(zoo.resolve(name).name)
        typer.echo(f"{name}: {path}")


@app.command()
def info(target: str = typer.Argument(..., help="Generator file, zoo name, random:<size> spec, or domain file."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Describe a generator checkpoint or a domain file (architecture, sizes, metadata)."""
    from .describe import describe_target

    report = describe_target(target)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)


def _print_report(report: dict[str, Any], indent: str = "") -> None:
    for key, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{indent}{key}:")
            _print_report(value, indent + "  ")
        else:
            typer.echo(f"{indent}{key}: {value}")


@app.command()
def convert(checkpoint: Path = typer.Argument(..., help="Official HyperDomainNet checkpoint (.pt)."),
            out: Path = typer.Option(..., "--out", help="Output .safetensors file."),
            generator: Optional[str] = typer.Option(None, help="Generator it belongs to (default: from the file).")) -> None:
    """Convert an official HyperDomainNet checkpoint: parameterisation → domain file, mapper → hypernetwork file."""
    from .convert import convert_official
    from .stylegan2.loading import load_generator

    G = load_generator(generator) if generator else None
    typer.echo(f"converted {checkpoint} → {convert_official(checkpoint, out, generator=G)}")


adapt_app = typer.Typer(no_args_is_help=True, help="Adapt a generator to a new domain.")
app.add_typer(adapt_app, name="adapt")


def _parse_losses(items: Optional[list[str]]) -> Optional[dict[str, float]]:
    """``["direction=1", "indomain=1.5"]`` → {"direction": 1.0, "indomain": 1.5}."""
    if not items:
        return None
    losses = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            losses[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise HDNError(f"--loss {item!r}: the coefficient must be a number, e.g. --loss indomain=1.5") from None
    return losses


def _parse_betas(text: Optional[str]) -> Optional[tuple[float, float]]:
    if text is None:
        return None
    try:
        b1, b2 = (float(v) for v in text.split(","))
    except ValueError:
        raise HDNError(f"--betas {text!r}: give two numbers separated by a comma, e.g. 0.9,0.999") from None
    return b1, b2


def _run_settings(out: Path, resume: bool, preset: Optional[str], config_file: Optional[Path],
                  overrides: dict[str, Any]) -> list[dict[str, Any]]:
    """Settings layers: a resumed run uses its stored config (only --steps may change)."""
    from .training.config import CONFIG_NAME, load_config_file, load_preset

    if resume:
        stored = out / CONFIG_NAME
        if not stored.is_file():
            raise HDNError(f"nothing to resume in {out}: {stored} does not exist")
        return [load_config_file(stored), {"steps": overrides.get("steps")}]
    return [load_preset(preset) if preset else {}, load_config_file(config_file) if config_file else {},
            overrides]


@adapt_app.command("text")
def adapt_text(
    out: Path = typer.Option(..., "--out", help="Run directory (created)."),
    generator: Optional[str] = typer.Option(None, help="Zoo name, checkpoint path or random:<size> spec."),
    source: Optional[str] = typer.Option(None, help="Text describing the generator's domain, e.g. 'Photo'."),
    target: Optional[str] = typer.Option(None, help="Text describing the new domain."),
    preset: Optional[str] = typer.Option(None, help="Official config preset, e.g. td_single_ffhq."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file of settings."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps."),
    batch: Optional[int] = typer.Option(None, help="Latents per step."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate."),
    betas: Optional[str] = typer.Option(None, help="Adam betas, e.g. 0.9,0.999."),
    weight_decay: Optional[float] = typer.Option(None, help="Adam weight decay."),
    mixing: Optional[float] = typer.Option(None, help="Style-mixing probability."),
    noise_mode: Optional[str] = typer.Option(None, help="random | const | none (shared by G_A and G_B)."),
    loss: Optional[list[str]] = typer.Option(None, help="NAME=COEF, repeatable: direction, global, indomain, offsets_l2, offsets_l1."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0' or random:tiny."),
    parameterization: Optional[str] = typer.Option(None, help="domain_vector, style_offset, full, or an ablation."),
    placement: Optional[str] = typer.Option(None, help="after_demod (official) | before_demod (paper figure)."),
    phase: Optional[str] = typer.Option(None, help="Layer group for full fine-tuning."),
    auto_layer_k: Optional[int] = typer.Option(None, help="Adaptive layer selection: layers kept (0 = off)."),
    auto_layer_iters: Optional[int] = typer.Option(None, help="Adaptive layer selection: W+ optimisation steps."),
    seed: Optional[int] = typer.Option(None, help="Random seed."),
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    precision: Optional[str] = typer.Option(None, help="fp32 | bf16 | fp16."),
    log_every: Optional[int] = typer.Option(None, help="Steps between log lines."),
    save_every: Optional[int] = typer.Option(None, help="Steps between checkpoints."),
    grid_every: Optional[int] = typer.Option(None, help="Steps between preview grids."),
    grid_samples: Optional[int] = typer.Option(None, help="Samples per preview grid."),
    tensorboard: Optional[bool] = typer.Option(None, "--tensorboard/--no-tensorboard", help="Also log to TensorBoard."),
    wandb: Optional[bool] = typer.Option(None, "--wandb/--no-wandb", help="Also log to Weights & Biases."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Adapt a generator to a domain described in words (StyleGAN-NADA + indomain losses)."""
    from .training.config import TextAdaptConfig, build_config
    from .training.loop import run_training
    from .training.text import TextTrainer

    overrides = dict(generator=generator, source=source, target=target, steps=steps, batch=batch, lr=lr,
                     betas=_parse_betas(betas), weight_decay=weight_decay, mixing=mixing, noise_mode=noise_mode,
                     losses=_parse_losses(loss), clip=clip, parameterization=parameterization,
                     placement=placement, phase=phase, auto_layer_k=auto_layer_k,
                     auto_layer_iters=auto_layer_iters, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every,
                     grid_samples=grid_samples, tensorboard=tensorboard, wandb=wandb)
    cfg = build_config(TextAdaptConfig, *_run_settings(out, resume, preset, config, overrides))
    result = run_training(TextTrainer(cfg), out, resume=resume, progress=progress)
    typer.echo(f"domain adapted to {cfg.target!r}: {result}")


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: usage errors as click prints them (exit 2); user errors as one line (exit 1)."""
    try:
        app(args=argv)
    except HDNError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
