"""II2S image inversion into W+ (Zhu et al. 2020, "Improved StyleGAN Embedding"), as used by
HyperDomainNet / MindTheGap for one-shot image domains.

Optimise a W+ code ŵ (B, n_latent, 512), initialised at the mean latent, with Adam on

    loss = mse_weight · MSE(G(ŵ), I)                       (full resolution)
         + lpips_weight · LPIPS-VGG(↓256 G(ŵ), ↓256 I)     (↓256: antialiased bicubic, if size > 256)
         + λ_p · P-norm(ŵ),

    P-norm(ŵ) = mean over (layer, dim) of [((LeakyReLU₅(ŵ) − μ) Cᵀ) / σ]²,

where LeakyReLU with slope 5 undoes the mapping network's last activation (slope 0.2) and μ,
C (principal axes as rows), σ (their standard deviations) are PCA statistics of 10⁶ mapped w in
that "P space" (:class:`PNormStats`, cached per mapping network under ``HDN_HOME/pnorm``).
Official settings (HyperDomainNet ``core/style_embed_options.py``): 1000 steps, lr 0.01, MSE
and LPIPS weights 1, λ_p 1e-3 (MindTheGap uses 1e-2). ``cached_invert`` caches latents by image
hash, generator weights and settings under ``HDN_HOME/latents``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import fileformat, paths
from .images import Fit, image_sha256, load_image
from .latent import FORMAT as LATENT_FORMAT
from .latent import FORMAT_VERSION as LATENT_VERSION
from .perceptual import load_lpips
from .progress import progress_bar

log = logging.getLogger(__name__)

PNORM_SAMPLES = 1_000_000
PNORM_SLOPE = 5.0
PNORM_CHUNK = 10_000
PNORM_DIR = "pnorm"
PNORM_FORMAT = "hyperdomainnet.pnorm"
PNORM_VERSION = 1
LPIPS_SIZE = 256
LOSS_KEYS: tuple[str, ...] = ("total", "mse", "lpips", "p_norm")

__all__ = ["PNORM_SAMPLES", "PNormStats", "pnorm_stats", "mapped_latents", "pulse_space",
           "weights_sha256", "InversionResult", "invert", "cached_invert"]


# ----- P-norm statistics ---------------------------------------------------------------------
def pulse_space(w: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(slope 5): maps w back before the mapping network's last LeakyReLU(0.2)."""
    return F.leaky_relu(w, negative_slope=PNORM_SLOPE)


@torch.no_grad()
def mapped_latents(G: torch.nn.Module, n: int, seed: int = 0,
                   chunk: int = PNORM_CHUNK) -> Iterator[torch.Tensor]:
    """``n`` mapped w = G.mapping(z), z ~ N(0, I) from a CPU generator seeded ``seed``, in chunks."""
    gen = torch.Generator().manual_seed(seed)
    device = G.latent_avg.device
    for start in range(0, n, chunk):
        z = torch.randn(min(chunk, n - start), G.style_dim, generator=gen)
        yield G.mapping(z.to(device))


