"""``hdn eval``: Quality, Diversity, LPIPS diversity and FID/KID of a domain; side-by-side tables."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..atomic import atomic_path, check_output_file
from ..errors import ConfigError
from ..ranges import finite_json
from ..seeds import MAX_SEED
from . import options
from .app import app


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@app.command("eval")
def evaluate(
    runs: Optional[list[Path]] = typer.Argument(None, show_default=False,
                                                help="With --compare: metrics JSON files to tabulate."),
    out: Path = typer.Option(..., "--out", help="metrics.json (a .md table is written beside it); "
                                                "with --compare the Markdown table."),
    domain: Optional[str] = typer.Option(None, "--domain", show_default="none: needed unless --compare",
                                         help="Domain file to evaluate, optionally FILE*STRENGTH."),
    compare: bool = typer.Option(False, "--compare", show_default="off",
                                 help="Tabulate the metrics JSON files given as arguments."),
    generator: Optional[str] = typer.Option(None, show_default="the one the domain file names",
                                            help="Zoo name, checkpoint or random:<size> spec."),
    clip: str = typer.Option("ViT-B/16", help="CLIP encoder for Quality/Diversity (the official notebook: ViT-B/16)."),
    target: Optional[str] = typer.Option(None, show_default="the domain file's target", help="Target text."),
    reference: Optional[Path] = typer.Option(None, show_default="none",
                                             help="Reference image of an image domain (instead of a text)."),
    templates: str = typer.Option("imagenet", help="imagenet (79 templates) or one template such as 'A {}'."),
    n: int = typer.Option(500, "--n", help="Number of generated samples (seeds SEED … SEED+N−1)."),
    seed: int = typer.Option(0, min=0, max=MAX_SEED, help="First seed."),
    truncation: float = options.TRUNCATION,
    noise_mode: str = typer.Option("random", help="random (seeded, as the official evaluation) | const | none."),
    batch_size: int = options.batch_size(),
    device: str = options.DEVICE,
    reference_dir: Optional[Path] = typer.Option(None, show_default="none: no FID/KID",
                                                 help="Folder of real target-domain images for FID/KID."),
    kid_subset_size: int = typer.Option(1000, help="KID subset size (capped by the image counts)."),
    lpips: str = typer.Option("vgg", help="LPIPS network for intra-cluster diversity: vgg | alex | squeeze | none."),
    lpips_samples: int = typer.Option(100, help="Samples whose pairwise LPIPS is averaged."),
    lpips_random_backbone: bool = typer.Option(False, "--lpips-random-backbone", show_default="off",
                                               help="LPIPS on a randomly initialised backbone: runs offline, "
                                                    "but its distances are not perceptual (trials only)."),
    force: bool = options.force("Replace existing output files."),
    style_mixing: bool = typer.Option(True, "--style-mixing/--no-style-mixing",
                                      help="Image domains: replace the fine W+ layers by the reference's, as released."),
) -> None:
    """Measure a domain: CLIP Quality (mean cosine to the target) and Diversity (mean 1 − cosine between samples), LPIPS diversity, FID/KID; JSON + Markdown."""
    from ..device import resolve_device
    from ..evaluation import EvalSettings, comparison_table, evaluate_domain, report_markdown

    if compare:
        if not runs or domain:
            raise ConfigError("--compare takes metrics JSON files as arguments and no --domain")
        check_output_file(out, force)
        table = comparison_table(runs)
        _write(out, table)
        typer.echo(table + f"\nwritten to {out}")
        return
    if runs or not domain:
        raise ConfigError("pass --domain FILE to evaluate, or --compare a.json b.json … to tabulate runs")
    if out.suffix.lower() == ".md":
        raise ConfigError("--out names the JSON report, e.g. metrics.json; the Markdown table is written beside it")
    settings = EvalSettings(clip, templates, n, seed, truncation, noise_mode, batch_size, reference_dir,
                            kid_subset_size, lpips, lpips_samples, lpips_random_backbone, style_mixing)
    check_output_file(out, force)
    check_output_file(out.with_suffix(".md"), force)
    report = evaluate_domain(domain, settings, generator, target, reference, resolve_device(device))
    _write(out, json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n")
    markdown = report_markdown(report, report["domain"]["name"])
    _write(out.with_suffix(".md"), markdown)
    typer.echo(markdown + f"\nwritten to {out} and {out.with_suffix('.md')}")
