"""Quality and Diversity of a HyperDomainNet on seen and unseen domains.

For every domain of every list: δ = HyperDomainNet(input) — a prompt through the file's own CLIP
encoder (template "{}"), or that encoder's embedding of a reference image — then N images
G(w_s; δ) on seeds s = seed … seed+N−1 (ψ-truncated; ``metrics.evaluate_samples``) embedded by
the evaluation CLIP encoder, and

    Quality   = mean over images and targets of cos(image, target)   (``metrics.clip_quality``)
    Diversity = mean over image pairs of 1 − cos                     (``metrics.clip_diversity``)

with the target = the prompt in the 79 ImageNet templates (text) or the reference image's
embedding (image). Each list reports the mean and standard deviation over its domains and every
domain's values; the report states the protocol (CLIP model, templates, samples, seeds, ψ, noise).
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..clip import IMAGENET_TEMPLATES, ClipEncoder, load_clip
from ..errors import ConfigError, HDNError
from ..images import image_sha256, load_image
from ..loaders import load_generator
from ..metrics import evaluate_samples, target_embeddings
from ..progress import progress_bar
from ..render import Row
from ..stylegan2.generator import Generator
from ..version import __version__
from .domains import list_sha256, load_domain_list, load_image_list
from .model import HyperDomainNet
from .prompts import vector_domains

REPORT_FORMAT = "hyperdomainnet.hypernet_metrics"
REPORT_VERSION = 1


@dataclass
class EvalList:
    """Domains to measure: labels, hypernetwork inputs (N, E_map) and targets (each (T, E))."""

    role: str               # "seen" | "unseen"
    name: str
    sha256: str
    labels: list[str]
    inputs: torch.Tensor
    targets: list[torch.Tensor]


def text_list(net: HyperDomainNet, encoder: ClipEncoder, role: str, spec: str,
              exclude: frozenset[str] = frozenset()) -> EvalList:
    """A text domain list (file or built-in), leaving out targets in ``exclude`` (lower case)."""
    domains = load_domain_list(spec)
    labels = [t for t in domains.targets if t.lower() not in exclude]
    inputs = net.embed_prompts(labels) if labels else torch.empty(0, net.embed_dim)
    return EvalList(role, domains.name, domains.sha256, labels, inputs,
                    [target_embeddings(encoder, target=t) for t in labels])


def image_list(net: HyperDomainNet, encoder: ClipEncoder, role: str, path: str | Path) -> EvalList:
    """Reference images listed in a file; inputs are the hypernetwork encoder's image embeddings."""
    paths = load_image_list(path)
    mapper = net.input_encoder()
    with torch.no_grad():
        inputs = torch.cat([mapper.encode_images(load_image(p, mapper.input_size)).float() for p in paths])
    return EvalList(role, str(path), list_sha256(image_sha256(p) for p in paths), [p.name for p in paths],
                    inputs, [target_embeddings(encoder, reference=p) for p in paths])


def _summary(values: list[float]) -> dict[str, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return {"mean": float(t.mean()), "std": float(t.std()) if len(values) > 1 else 0.0}


def evaluate_lists(net: HyperDomainNet, G: Generator, encoder: ClipEncoder, lists: list[EvalList],
                   seeds: list[int], truncation: float = 1.0, noise_mode: str = "random",
                   batch_size: int = 16, progress: bool = True) -> dict[str, Any]:
    """The report (module docstring) for ``lists``; ``len(seeds)`` ≥ 2 samples per domain.
    ``progress`` draws a bar of rendered images on a terminal."""
    generator = dict(net.metadata.get("generator") or {"name": None})
    results = []
    total = sum(len(item.labels) for item in lists) * len(seeds)
    with progress_bar(total, "evaluating domains", "img", enabled=progress) as bar:
        for item in lists:
            results.append(_evaluate_list(net, G, encoder, item, seeds, truncation, noise_mode,
                                          batch_size, bar))
    return {"format": REPORT_FORMAT, "version": REPORT_VERSION,
            "hypernet": {"input": net.metadata.get("input"), "clip_model": net.metadata.get("clip_model"),
                         "generator": generator.get("name"),
                         "domain_lists_sha256": net.metadata.get("domain_lists_sha256")},
            "protocol": {"clip_model": encoder.name,
                         "templates": f"imagenet ({len(IMAGENET_TEMPLATES)})" if net.metadata.get("input") == "text"
                         else "reference image embedding",
                         "samples": len(seeds), "seeds": f"{seeds[0]}-{seeds[-1]}", "truncation": truncation,
                         "noise_mode": noise_mode, "style_mixing": 0.0, "generator": G.identity.get("name")},
            "lists": results, "library_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _evaluate_list(net: HyperDomainNet, G: Generator, encoder: ClipEncoder, item: EvalList, seeds: list[int],
                   truncation: float, noise_mode: str, batch_size: int, bar: Any) -> dict[str, Any]:
    """One list's entry of the report: every domain's metrics, their mean and standard deviation."""
    predicted = vector_domains(net, net.domain_vectors(item.inputs.to(next(net.parameters()).device)),
                               [{"target": label} for label in item.labels]) if item.labels else []
    domains = []
    for label, domain, target in zip(item.labels, predicted, item.targets):
        row = Row(label, domain)
        bar.set_postfix_str(label[:40], refresh=False)
        metrics = evaluate_samples(G, row, encoder, target, seeds, truncation, noise_mode, batch_size, bar=bar)
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
                      noise_mode: str = "random", batch_size: int = 16, progress: bool = True) -> dict[str, Any]:
    """The report of the HyperDomainNet ``path`` (file or released name) rendered by ``generator``
    (default: the one the file names), measured by the CLIP encoder ``clip``: a text network on
    ``seen`` (default: its training list) and ``unseen`` (default: test-close and test-far), an
    image network on the image lists ``seen`` (required) and ``unseen``."""
    net = HyperDomainNet.load(path, device)
    meta = net.metadata
    name = generator or (meta.get("generator") or {}).get("name")
    if not name:
        raise ConfigError(f"{path} names no generator; pass --generator")
    G = load_generator(name, device)
    encoder = load_clip(clip, device)
    if meta.get("input") == "image":
        if not seen:
            raise ConfigError("an image hypernetwork is evaluated on reference images: pass --seen IMAGES.txt")
        lists = [image_list(net, encoder, "seen", seen), *(image_list(net, encoder, "unseen", u) for u in unseen or [])]
    else:
        trained = text_list(net, encoder, "seen", seen_list(meta, seen))
        names = frozenset(label.lower() for label in trained.labels)
        lists = [trained, *(text_list(net, encoder, "unseen", u, names) for u in unseen or ["test-close", "test-far"])]
    report = evaluate_lists(net, G, encoder, lists, seeds, truncation, noise_mode, batch_size, progress=progress)
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
             f"(seeds {p['seeds']}), truncation ψ = {p['truncation']}, noise {p['noise_mode']}, no style mixing; "
             f"generator {p['generator']}. Mean ± standard deviation over domains.", "",
             "| list | role | domains | Quality ↑ | Diversity ↑ |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['role']} | {r['count']} | {_mean_std(r['quality'])} | {_mean_std(r['diversity'])} |"
              for r in report["lists"]]
    for r in report["lists"]:
        lines += ["", f"## {r['role']}: {r['name']}", "", "| domain | Quality ↑ | Diversity ↑ |", "|---|---|---|"]
        lines += [f"| {d['domain'].replace('|', '/')} | {d['quality']:.4f} | {d['diversity']:.4f} |"
                  for d in r["domains"]]
    return "\n".join(lines) + "\n"
