"""Evaluation metrics of an adapted generator and their reports.

CLIP metrics, on L2-normalised embeddings (the official evaluation notebook, ``Evaluator``):

* Quality  Q = 1/(N·T) Σ_n Σ_k cos(x_n, t_k): mean cosine over every generated image x_n and every
  target embedding t_k (the T template embeddings of the target text, each normalised; or the
  reference image's embedding for image domains).
* Diversity  D = 2/(N(N−1)) Σ_{i<j} (1 − cos(x_i, x_j)): mean over image pairs.

LPIPS intra-cluster diversity (few-shot adaptation work): assign each image to its nearest
center by LPIPS, average the pairwise LPIPS within each cluster of ≥ 2 images, then over
clusters; without centers, all images form one cluster (the one-shot case).

FID and KID against reference images use torchmetrics (``FrechetInceptionDistance``,
``KernelInceptionDistance``) on uint8 images, sharing one feature extractor: the standard
Inception-v3 (weights fetched by torch-fidelity on first use) unless a module is given. Both
packages come with the ``eval`` extra (``pip install 'hyperdomainnet[eval]'``).

Reports (``hdn eval``'s JSON) are dicts ``{"format": REPORT_FORMAT, "version", "domain": {...},
"protocol": {...}, "metrics": {...}}``; :func:`markdown_table` lays out one or many side by side.
"""
from __future__ import annotations

import importlib.util
import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .clip import IMAGENET_TEMPLATES, ClipEncoder, fill_templates
from .errors import ConfigError, DownloadError, FileFormatError, first_line
from .images import load_image
from .render import Row, iter_render
from .stylegan2.generator import Generator

EVAL_EXTRA_HINT = "pip install 'hyperdomainnet[eval]'"
REPORT_FORMAT = "hyperdomainnet.metrics"
LPIPS_SIZE = 256
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("quality", "Quality ↑"), ("diversity", "Diversity ↑"), ("lpips_diversity", "LPIPS div. ↑"),
    ("fid", "FID ↓"), ("kid", "KID ↓"))

__all__ = ["clip_quality", "clip_diversity", "lpips_diversity", "target_embeddings", "DistributionMetrics",
           "require_distribution_metrics",
           "reference_images", "evaluate_samples", "mixing_phrase", "markdown_table"]


def clip_quality(image_emb: torch.Tensor, target_emb: torch.Tensor) -> float:
    """Q = mean over n, k of cos(image_emb[n], target_emb[k]); (N, E) and (T, E) → float."""
    x = F.normalize(image_emb.double(), dim=-1)
    t = F.normalize(target_emb.double().to(x.device), dim=-1)
    return float((x @ t.T).mean())