def weights_sha256(module: torch.nn.Module, prefix: str = "") -> str:
    """SHA-256 over the names, shapes, dtypes and bytes of the state_dict entries under ``prefix``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        if name.startswith(prefix):
            t = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class PNormStats:
    """PCA of P-space codes p = LeakyReLU₅(w): mean μ (D,), principal axes C (D, D) as rows in
    order of decreasing variance, their standard deviations σ (D,)."""

    mean: torch.Tensor
    components: torch.Tensor
    std: torch.Tensor
    n_samples: int
    seed: int = 0

    @classmethod
    @torch.no_grad()
    def compute(cls, G: torch.nn.Module, n_samples: int = PNORM_SAMPLES, seed: int = 0,
                chunk: int = PNORM_CHUNK) -> PNormStats:
        """Statistics of ``n_samples`` mapped latents, accumulated in float64 chunk by chunk
        (memory O(chunk·D + D²)); covariance with the unbiased 1/(N−1), as sklearn's PCA."""
        if n_samples < 2:
            raise ValueError("n_samples must be at least 2")
        dim = G.style_dim
        device = G.latent_avg.device
        total = torch.zeros(dim, dtype=torch.float64, device=device)
        outer = torch.zeros(dim, dim, dtype=torch.float64, device=device)
        for w in mapped_latents(G, n_samples, seed, chunk):
            p = pulse_space(w).double()
            total += p.sum(0)
            outer += p.T @ p
        mean = total / n_samples
        cov = (outer - n_samples * torch.outer(mean, mean)) / (n_samples - 1)
        variances, vectors = torch.linalg.eigh(cov)
        variances, vectors = variances.flip(0), vectors.flip(1)
        std = variances.clamp_min(variances[0].item() * 1e-12).sqrt()
        return cls(mean.float(), vectors.T.contiguous().float(), std.float(), n_samples, seed)

    def whiten(self, latent: torch.Tensor) -> torch.Tensor:
        """(LeakyReLU₅(latent) − μ) Cᵀ / σ, over the last dimension."""
        return (pulse_space(latent) - self.mean) @ self.components.T / self.std

    def loss(self, latent: torch.Tensor) -> torch.Tensor:
        """P-norm per sample: mean square of the whitened code, (B, …, D) → (B,)."""
        return self.whiten(latent).pow(2).flatten(1).mean(1)

    def to(self, device: str | torch.device) -> PNormStats:
        return PNormStats(self.mean.to(device), self.components.to(device), self.std.to(device),
                          self.n_samples, self.seed)


def _check_shapes(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError naming the first cached tensor whose shape is not the expected one (a stale cache)."""
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")


def _pnorm_path(G: torch.nn.Module, n_samples: int, seed: int) -> tuple[Path, str]:
    mapping_sha = weights_sha256(G, prefix="style.")
    return paths.subdir(PNORM_DIR) / f"{mapping_sha[:16]}-n{n_samples}-s{seed}.safetensors", mapping_sha


def pnorm_stats(G: torch.nn.Module, n_samples: int = PNORM_SAMPLES, seed: int = 0,
                cache: bool = True) -> PNormStats:
    """:class:`PNormStats` of ``G``'s mapping network, loaded from or written to the cache.

    The cache key is the hash of the mapping weights (so generators fine-tuned from one source
    share it), ``n_samples`` and ``seed``. An unreadable cache file is recomputed.
    """
    device = G.latent_avg.device
    path, mapping_sha = _pnorm_path(G, n_samples, seed)
    if cache and path.is_file():
        try:
            tensors, meta = fileformat.load(path, file_format=PNORM_FORMAT, max_version=PNORM_VERSION,
                                            what="P-norm cache file", required=("mapping_sha256",))
            if meta["mapping_sha256"] == mapping_sha:
                dim = G.style_dim
                _check_shapes(tensors, {"mean": (dim,), "components": (dim, dim), "std": (dim,)})
                return PNormStats(tensors["mean"], tensors["components"], tensors["std"],
                                  n_samples, seed).to(device)
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(f"ignoring unreadable P-norm cache {path} ({exc}); recomputing", stacklevel=2)
    log.info("computing P-norm PCA statistics from %d mapped latents (once per generator)", n_samples)
    stats = PNormStats.compute(G, n_samples, seed)
    if cache:
        meta = {"n_samples": n_samples, "seed": seed, "negative_slope": PNORM_SLOPE, "mapping_sha256": mapping_sha,
                "generator": getattr(G, "identity", None)}
        fileformat.save(path, {"mean": stats.mean, "components": stats.components, "std": stats.std}, meta,
                        file_format=PNORM_FORMAT, version=PNORM_VERSION)
    return stats


# ----- inversion -----------------------------------------------------------------------------
@dataclass
class InversionResult:
    """The W+ code, per-step losses (before each update, summed over the batch; keys ``LOSS_KEYS``),
    G(latent) and ``image_losses``: each image's own losses at the last step (empty without steps)."""

    latent: torch.Tensor
    losses: list[dict[str, float]]
    reconstruction: torch.Tensor
    cached: bool = False
    image_losses: list[dict[str, float]] = field(default_factory=list)


def downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bicubic resize to ``size`` (identity when already that size). For integer
    factors this equals the official BicubicDownSample away from the border (reflect-padded there)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)


