"""``hdn eval``: Quality, Diversity, LPIPS diversity and FID/KID of a domain; side-by-side tables."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..atomic import atomic_path, check_output_file
from ..errors import ConfigError, FileFormatError, HDNError
from ..ranges import finite_json
from ..seeds import MAX_SEED
from .app import app

REPORT_VERSION = 1


def _templates(value: str) -> tuple[tuple[str, ...], str]:
    """``imagenet`` → the 79 ImageNet templates; otherwise one literal template holding ``{}``."""
    from ..clip import IMAGENET_TEMPLATES

    if value == "imagenet":
        return IMAGENET_TEMPLATES, f"imagenet ({len(IMAGENET_TEMPLATES)})"
    if value.count("{}") != 1:
        raise ConfigError(f"--templates {value!r}: use imagenet or one template with a single {{}}, e.g. 'A {{}}'")
    return (value,), repr(value)


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _markdown(report: dict[str, Any], name: str) -> str:
    from ..metrics import markdown_table

    p = report["protocol"]
    lines = [f"# Evaluation of {name}", "",
             f"CLIP {p['clip_model']}, templates {p['templates']}, {p['samples']} samples (seeds {p['seeds']}), "
             f"truncation ψ = {p['truncation']}, noise {p['noise_mode']}, no style mixing; generator "
             f"{p['generator']}.", "", markdown_table([report], [name])]
    return "\n".join(lines)


def _compare(runs: list[Path], out: Path, force: bool) -> None:
    from ..metrics import REPORT_FORMAT, markdown_table

    check_output_file(out, force)
    reports = []
    for path in runs:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"cannot read metrics file {path} ({exc}); pass JSON files written by hdn eval") from None
        if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
            raise FileFormatError(f"{path} is not a metrics file written by hdn eval")
        reports.append(report)
    table = markdown_table(reports, [report["domain"].get("name") or p.stem for report, p in zip(reports, runs)])
    _write(out, table)
    typer.echo(table + f"\nwritten to {out}")


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
    truncation: float = typer.Option(1.0, help="Truncation ψ."),
    noise_mode: str = typer.Option("random", help="random (seeded, as the official evaluation) | const | none."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    reference_dir: Optional[Path] = typer.Option(None, show_default="none: no FID/KID",
                                                 help="Folder of real target-domain images for FID/KID."),
    kid_subset_size: int = typer.Option(1000, help="KID subset size (capped by the image counts)."),
    lpips: str = typer.Option("vgg", help="LPIPS network for intra-cluster diversity: vgg | alex | squeeze | none."),
    lpips_samples: int = typer.Option(100, help="Samples whose pairwise LPIPS is averaged."),
    lpips_random_backbone: bool = typer.Option(False, "--lpips-random-backbone", show_default="off",
                                               help="LPIPS on a randomly initialised backbone: runs offline, "
                                                    "but its distances are not perceptual (trials only)."),
    force: bool = typer.Option(False, "--force", show_default="off", help="Replace existing output files."),
) -> None:
    """Measure a domain: CLIP Quality (mean cosine to the target) and Diversity (mean 1 − cosine between samples), LPIPS diversity, FID/KID; JSON + Markdown."""
    if compare:
        if not runs or domain:
            raise ConfigError("--compare takes metrics JSON files as arguments and no --domain")
        _compare(runs, out, force)
        return
    if runs or not domain:
        raise ConfigError("pass --domain FILE to evaluate, or --compare a.json b.json … to tabulate runs")
    if out.suffix.lower() == ".md":
        raise ConfigError("--out names the JSON report, e.g. metrics.json; the Markdown table is written beside it")
    if n < 2:
        raise ConfigError(f"--n must be at least 2 (diversity compares pairs), got {n}")
    check_output_file(out, force)
    check_output_file(out.with_suffix(".md"), force)
    report = _evaluate(domain, generator, clip, target, reference, templates, n, seed, truncation, noise_mode,
                       batch_size, device, reference_dir, kid_subset_size, lpips, lpips_samples,
                       lpips_random_backbone)
    _write(out, json.dumps(finite_json(report), indent=2, allow_nan=False) + "\n")
    markdown = _markdown(report, report["domain"]["name"])
    _write(out.with_suffix(".md"), markdown)
    typer.echo(markdown + f"\nwritten to {out} and {out.with_suffix('.md')}")


def _evaluate(domain_text: str, generator: Optional[str], clip: str, target: Optional[str],
              reference: Optional[Path], templates: str, n: int, seed: int, truncation: float, noise_mode: str,
              batch_size: int, device: str, reference_dir: Optional[Path], kid_subset_size: int, lpips: str,
              lpips_samples: int, lpips_random_backbone: bool) -> dict[str, Any]:
    import torch

    from .. import __version__, perceptual
    from ..clip import load_clip
    from ..domain.arithmetic import parse_domain_spec
    from ..domain.files import Domain
    from ..images import load_image
    from ..metrics import (LPIPS_SIZE, REPORT_FORMAT, DistributionMetrics, evaluate_samples, reference_images,
                           require_distribution_metrics, target_embeddings)
    from ..progress import progress_bar
    from ..render import Row, domain_name, row_label
    from ..training.runtime import resolve_device
    from .generate import generator_for

    spec = parse_domain_spec(domain_text)
    domain = Domain.load(spec.path)
    target = None if reference is not None else (target or domain.metadata.get("target"))
    template_list, template_name = _templates(templates)
    if lpips != "none" and (lpips not in perceptual.NETS or min(lpips_samples, n) < 2):
        raise ConfigError(f"--lpips {lpips!r} --lpips-samples {lpips_samples}: use vgg, alex, squeeze or none, "
                       "with at least 2 samples")
    files = reference_images(reference_dir) if reference_dir is not None else []
    if files:
        require_distribution_metrics()
    dev = resolve_device(device)
    row = Row(row_label(domain_name(domain, spec.path), spec.scale), domain, spec.scale)
    G = generator_for(generator, [row], dev)
    encoder = load_clip(clip, dev)
    target_emb = target_embeddings(encoder, target, reference, template_list)
    lpips_model = None
    if lpips != "none":
        try:
            lpips_model = perceptual.load_lpips(lpips, dev, lpips_random_backbone)
        except HDNError as exc:
            raise ConfigError(f"{exc}; or skip LPIPS with --lpips none") from None
    distribution = None
    if files:
        distribution = DistributionMetrics(kid_subset_size=kid_subset_size, device=dev, seed=seed)
        with progress_bar(len(files), "reading references", "img") as bar:
            for start in range(0, len(files), batch_size):
                batch = [load_image(f, G.size) for f in files[start:start + batch_size]]
                distribution.update(torch.cat(batch), real=True)
                bar.update(len(batch))
    seeds = list(range(seed, seed + n))
    with progress_bar(n, "evaluating", "img") as bar:
        metrics = evaluate_samples(G, row, encoder, target_emb, seeds, truncation, noise_mode, batch_size,
                                   lpips_model, lpips_samples, distribution, bar)
    protocol = {"clip_model": clip, "templates": template_name, "target": target,
                "reference": None if reference is None else str(reference), "samples": n,
                "seeds": f"{seed}-{seed + n - 1}", "truncation": truncation, "noise_mode": noise_mode,
                "style_mixing": 0.0, "generator": G.identity.get("name"),
                "lpips": None if lpips_model is None else {"net": lpips, "samples": min(lpips_samples, n),
                                                          "max_size": LPIPS_SIZE,
                                                          "random_backbone": lpips_random_backbone},
                "reference_dir": None if reference_dir is None else str(reference_dir)}
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION,
            "domain": {"file": str(spec.path), "name": row.label,
                       "scale": spec.scale, "kind": domain.kind,
                       "generator": domain.generator.get("name"), "target": domain.metadata.get("target")},
            "protocol": protocol, "metrics": metrics, "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