def clip_diversity(image_emb: torch.Tensor) -> float:
    """D = mean over pairs i < j of 1 − cos(image_emb[i], image_emb[j]); (N ≥ 2, E) → float."""
    n = image_emb.shape[0]
    if n < 2:
        raise ValueError(f"diversity needs at least 2 images, got {n}")
    x = F.normalize(image_emb.double(), dim=-1)
    gram = x @ x.T  # symmetric: the pairs i < j hold half of the off-diagonal sum
    return float(1 - (gram.sum() - gram.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def _lpips_pairs(model: nn.Module, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> torch.Tensor:
    """LPIPS(a[m], b[m]) for each m, in batches: (M,)."""
    device = next(model.parameters()).device
    return torch.cat([model(a[s:s + batch_size].to(device), b[s:s + batch_size].to(device)).flatten().cpu()
                      for s in range(0, a.shape[0], batch_size)])


def lpips_diversity(images: torch.Tensor, model: nn.Module, centers: torch.Tensor | None = None,
                    batch_size: int = 16) -> float:
    """Intra-cluster LPIPS diversity of (N, 3, H, W) images in [−1, 1] (see the module docstring).

    ``centers`` (K, 3, H, W): cluster by nearest center (LPIPS); None: one cluster.
    """
    n = images.shape[0]
    if centers is None:
        labels = torch.zeros(n, dtype=torch.long)
    else:
        k = centers.shape[0]
        dist = _lpips_pairs(model, images.repeat_interleave(k, 0), centers.repeat(n, 1, 1, 1), batch_size)
        labels = dist.view(n, k).argmin(1)
    means = []
    for cluster in labels.unique():
        members = (labels == cluster).nonzero().flatten()
        if len(members) < 2:
            continue
        i, j = torch.triu_indices(len(members), len(members), offset=1)
        means.append(_lpips_pairs(model, images[members[i]], images[members[j]], batch_size).double().mean())
    if not means:
        raise ValueError("LPIPS diversity needs a cluster with at least 2 images")
    return float(torch.stack(means).mean())


def target_embeddings(encoder: ClipEncoder, target: str | None = None, reference: Path | None = None,
                      templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
    """(T, E) normalised targets: ``target`` filled into each template, or the ``reference`` image."""
    if reference is not None:
        with torch.no_grad():
            return encoder.encode_images(load_image(reference, encoder.input_size))
    if not target or not target.strip():
        raise ConfigError("no target to evaluate against (none given or empty): pass --target TEXT or "
                          "--reference IMAGE")
    return encoder.encode_text(fill_templates(target, tuple(templates)))


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → uint8 [0, 255], rounded as ``images.to_pil``."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _inception() -> nn.Module:
    """torchmetrics' Inception-v3 (2048-d pool features); one-line error when it cannot be fetched."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise DownloadError(f"could not get the Inception-v3 weights for FID/KID ({first_line(exc, 120)}); "
                            "connect to the internet once (torch-fidelity caches them in ~/.cache/torch/hub) "
                            "or leave out --reference-dir") from None
    net.num_features = 2048
    return net


def require_distribution_metrics(inception: bool = True) -> None:
    """One-line error unless the packages FID/KID need are installed: torchmetrics, and torch-fidelity
    for the standard Inception-v3 (``inception``)."""
    needed = ("torchmetrics", "torch_fidelity") if inception else ("torchmetrics",)
    missing = [name.replace("_", "-") for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"FID/KID need {' and '.join(missing)}, which are not installed: {EVAL_EXTRA_HINT}, "
                          "or leave out --reference-dir")


class DistributionMetrics:
    """FID and KID between generated and reference images fed in batches (images in [−1, 1]).

    KID uses subsets of min(``kid_subset_size``, N_real, N_fake) images, drawn with a fixed seed.
    """

    def __init__(self, feature: nn.Module | None = None, kid_subset_size: int = 1000, kid_subsets: int = 100,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        require_distribution_metrics(inception=feature is None)
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        feature = _inception() if feature is None else feature
        self.fid = FrechetInceptionDistance(feature=feature).to(device)
        self.kid = KernelInceptionDistance(feature=feature, subsets=kid_subsets,
                                           subset_size=kid_subset_size).to(device)
        self.device, self.seed, self.kid_subset_size = torch.device(device), seed, kid_subset_size
        self.counts = {True: 0, False: 0}

    @torch.no_grad()
    def update(self, images: torch.Tensor, real: bool) -> None:
        batch = _to_uint8(images).to(self.device)
        self.fid.update(batch, real=real)
        self.kid.update(batch, real=real)
        self.counts[real] += images.shape[0]

    def compute(self) -> dict[str, float]:
        """{"fid", "kid", "kid_std", "n_reference"}; needs ≥ 2 images on each side."""
        if min(self.counts.values()) < 2:
            raise ConfigError(f"FID/KID need at least 2 generated and 2 reference images, got "
                              f"{self.counts[False]} and {self.counts[True]}; add images or raise --n")
        self.kid.subset_size = min(self.kid_subset_size, *self.counts.values())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid, kid_std = self.kid.compute()
        return {"fid": float(self.fid.compute()), "kid": float(kid), "kid_std": float(kid_std),
                "kid_subset_size": self.kid.subset_size, "n_reference": self.counts[True]}


def reference_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; one-line error if there are none."""
    if not folder.is_dir():
        raise FileFormatError(f"reference folder {folder} does not exist; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileFormatError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


@torch.no_grad()
def evaluate_samples(G: Generator, row: Row, encoder: ClipEncoder, target_emb: torch.Tensor,
                     seeds: Sequence[int], truncation: float = 1.0, noise_mode: str = "random",
                     batch_size: int = 16, lpips: nn.Module | None = None, lpips_samples: int = 100,
                     distribution: DistributionMetrics | None = None, bar: Any = None,
                     style_mixing: bool = True) -> dict[str, float]:
    """Render ``row`` on ``seeds`` in batches (an image domain style-mixed unless ``style_mixing`` is
    false, ``render.iter_render``) and measure it: quality, diversity, and when given,
    LPIPS diversity over the first ``lpips_samples`` images (at ≤ 256 px) and FID/KID (the caller
    has fed the reference images to ``distribution``). ``bar`` (a progress bar) advances by the
    images of each batch."""
    embeddings: list[torch.Tensor] = []
    kept: list[torch.Tensor] = []
    for _, images in iter_render(G, [row], seeds, truncation, noise_mode, batch_size, style_mixing):
        embeddings.append(encoder.encode_images(images).double().cpu())
        if lpips is not None and sum(k.shape[0] for k in kept) < lpips_samples:
            small = F.interpolate(images, size=LPIPS_SIZE, mode="area") if G.size > LPIPS_SIZE else images
            kept.append(small.float().cpu())
        if distribution is not None:
            distribution.update(images, real=False)
        if bar is not None:
            bar.update(images.shape[0])
    emb = torch.cat(embeddings)
    result = {"quality": clip_quality(emb, target_emb), "diversity": clip_diversity(emb)}
    if lpips is not None:
        result["lpips_diversity"] = lpips_diversity(torch.cat(kept)[:lpips_samples], lpips,
                                                    batch_size=batch_size)
    if distribution is not None:
        result.update(distribution.compute())
    return result


def mixing_phrase(first: int | None) -> str:
    """How a report's image domains were rendered, for its protocol sentence: ``first`` is the
    first W+ layer taken from the reference (``reference_style_from``), None for no mixing."""
    return "no style mixing" if first is None else f"the reference's style from W+ layer {first}"


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")


def markdown_table(reports: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    """One Markdown table row per report: protocol (target, CLIP, templates, samples, ψ, seeds) and
    metrics (— where not measured)."""
    head = ["run", "target", "CLIP", "templates", "samples", "ψ", "seeds", *(title for _, title in TABLE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, report in zip(names, reports):
        p, m = report["protocol"], report["metrics"]
        cells = [name, p.get("target") or p.get("reference"), p["clip_model"], p["templates"], p["samples"],
                 str(p["truncation"]), p["seeds"], *(m.get(key) for key, _ in TABLE_COLUMNS)]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
