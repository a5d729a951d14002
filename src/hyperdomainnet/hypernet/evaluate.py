"""Quality and Diversity of a HyperDomainNet on seen and unseen domains.

For every domain of every list: δ = HyperDomainNet(input) — a prompt through the file's own CLIP
encoder (template "{}"), or that encoder's embedding of a reference image — then N images
G(w_s; δ) on seeds s = seed … seed+N−1 (ψ-truncated; ``metrics.evaluate_samples``) embedded by
the evaluation CLIP encoder, and

    Quality   = mean over images and targets of cos(image, target)   (``metrics.clip_quality``)
    Diversity = mean over image pairs of 1 − cos                     (``metrics.clip_diversity``)

with the target = the prompt in the 79 ImageNet templates (text) or the reference image's
embedding (image). Each list reports the mean and standard deviation over its domains and every
domain's values; the report states the protocol (CLIP model, templates, samples, seeds, ψ, noise,
style mixing).

Image domains render as released image domains do: each reference is II2S-inverted to w_ref
(through the latent cache) and its predicted domain carries w_ref, so every sample's W+ code is
ψ-truncated and then takes layers l ≥ ``MIX_FROM`` (7) from w_ref (``Domain.mix``), unless style
mixing is off.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..clip import IMAGENET_TEMPLATES, ClipEncoder, load_clip
from ..domain.files import MIX_FROM
from ..errors import ConfigError, HDNError
from ..images import FITS, Fit, image_sha256
from ..loaders import load_generator, load_hypernet
from ..metrics import evaluate_samples, mixing_phrase, target_embeddings
from ..progress import progress_bar
from ..render import Row
from ..ranges import LAMBDA_P_RANGE, finite_in
from ..stylegan2.generator import Generator
from ..stylize import InversionOptions, invert_photo
from ..version import __version__
from .domains import list_sha256, load_domain_list, load_image_list
from .model import HyperDomainNet
from .prompts import reference_inputs, vector_domains

REPORT_FORMAT = "hyperdomainnet.hypernet_metrics"
REPORT_VERSION = 1


@dataclass
class EvalList:
    """Domains to measure: labels, hypernetwork inputs (N, E_map) and targets (each (T, E)); for
    reference images rendered with their style, each one's inverted W+ codes ``latents`` (N, L, D)
    and the II2S settings that made them."""

    role: str               # "seen" | "unseen"
    name: str
    sha256: str
    labels: list[str]
    inputs: torch.Tensor
    targets: list[torch.Tensor]
    latents: torch.Tensor | None = None
    inversion: InversionOptions | None = None


def text_list(net: HyperDomainNet, encoder: ClipEncoder, role: str, spec: str,
              exclude: frozenset[str] = frozenset()) -> EvalList:
    """A text domain list (file or built-in), leaving out targets in ``exclude`` (lower case)."""
    domains = load_domain_list(spec)
    labels = [t for t in domains.targets if t.lower() not in exclude]
    inputs = net.embed_prompts(labels) if labels else torch.empty(0, net.embed_dim)
    return EvalList(role, domains.name, domains.sha256, labels, inputs,
                    [target_embeddings(encoder, target=t) for t in labels])


def inversion_settings(trained: dict[str, Any], steps: int | None = None, lambda_p: float | None = None,
                       fit: str | None = None, lpips_random_backbone: bool = False,
                       pnorm_samples: int | None = None) -> InversionOptions:
    """II2S settings for an image hypernetwork's references: each one given, else the one it was
    trained with (``trained``: its file's training config), else the default."""
    default = InversionOptions()
    options = InversionOptions(
        steps=trained.get("invert_steps", default.steps) if steps is None else steps,
        lambda_p=trained.get("lambda_p", default.lambda_p) if lambda_p is None else lambda_p,
        fit=trained.get("fit", default.fit) if fit is None else fit,
        lpips_random_backbone=lpips_random_backbone or bool(trained.get("lpips_random_backbone", False)),
        pnorm_samples=trained.get("pnorm_samples") if pnorm_samples is None else pnorm_samples)
    pnorm = options.pnorm_samples
    if (options.fit not in FITS or not isinstance(options.steps, int) or options.steps < 0
            or not (pnorm is None or isinstance(pnorm, int) and pnorm >= 2)):
        raise ConfigError(f"II2S settings --fit {options.fit!r} --invert-steps {options.steps!r} --pnorm-samples "
                          f"{pnorm!r}: use a fit of {', '.join(FITS)}, at least 0 steps and at least 2 samples")
    finite_in(options.lambda_p, "--lambda-p", LAMBDA_P_RANGE)
    return options


def image_list(net: HyperDomainNet, encoder: ClipEncoder, role: str, path: str | Path, G: Generator,
               fit: Fit = "crop", inversion: InversionOptions | None = None, progress: bool = True) -> EvalList:
    """Reference images listed in a file; inputs are the hypernetwork encoder's embeddings of each
    image fitted to ``G.size`` (as the trainer feeds them). With ``inversion``, each reference is
    also II2S-inverted into ``G`` (latent cache) so that its domain renders with the reference's
    fine W+ layers."""
    paths = load_image_list(path)
    inputs = reference_inputs(net, paths, G.size, fit)
    latents = None
    if inversion is not None:
        latents = torch.cat([invert_photo(G, p, inversion, progress).latent.detach().cpu() for p in paths])
    return EvalList(role, str(path), list_sha256(image_sha256(p) for p in paths), [p.name for p in paths],
                    inputs, [target_embeddings(encoder, reference=p) for p in paths], latents,
                    inversion if latents is not None else None)


def _summary(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def evaluate_lists(net: HyperDomainNet, G: Generator, encoder: ClipEncoder, lists: list[EvalList],
                   seeds: list[int], truncation: float = 1.0, noise_mode: str = "random",
                   batch_size: int = 16, progress: bool = True, style_mixing: bool = True) -> dict[str, Any]:
    """The report (module docstring) for ``lists``; ``len(seeds)`` ≥ 2 samples per domain.
    Lists with reference latents render with the reference's style unless ``style_mixing`` is
    false. ``progress`` draws a bar of rendered images on a terminal."""
    generator = dict(net.metadata.get("generator") or {"name": None})
    results = []
    total = sum(len(item.labels) for item in lists) * len(seeds)
    with progress_bar(total, "evaluating domains", "img", enabled=progress) as bar:
        for item in lists:
            results.append(_evaluate_list(net, G, encoder, item, seeds, truncation, noise_mode,
                                          batch_size, bar, style_mixing))
    inverted = [item.inversion for item in lists if item.latents is not None and style_mixing]
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION,
            "hypernet": {"input": net.metadata.get("input"), "clip_model": net.metadata.get("clip_model"),
                         "generator": generator.get("name"),
                         "domain_lists_sha256": net.metadata.get("domain_lists_sha256")},
            "protocol": {"clip_model": encoder.name,
                         "templates": f"imagenet ({len(IMAGENET_TEMPLATES)})" if net.metadata.get("input") == "text"
                         else "reference image embedding",
                         "samples": len(seeds), "seeds": f"{seeds[0]}-{seeds[-1]}", "truncation": truncation,
                         "noise_mode": noise_mode, "style_mixing": 0.0,
                         "reference_style_from": MIX_FROM if inverted else None,
                         "reference_inversion": asdict(inverted[0]) if inverted and inverted[0] else None,
                         "generator": G.identity.get("name")},
            "lists": results, "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _evaluate_list(net: HyperDomainNet, G: Generator, encoder: ClipEncoder, item: EvalList, seeds: list[int],
                   truncation: float, noise_mode: str, batch_size: int, bar: Any,
                   style_mixing: bool) -> dict[str, Any]:
    """One list's entry of the report: every domain's metrics, their mean and standard deviation."""
    predicted = vector_domains(net, net.domain_vectors(item.inputs.to(next(net.parameters()).device)),
                               [{"target": label} for label in item.labels]) if item.labels else []
    if item.latents is not None:
        predicted = [d.with_reference(item.latents[i:i + 1]) for i, d in enumerate(predicted)]
    domains = []
    for label, domain, target in zip(item.labels, predicted, item.targets):
        row = Row(label, domain)
        bar.set_postfix_str(label[:40], refresh=False)
        metrics = evaluate_samples(G, row, encoder, target, seeds, truncation, noise_mode, batch_size, bar=bar,
                                   style_mixing=style_mixing)
        domains.append({"domain": label, **metrics})
    return {"role": item.role, "name": item.name, "sha256": item.sha256, "count": len(domains),
            "quality": _summary([d["quality"] for d in domains]) if domains else None,
            "diversity": _summary([d["diversity"] for d in domains]) if domains else None,
            "domains": domains}


def seen_list(meta: dict[str, Any], seen: str | None) -> str:
    """``seen``, else the training list the file names, if it is still the one trained on."""
    if seen:
        return seen
    recorded = (meta.get("domain_list") or {}).get("name")
    trained = (meta.get("domain_lists_sha256") or {}).get("train")
    if not recorded:
        raise ConfigError("the hypernetwork file names no training list; pass --seen LIST")
    try:
        current = load_domain_list(recorded).sha256
    except HDNError:
        current = None
    if current != trained:
        raise ConfigError(f"the training list {recorded!r} named in the file is gone or has changed since "
                          "training; pass --seen LIST")
    return recorded


def evaluate_hypernet(path: str | Path, device: torch.device, clip: str, seeds: list[int], seen: str | None = None,
                      unseen: list[str] | None = None, generator: str | None = None, truncation: float = 1.0,
                      noise_mode: str = "random", batch_size: int = 16, progress: bool = True,
                      style_mixing: bool = True, inversion: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report of the HyperDomainNet ``path`` (file or released name) rendered by ``generator``
    (default: the one the file names), measured by the CLIP encoder ``clip``: a text network on
    ``seen`` (default: its training list) and ``unseen`` (default: test-close and test-far), an
    image network on the image lists ``seen`` (required) and ``unseen``, each reference II2S-inverted
    (``inversion``: ``inversion_settings``' arguments) and style-mixed unless ``style_mixing`` is false."""
    net = load_hypernet(path, device)
    meta = net.metadata
    trained_with = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    settings = inversion_settings(trained_with, **(inversion or {}))
    name = generator or (meta.get("generator") or {}).get("name")
    if not name:
        raise ConfigError(f"{path} names no generator; pass --generator")
    G = load_generator(name, device)
    encoder = load_clip(clip, device)
    if meta.get("input") == "image":
        if not seen:
            raise ConfigError("an image hypernetwork is evaluated on reference images: pass --seen IMAGES.txt")
        lists = [image_list(net, encoder, role, spec, G, settings.fit, settings if style_mixing else None, progress)
                 for role, spec in [("seen", seen), *(("unseen", u) for u in unseen or [])]]
    else:
        trained = text_list(net, encoder, "seen", seen_list(meta, seen))
        names = frozenset(label.lower() for label in trained.labels)
        lists = [trained, *(text_list(net, encoder, "unseen", u, names) for u in unseen or ["test-close", "test-far"])]
    report = evaluate_lists(net, G, encoder, lists, seeds, truncation, noise_mode, batch_size, progress=progress,
                            style_mixing=style_mixing)
    report["hypernet"]["file"] = str(path)
    return report


def _mean_std(summary: dict[str, float] | None) -> str:
    if summary is None or math.isnan(summary["mean"]):
        return "—"
    return f"{summary['mean']:.4f} ± {summary['std']:.4f}"


def markdown_report(report: dict[str, Any], title: str) -> str:
    """A summary table (one row per list) and one table of domains per list."""
    p = report["protocol"]
    lines = [f"# HyperDomainNet evaluation: {title}", "",
             f"CLIP {p['clip_model']}, templates {p['templates']}, {p['samples']} samples per domain "
             f"(seeds {p['seeds']}), truncation ψ = {p['truncation']}, noise {p['noise_mode']}, "
             f"{mixing_phrase(p.get('reference_style_from'))}; "
             f"generator {p['generator']}. Mean ± standard deviation over domains.", "",
             "| list | role | domains | Quality ↑ | Diversity ↑ |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['role']} | {r['count']} | {_mean_std(r['quality'])} | {_mean_std(r['diversity'])} |"
              for r in report["lists"]]
    for r in report["lists"]:
        lines += ["", f"## {r['role']}: {r['name']}", "", "| domain | Quality ↑ | Diversity ↑ |", "|---|---|---|"]
        lines += [f"| {d['domain'].replace('|', '/')} | {d['quality']:.4f} | {d['diversity']:.4f} |"
                  for d in r["domains"]]
    return "\n".join(lines) + "\n"
