"""``hdn generate`` (grids, individual images, interpolation videos) and ``hdn prune``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError
from ..paths import unique_names
from . import options
from .app import app
from .console import CAPTIONS


def _parse_range(text: str) -> tuple[float, float]:
    from ..ranges import STRENGTH, finite_in

    ends = text.split(":")
    if len(ends) != 2:
        raise ConfigError(f"--alpha-sweep {text!r}: give START:END, e.g. 0:1")
    lo, hi = (finite_in(v, f"each end of --alpha-sweep {text!r}", STRENGTH) for v in ends)
    return lo, hi


def _choose_seeds(seeds: Optional[str], seed: int, n: int) -> list[int]:
    from ..render import parse_seeds
    from ..seeds import MAX_SEEDS, seed_range

    if seeds is not None:
        return parse_seeds(seeds)
    if not 1 <= n <= MAX_SEEDS:
        raise ConfigError(f"--n must be in [1, {MAX_SEEDS:,}], got --n {n}")
    return list(seed_range(seed, n))


def _load_specs(texts: list[str]) -> list[tuple[str, float, Any]]:
    """``FILE[*α]`` texts → [(row label, α, Domain)]; labels name the domain (``domain_name``)."""
    from ..domain.arithmetic import parse_domain_spec
    from ..loaders import load_domain
    from ..render import domain_name, row_label

    specs = [parse_domain_spec(t) for t in texts]
    loaded = [(spec, load_domain(spec.path)) for spec in specs]
    return [(row_label(domain_name(d, spec.path), spec.scale), spec.scale, d) for spec, d in loaded]


def _build_rows(loaded: list[tuple[str, float, Any]], combine_all: bool) -> list[Any]:
    from ..domain.arithmetic import combine
    from ..render import Row

    if combine_all and loaded:
        labels = [label for label, _, _ in loaded]
        return [Row("+".join(labels), combine([(d, scale) for _, scale, d in loaded], labels))]
    return [Row(label, d, scale) for label, scale, d in loaded]


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Output folder (created)."),
    generator: Optional[str] = typer.Option(None, show_default="the one the first domain names",
                                            help="Zoo name, checkpoint or random:<size> spec."),
    domain: Optional[list[str]] = typer.Option(None, "--domain", show_default="none: the source generator only",
                                               help="Domain file, optionally FILE*STRENGTH; repeatable."),
    combine_all: bool = typer.Option(False, "--combine", show_default="off",
                                     help="Sum the --domain files into one domain (arithmetic)."),
    hypernet: Optional[Path] = typer.Option(None, show_default="none", help="HyperDomainNet file for --text prompts."),
    text: Optional[list[str]] = typer.Option(None, "--text", show_default="none",
                                             help="Prompt for --hypernet; repeatable."),
    n: int = typer.Option(8, "--n", help="Number of seeds (from --seed)."),
    seeds: Optional[str] = typer.Option(None, show_default="--n seeds from --seed",
                                        help="Seeds, e.g. 0-7 or 1,5,9-11 (overrides --n/--seed)."),
    seed: int = typer.Option(0, help="First seed."),
    truncation: float = options.TRUNCATION,
    translate: Optional[str] = typer.Option(None, show_default="none", help="StyleGAN3 only: shift the image "
                                            "by X,Y image widths through the input transform, e.g. 0.1,0."),
    rotate: float = typer.Option(0.0, help="StyleGAN3 only: rotate the image by DEG degrees (input transform)."),
    noise_mode: str = typer.Option("const", help="const | random (seeded) | none."),
    batch_size: int = options.batch_size(),
    device: str = options.DEVICE,
    precision: str = options.PRECISION,
    grid: Optional[bool] = typer.Option(None, "--grid/--no-grid", show_default="grid, no-grid for animations",
                                        help="Write grid.png."),
    individual: bool = typer.Option(False, "--individual/--no-individual", help="Write one PNG per row and seed."),
    interpolate: Optional[tuple[str, str]] = typer.Option(None, "--interpolate", show_default="none",
                                                          help="Render frames between two domain files A B."),
    alpha_sweep: Optional[str] = typer.Option(None, show_default="none",
                                              help="Sweep the strength of one --domain, e.g. 0:1."),
    frames: int = typer.Option(24, help="Frames of an interpolation."),
    fps: float = typer.Option(12.0, help="Frames per second of the video."),
    video: Optional[Path] = typer.Option(None, show_default="OUT/interpolation.gif",
                                         help="Video file of an animation (.gif or .mp4)."),
    force: bool = options.force("Write into an --out folder that already holds files and replace an existing --video."),
    style_mixing: bool = typer.Option(True, "--style-mixing/--no-style-mixing",
                                      help="Image domains: replace the fine W+ layers by the reference's, as released."),
    captions: bool = CAPTIONS,
) -> None:
    """Render the source generator and domains (files, sums, hypernetwork prompts) on the same seeds."""
    from ..atomic import check_output_dir, check_output_file
    from ..device import resolve_device, resolve_precision
    from ..hypernet.prompts import prompt_domains
    from ..ranges import FPS, finite_in
    from ..outputs import OutputWriter, check_request
    from ..render import alpha_sweep_rows, generator_for, interpolation_rows, render_chunks, Row

    domain, text = domain or [], text or []
    animated = interpolate is not None or alpha_sweep is not None
    if interpolate is not None and (domain or text or alpha_sweep is not None):
        raise ConfigError("--interpolate A B renders between two domains: leave out --domain, --text and --alpha-sweep")
    if bool(text) != (hypernet is not None):
        raise ConfigError("prompts need a hypernetwork: pass --hypernet FILE together with --text PROMPT")
    if video is not None and not animated:
        raise ConfigError("--video needs --interpolate A B or --alpha-sweep START:END")
    if animated:
        finite_in(fps, "--fps", FPS)
    grid = (not animated) if grid is None else grid
    if not (grid or individual or animated):
        raise ConfigError("nothing to write: keep --grid or add --individual")
    seed_list = _choose_seeds(seeds, seed, n)
    check_output_dir(out, force)
    if video is not None:
        check_output_file(video, force, "--video")
    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)

    if interpolate is not None:
        (la, sa, da), (lb, sb, db) = _load_specs(list(interpolate))
        rows = interpolation_rows(da, db, frames, (la, lb), (sa, sb))
    else:
        rows = _build_rows(_load_specs(domain), combine_all)
        if alpha_sweep is not None:
            if len(rows) != 1 or text:
                raise ConfigError("--alpha-sweep sweeps one domain: give one --domain (or several with --combine)")
            lo, hi = _parse_range(alpha_sweep)
            rows = alpha_sweep_rows(rows[0], frames, lo, hi)
        else:
            prompts = ([Row(p, d) for p, d in zip(text, prompt_domains(hypernet, text, dev))]
                       if hypernet is not None else [])
            rows = [Row("source"), *rows, *prompts]
    G = generator_for(generator, rows, dev)
    transform = _apply_transform(G, translate, rotate)
    check_request(len(rows), len(seed_list), G.size, grid, animated)
    folders = unique_names((row.label.replace("*", "_x") for row in rows), unsafe=r"[^\w.=+-]+",
                           fallback="row", separator="_")
    writer = OutputWriter(out, folders, seed_list, G.size, grid, individual,
                          (video or out / "interpolation.gif") if animated else None, fps,
                          [row.label for row in rows] if captions else None)
    for pairs, images in render_chunks(G, rows, seed_list, truncation, noise_mode, batch_size, progress=True,
                                       precision=resolved, style_mixing=style_mixing):
        writer.add(pairs, images)
    _write_manifest(out, rows, folders if individual else None, writer.finish(),
                    {"generator": G.identity.get("name"), "seeds": seed_list, "truncation": truncation,
                     "noise_mode": noise_mode, "precision": resolved, "style_mixing": style_mixing, **transform})


def _apply_transform(G: Any, translate: Optional[str], rotate: float) -> dict[str, Any]:
    """Set a StyleGAN3 generator's input transform from --translate X,Y and --rotate DEG; the
    settings for generate.json (none when neither is given)."""
    import math

    if translate is None and rotate == 0:
        return {}
    if getattr(G, "family", "stylegan2") != "stylegan3":
        raise ConfigError("--translate and --rotate move a StyleGAN3 generator's input; this generator is "
                          f"{G.family}: leave them out")
    try:
        shift = tuple(float(v) for v in (translate or "0,0").split(","))
    except ValueError:
        shift = ()
    if len(shift) != 2 or not all(math.isfinite(v) for v in (*shift, rotate)):
        raise ConfigError(f"--translate takes X,Y (finite numbers, image widths) and --rotate degrees, "
                          f"got --translate {translate!r} --rotate {rotate}")
    G.set_transform(translate=shift, rotate=rotate)
    return {"translate": list(shift), "rotate": rotate}


def _write_manifest(out: Path, rows: list[Any], folders: Optional[list[str]], written: list[str],
                    settings: dict[str, Any]) -> None:
    """generate.json describing the rows and what was written (grid.png, OUT/<row>/seed<S>.png, the
    video); a row's ``folder`` only where its images were written (``folders`` None: none were)."""
    from ..atomic import atomic_path
    from ..ranges import finite_json

    manifest = {**settings, "rows": [
        {"label": row.label, **({"folder": folder} if folder is not None else {}), "scale": row.scale,
         "kind": None if row.domain is None else row.domain.kind,
         "target": None if row.domain is None else row.domain.metadata.get("target"),
         "style_mixing_from": None if row.domain is None or not settings["style_mixing"]
         else row.domain.style_mixing_from}
        for row, folder in zip(rows, folders or [None] * len(rows))]}
    with atomic_path(out / "generate.json") as tmp:
        tmp.write_text(json.dumps(finite_json(manifest), indent=2, allow_nan=False))
    typer.echo(f"rendered {len(rows)} rows × {len(settings['seeds'])} seeds in {settings['precision']}: "
               f"{', '.join(written)}")


@app.command()
def prune(
    domain: Path = typer.Option(..., "--domain", help="Domain file to sparsify."),
    keep: float = typer.Option(0.2, help="Fraction of entries kept (largest |value|)."),
    out: Path = typer.Option(..., "--out", help="Output domain file."),
    force: bool = options.force("Replace --out if it exists."),
) -> None:
    """StyleSpaceSparse: keep the top fraction of a domain file's entries by magnitude, zero the rest."""
    from ..atomic import check_output_file
    from ..domain.arithmetic import prune as prune_domain
    from ..loaders import load_domain

    check_output_file(out, force)
    result = prune_domain(load_domain(domain), keep)
    result.save(out)
    info = result.metadata["sparsify"]
    typer.echo(f"kept {info['kept']} of {info['total']} entries: {out}")