def _render(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str,
            generator: torch.Generator | None) -> torch.Tensor:
    """G.synthesis(ws); random noise is drawn from ``generator`` so runs can be reproduced."""
    noise = G.make_noise("random", ws.shape[0], ws.device, generator) if noise_mode == "random" else None
    return G.synthesis(ws, noise_mode=noise_mode, noise=noise)


@contextmanager
def _progress(steps: int, enabled: bool) -> Iterator[Callable[[float], None]]:
    """A callback advancing the project's progress bar by one step, showing the loss."""
    with progress_bar(steps, "II2S inversion", unit="step", enabled=enabled, leave=False) as bar:
        def advance(loss: float) -> None:
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            bar.update()

        yield advance


def invert(G: torch.nn.Module, image: torch.Tensor, steps: int = 1000, lr: float = 0.01,
           lambda_p: float = 1e-3, lpips_net: torch.nn.Module | None = None, mse_weight: float = 1.0,
           lpips_weight: float = 1.0, noise_mode: str = "const", progress: bool = True,
           generator: torch.Generator | None = None, pnorm: PNormStats | None = None,
           init: torch.Tensor | None = None) -> InversionResult:
    """II2S: fit W+ codes to images (B, 3, H, W) in [−1, 1] (resized to G.size if needed).

    Each image's loss (module docstring) is optimised independently — Adam is element-wise and
    the batch loss is the sum of per-image losses. ``lpips_net`` defaults to
    ``load_lpips("vgg")``, ``pnorm`` to ``pnorm_stats(G)``. The start is the mean latent in every
    W+ entry, or ``init`` (B, n_latent, D), e.g. an encoder's code. ``noise_mode="const"``
    renders with the generator's stored noise, as the research code does (its generator's
    default); ``"random"`` draws fresh noise each step from ``generator`` instead.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
    if steps < 0:
        raise ValueError("steps must be ≥ 0")
    device = G.latent_avg.device
    target = downsample(image.detach().to(device, torch.float32), G.size)
    batch = target.shape[0]
    small = min(G.size, LPIPS_SIZE)
    target_small = downsample(target, small)
    lpips_net = lpips_net if lpips_net is not None else load_lpips("vgg", device)
    pnorm = (pnorm if pnorm is not None else pnorm_stats(G)).to(device)

    if init is None:
        latent = G.mean_latent().detach().clone()[None, None].repeat(batch, G.n_latent, 1)
    elif init.shape != (batch, G.n_latent, G.style_dim):
        raise ValueError(f"init must have shape {(batch, G.n_latent, G.style_dim)}, got {tuple(init.shape)}")
    else:
        latent = init.detach().to(device, torch.float32).clone()
    latent.requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=lr)
    history: list[dict[str, float]] = []
    last: list[torch.Tensor] = []
    with _progress(steps, progress) as advance:
        for _ in range(steps):
            rendered = _render(G, latent, noise_mode, generator)
            mse = (rendered - target).pow(2).flatten(1).mean(1)
            perceptual = lpips_net(downsample(rendered, small), target_small).flatten()
            p_norm = pnorm.loss(latent)
            per_image = mse_weight * mse + lpips_weight * perceptual + lambda_p * p_norm
            total = per_image.sum()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            history.append({"total": total.item(), "mse": mse.sum().item(),
                            "lpips": perceptual.sum().item(), "p_norm": p_norm.sum().item()})
            advance(history[-1]["total"])
            last = [per_image, mse, perceptual, p_norm]
    latent = latent.detach()
    with torch.no_grad():
        reconstruction = _render(G, latent, noise_mode, generator)
    rows = torch.stack(last, 1).detach().tolist() if last else []    # (B, len(LOSS_KEYS))
    return InversionResult(latent, history, reconstruction, image_losses=[dict(zip(LOSS_KEYS, r)) for r in rows])


# ----- latent cache --------------------------------------------------------------------------
def _latent_cache_path(G: torch.nn.Module, image_path: str | Path, image_sha: str,
                       settings: dict[str, Any]) -> Path:
    """Cache file for (image bytes, generator weights, settings): ``HDN_HOME/latents/<stem>-<key>``."""
    G.mean_latent()
    key = {"format": LATENT_FORMAT, "version": LATENT_VERSION, "image_sha256": image_sha,
           "generator_sha256": weights_sha256(G), "settings": settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(image_path).stem)[:40] or "image"
    return paths.latents_dir() / f"{stem}-{digest[:20]}.safetensors"


def cached_invert(G: torch.nn.Module, image_path: str | Path, steps: int = 1000, lr: float = 0.01,
                  lambda_p: float = 1e-3, mse_weight: float = 1.0, lpips_weight: float = 1.0,
                  noise_mode: str = "const", fit: Fit = "crop", lpips: str = "vgg",
                  lpips_random_backbone: bool = False, pnorm_samples: int = PNORM_SAMPLES,
                  progress: bool = True, generator: torch.Generator | None = None,
                  cache: bool = True) -> InversionResult:
    """``invert`` of ``load_image(image_path, G.size, fit)``, cached: a second call with the same
    image bytes, generator weights and settings loads the latent instead of optimising."""
    settings = {"steps": steps, "lr": lr, "lambda_p": lambda_p, "mse_weight": mse_weight,
                "lpips_weight": lpips_weight, "noise_mode": noise_mode, "fit": fit, "lpips": lpips,
                "lpips_random_backbone": lpips_random_backbone, "pnorm_samples": pnorm_samples,
                "size": G.size}
    image_sha = image_sha256(image_path)
    path = _latent_cache_path(G, image_path, image_sha, settings)
    device = G.latent_avg.device
    if cache and path.is_file():
        try:
            tensors, meta = fileformat.load(path, file_format=LATENT_FORMAT, max_version=LATENT_VERSION,
                                            what="latent cache file", required=("loss_keys",))
            _check_shapes(tensors, {"latent": (1, G.n_latent, G.style_dim)})
            latent = tensors["latent"].to(device)
            losses = [dict(zip(meta["loss_keys"], row)) for row in tensors["losses"].tolist()]
            with torch.no_grad():
                reconstruction = _render(G, latent, noise_mode, generator)
            return InversionResult(latent, losses, reconstruction, cached=True)
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(f"ignoring unreadable latent cache {path} ({exc}); inverting again", stacklevel=2)
    image = load_image(image_path, G.size, fit)
    result = invert(G, image, steps=steps, lr=lr, lambda_p=lambda_p,
                    lpips_net=load_lpips(lpips, device, lpips_random_backbone), mse_weight=mse_weight,
                    lpips_weight=lpips_weight, noise_mode=noise_mode, progress=progress,
                    generator=generator, pnorm=pnorm_stats(G, pnorm_samples))
    if cache:
        losses = torch.tensor([[h[k] for k in LOSS_KEYS] for h in result.losses], dtype=torch.float32)
        meta = {"image": str(image_path), "image_sha256": image_sha, "generator": getattr(G, "identity", None),
                "settings": settings, "loss_keys": list(LOSS_KEYS)}
        fileformat.save(path, {"latent": result.latent.detach().float(), "losses": losses.reshape(-1, len(LOSS_KEYS))},
                        meta, file_format=LATENT_FORMAT, version=LATENT_VERSION)
        log.info("cached the inverted latent of %s in %s", image_path, path)
    return result
