"""Domain evaluation (``hdn eval``): a domain file rendered on seeds ``seed … seed+N−1`` and measured
by ``metrics.evaluate_samples`` — CLIP Quality and Diversity against the target (prompt in
templates, or a reference image), LPIPS diversity and FID/KID against a folder of real images —
as a JSON report (``REPORT_FORMAT``) that states its protocol, and its Markdown table.
The hypernetwork's counterpart is ``hypernet.evaluate``."""
from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import perceptual
from .clip import IMAGENET_TEMPLATES, load_clip
from .domain.arithmetic import parse_domain_spec
from .errors import ConfigError, FileFormatError, HDNError
from .images import load_image
from .loaders import load_domain
from .metrics import (LPIPS_SIZE, REPORT_FORMAT, DistributionMetrics, evaluate_samples, markdown_table,
                      mixing_phrase, reference_images, require_distribution_metrics,
                      target_embeddings)
from .progress import progress_bar
from .render import Row, domain_name, generator_for, row_label
from .version import __version__

REPORT_VERSION = 1
COMPARED_PROTOCOL: tuple[str, ...] = ("clip_model", "templates", "samples", "truncation", "seeds")


@dataclass(frozen=True)
class EvalSettings:
    """How a domain is measured (defaults: the official notebook's protocol)."""

    clip: str = "ViT-B/16"
    templates: str = "imagenet"
    samples: int = 500
    seed: int = 0
    truncation: float = 1.0
    noise_mode: str = "random"
    batch_size: int = 16
    reference_dir: Path | None = None
    kid_subset_size: int = 1000
    lpips: str = "vgg"
    lpips_samples: int = 100
    lpips_random_backbone: bool = False
    style_mixing: bool = True  # image domains: the reference's fine W+ layers, as released

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ConfigError(f"--n must be at least 2 (diversity compares pairs), got {self.samples}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.samples))


def template_list(value: str) -> tuple[tuple[str, ...], str]:
    """``imagenet`` → the 79 ImageNet templates; otherwise one literal template holding ``{}``;
    with the name the report gives them."""
    if value == "imagenet":
        return IMAGENET_TEMPLATES, f"imagenet ({len(IMAGENET_TEMPLATES)})"
    if value.count("{}") != 1:
        raise ConfigError(f"--templates {value!r}: use imagenet or one template with a single {{}}, e.g. 'A {{}}'")
    return (value,), repr(value)


def _check_lpips(settings: EvalSettings) -> None:
    if settings.lpips != "none" and (settings.lpips not in perceptual.NETS
                                     or min(settings.lpips_samples, settings.samples) < 2):
        raise ConfigError(f"--lpips {settings.lpips!r} --lpips-samples {settings.lpips_samples}: use vgg, alex, "
                          "squeeze or none, with at least 2 samples")


def _lpips_model(settings: EvalSettings, device: torch.device) -> torch.nn.Module | None:
    if settings.lpips == "none":
        return None
    try:
        return perceptual.load_lpips(settings.lpips, device, settings.lpips_random_backbone)
    except HDNError as exc:
        raise ConfigError(f"{exc}; or skip LPIPS with --lpips none") from None


def _real_images(files: Sequence[Path], size: int, settings: EvalSettings,
                 device: torch.device) -> DistributionMetrics:
    """FID/KID statistics with the reference folder's images fed in as the real ones."""
    distribution = DistributionMetrics(kid_subset_size=settings.kid_subset_size, device=device, seed=settings.seed)
    with progress_bar(len(files), "reading references", "img") as bar:
        for start in range(0, len(files), settings.batch_size):
            batch = [load_image(f, size) for f in files[start:start + settings.batch_size]]
            distribution.update(torch.cat(batch), real=True)
            bar.update(len(batch))
    return distribution


def evaluate_domain(domain_spec: str, settings: EvalSettings, generator: str | None = None,
                    target: str | None = None, reference: Path | None = None,
                    device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """The report of a domain (``FILE`` or ``FILE*α``) rendered by ``generator`` (default: the one the
    file names): against ``reference``'s embedding, else the ``target`` prompt (default: the file's)."""
    spec = parse_domain_spec(domain_spec)
    domain = load_domain(spec.path)
    target = None if reference is not None else (target or domain.metadata.get("target"))
    templates, template_name = template_list(settings.templates)
    _check_lpips(settings)
    files = reference_images(settings.reference_dir) if settings.reference_dir is not None else []
    if files:
        require_distribution_metrics()
    row = Row(row_label(domain_name(domain, spec.path), spec.scale), domain, spec.scale)
    G = generator_for(generator, [row], device)
    encoder = load_clip(settings.clip, device)
    target_emb = target_embeddings(encoder, target, reference, templates)
    lpips = _lpips_model(settings, device)
    distribution = _real_images(files, G.size, settings, device) if files else None
    with progress_bar(settings.samples, "evaluating", "img") as bar:
        metrics = evaluate_samples(G, row, encoder, target_emb, settings.seeds, settings.truncation,
                                   settings.noise_mode, settings.batch_size, lpips, settings.lpips_samples,
                                   distribution, bar, settings.style_mixing)
    protocol = {"clip_model": settings.clip, "templates": template_name, "target": target,
                "reference": None if reference is None else str(reference), "samples": settings.samples,
                "seeds": f"{settings.seed}-{settings.seeds[-1]}", "truncation": settings.truncation,
                "noise_mode": settings.noise_mode, "style_mixing": 0.0,
                "reference_style_from": domain.style_mixing_from if settings.style_mixing else None,
                "generator": G.identity.get("name"),
                "lpips": None if lpips is None else {"net": settings.lpips,
                                                     "samples": min(settings.lpips_samples, settings.samples),
                                                     "max_size": LPIPS_SIZE,
                                                     "random_backbone": settings.lpips_random_backbone},
                "reference_dir": None if settings.reference_dir is None else str(settings.reference_dir)}
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION,
            "domain": {"file": str(spec.path), "name": row.label, "scale": spec.scale, "kind": domain.kind,
                       "generator": domain.generator.get("name"), "target": domain.metadata.get("target")},
            "protocol": protocol, "metrics": metrics, "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def report_markdown(report: dict[str, Any], name: str) -> str:
    """The protocol in a sentence above the metrics table of one report."""
    p = report["protocol"]
    mixing = mixing_phrase(p.get("reference_style_from"))
    lines = [f"# Evaluation of {name}", "",
             f"CLIP {p['clip_model']}, templates {p['templates']}, {p['samples']} samples (seeds {p['seeds']}), "
             f"truncation ψ = {p['truncation']}, noise {p['noise_mode']}, {mixing}; generator "
             f"{p['generator']}.", "", markdown_table([report], [name])]
    return "\n".join(lines)


def comparison_table(paths: Sequence[Path]) -> str:
    """One Markdown table of the reports written to ``paths`` (one-line error for any other file)."""
    reports = []
    for path in paths:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"cannot read metrics file {path} ({exc}); pass JSON files written by "
                                  "hdn eval") from None
        if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
            raise FileFormatError(f"{path} is not a metrics file written by hdn eval")
        missing = [key for key in ("domain", "protocol", "metrics") if not isinstance(report.get(key), dict)]
        missing += [f"protocol.{key}" for key in COMPARED_PROTOCOL if key not in (report.get("protocol") or {})]
        if missing:
            raise FileFormatError(f"metrics file {path} lacks {', '.join(missing)}; it is damaged or was edited, "
                                  "write it again with hdn eval")
        reports.append(report)
    return markdown_table(reports, [report["domain"].get("name") or p.stem for report, p in zip(reports, paths)])
