"""``hdn hypernet train`` / ``hdn hypernet eval``: the multi-domain HyperDomainNet.

Training runs data-parallel when launched by ``torchrun`` (docs/DISTRIBUTED.md).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..hypernet.domains import BUILTIN_LISTS
from .app import app
from .train_options import (BETAS, CONFIG, GENERATOR, GRID_EVERY, GRID_SAMPLES, LOG_EVERY, LOW_MEMORY, LR, MIXING,
                            NOISE_MODE, OUT, PRECISION, PROGRESS, RESUME, SAVE_EVERY, SEED, STEPS, TENSORBOARD, WANDB,
                            WEIGHT_DECAY, parse_betas, parse_losses, run_settings)

hypernet_app = typer.Typer(no_args_is_help=True, help="Train and evaluate HyperDomainNet hypernetworks.")
app.add_typer(hypernet_app, name="hypernet")

LISTS_HELP = ", ".join(BUILTIN_LISTS)


@hypernet_app.command("train")
def train(
    out: Path = OUT,
    generator: Optional[str] = GENERATOR,
    domains: Optional[str] = typer.Option(None, help=f"'Target - Source' list file or built-in list: {LISTS_HELP}."),
    images: Optional[Path] = typer.Option(None, help="Text file listing reference images (image variant)."),
    test_domains: Optional[str] = typer.Option(None, help="List whose unseen prompts join the preview grids."),
    preset: Optional[str] = typer.Option(None, help="td_multiple (default for --domains), td_multiple_base, "
                                                    "im2im_multiple_base (default for --images)."),
    config: Optional[Path] = CONFIG,
    steps: Optional[int] = STEPS,
    batch: Optional[int] = typer.Option(None, help="Global batch (split over torchrun processes)."),
    lr: Optional[float] = LR,
    betas: Optional[str] = BETAS,
    weight_decay: Optional[float] = WEIGHT_DECAY,
    mixing: Optional[float] = MIXING,
    noise_mode: Optional[str] = NOISE_MODE,
    loss: Optional[list[str]] = typer.Option(None, help="NAME=COEF, repeatable: direction, tt_direction, global, "
                                                        "offsets_l2, offsets_l1 (+ clip_within, clip_ref, l2_rec, "
                                                        "lpips_rec for --images)."),
    clip: Optional[str] = typer.Option(None, help="CLIP ensemble of the losses, e.g. 'ViT-B/32:1.0,ViT-B/16:1.0'."),
    mapper_clip: Optional[str] = typer.Option(None, help="CLIP encoder of the hypernetwork's input (ViT-B/32)."),
    width: Optional[int] = typer.Option(None, help="Hypernetwork width."),
    depth: Optional[int] = typer.Option(None, help="Backbone depth (stem + residual blocks)."),
    head_depth: Optional[int] = typer.Option(None, help="Head depth (residual blocks + output layer)."),
    convex_hull: Optional[bool] = typer.Option(None, "--convex-hull/--no-convex-hull", help="Dirichlet convex-hull mixing."),
    resample: Optional[bool] = typer.Option(None, "--resample/--no-resample", help="Cosine-bounded resampling."),
    resample_cos: Optional[float] = typer.Option(None, help="Lower cosine bound of the resampling."),
    crop: Optional[float] = typer.Option(None, help="Side of the random square crops before CLIP (1 = off)."),
    quirks: Optional[str] = typer.Option(None, help="corrected (default) | official (the released trainer's behaviour)."),
    invert_steps: Optional[int] = typer.Option(None, help="II2S steps per reference image."),
    lpips_random_backbone: Optional[bool] = typer.Option(None, "--lpips-random-backbone/--no-lpips-random-backbone",
                                                         help="LPIPS with random backbone weights (offline tests)."),
    pnorm_samples: Optional[int] = typer.Option(None, help="Mapped latents for the inversion's P-norm statistics."),
    seed: Optional[int] = SEED,
    device: Optional[str] = typer.Option(None, help="auto | cpu | cuda (| cuda:N in one process)."),
    precision: Optional[str] = PRECISION,
    low_memory: Optional[bool] = LOW_MEMORY,
    log_every: Optional[int] = LOG_EVERY,
    save_every: Optional[int] = SAVE_EVERY,
    grid_every: Optional[int] = GRID_EVERY,
    grid_samples: Optional[int] = GRID_SAMPLES,
    tensorboard: Optional[bool] = TENSORBOARD,
    wandb: Optional[bool] = WANDB,
    resume: bool = RESUME,
    progress: bool = PROGRESS,
) -> None:
    """Train a HyperDomainNet on many text domains (or reference images); runs under torchrun too."""
    from ..training.config import HypernetConfig, build_config
    from ..training.distributed import run_distributed, shutdown_distributed
    from ..training.multi_image import ImageHypernetTrainer
    from ..training.multi_text import TextHypernetTrainer

    overrides = dict(generator=generator, domains=domains, images=None if images is None else str(images),
                     test_domains=test_domains, steps=steps, batch=batch, lr=lr, betas=parse_betas(betas),
                     weight_decay=weight_decay, mixing=mixing, noise_mode=noise_mode, losses=parse_losses(loss),
                     clip=clip, mapper_clip=mapper_clip, width=width, depth=depth, head_depth=head_depth,
                     convex_hull=convex_hull, resample=resample, resample_cos=resample_cos, crop=crop,
                     quirks=quirks, invert_steps=invert_steps, lpips_random_backbone=lpips_random_backbone,
                     pnorm_samples=pnorm_samples, seed=seed, device=device, precision=precision,
                     log_every=log_every, save_every=save_every, grid_every=grid_every, grid_samples=grid_samples,
                     tensorboard=tensorboard, wandb=wandb, low_memory=low_memory)
    preset = preset or ("im2im_multiple_base" if images is not None else "td_multiple")
    layers = run_settings(out, resume, preset, config, overrides,
                           trainer="multi_image" if images is not None else "multi_text")
    cfg = build_config(HypernetConfig, *layers)
    try:
        trainer = ImageHypernetTrainer(cfg, progress=progress) if cfg.images is not None else TextHypernetTrainer(cfg)
        result = run_distributed(trainer, out, trainer.dist, resume=resume, progress=progress)
        if trainer.dist.is_main:
            typer.echo(f"HyperDomainNet trained on {cfg.images or cfg.domains}: {result}")
    finally:
        shutdown_distributed()


def _seen_list(meta: dict, seen: Optional[str]) -> str:
    """--seen, else the training list the file names, if it is still the one trained on."""
    from ..errors import HDNError
    from ..hypernet.domains import load_domain_list

    if seen:
        return seen
    recorded = (meta.get("domain_list") or {}).get("name")
    trained = (meta.get("domain_lists_sha256") or {}).get("train")
    if not recorded:
        raise HDNError("the hypernetwork file names no training list; pass --seen LIST")
    try:
        current = load_domain_list(recorded).sha256
    except HDNError:
        current = None
    if current != trained:
        raise HDNError(f"the training list {recorded!r} named in the file is gone or has changed since "
                       "training; pass --seen LIST")
    return recorded


@hypernet_app.command("eval")
def evaluate(
    hypernet: Path = typer.Option(..., "--hypernet", help="HyperDomainNet file (hypernet.safetensors)."),
    out: Path = typer.Option(..., "--out", help="Folder for metrics.json and metrics.md (created)."),
    seen: Optional[str] = typer.Option(None, help="Seen domains: text list (default: the training list) or, "
                                                  "for an image hypernetwork, an image list file."),
    unseen: Optional[list[str]] = typer.Option(None, help="Unseen domains, repeatable (default for text: "
                                                          "test-close and test-far)."),
    generator: Optional[str] = typer.Option(None, help="Generator (default: the one the file names)."),
    clip: str = typer.Option("ViT-B/16", help="CLIP encoder for Quality/Diversity (official notebook: ViT-B/16)."),
    samples: int = typer.Option(500, help="Images per domain (seeds SEED … SEED+SAMPLES−1)."),
    seed: int = typer.Option(0, help="First seed."),
    truncation: float = typer.Option(1.0, help="Truncation ψ."),
    noise_mode: str = typer.Option("random", help="random (seeded) | const | none."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Quality and Diversity (DESIGN §7) on seen and unseen domains, as JSON and a Markdown table."""
    import json

    from ..atomic import atomic_path
    from ..clip import load_clip
    from ..errors import HDNError
    from ..hypernet import HyperDomainNet
    from ..hypernet.evaluate import evaluate_lists, image_list, markdown_report, text_list
    from ..loaders import load_generator
    from ..training.runtime import resolve_device

    if samples < 2:
        raise HDNError(f"--samples must be at least 2 (diversity compares pairs), got {samples}")
    dev = resolve_device(device)
    net = HyperDomainNet.load(hypernet, dev)
    meta = net.metadata
    name = generator or (meta.get("generator") or {}).get("name")
    if not name:
        raise HDNError(f"{hypernet} names no generator; pass --generator")
    G = load_generator(name, dev)
    encoder = load_clip(clip, dev)
    if meta.get("input") == "image":
        if not seen:
            raise HDNError("an image hypernetwork is evaluated on reference images: pass --seen IMAGES.txt")
        lists = [image_list(net, encoder, "seen", seen), *(image_list(net, encoder, "unseen", u) for u in unseen or [])]
    else:
        seen_list = text_list(net, encoder, "seen", _seen_list(meta, seen))
        trained = frozenset(label.lower() for label in seen_list.labels)
        lists = [seen_list, *(text_list(net, encoder, "unseen", u, trained) for u in unseen or ["test-close", "test-far"])]
    report = evaluate_lists(net, G, encoder, lists, list(range(seed, seed + samples)), truncation, noise_mode,
                            batch_size)
    report["hypernet"]["file"] = str(hypernet)
    out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(report, hypernet.name)
    for name, text in (("metrics.json", json.dumps(report, indent=2) + "\n"), ("metrics.md", markdown)):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    typer.echo(markdown + f"\nwritten to {out / 'metrics.json'} and {out / 'metrics.md'}")
