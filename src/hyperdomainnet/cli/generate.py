"""``hdn generate`` (grids, individual images, interpolation videos) and ``hdn prune``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError, HDNError
from ..paths import unique_names
from .app import app
from .console import CAPTIONS


def _parse_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--alpha-sweep {text!r}: give START:END, e.g. 0:1") from None
    return lo, hi


def _choose_seeds(seeds: Optional[str], seed: int, n: int) -> list[int]:
    from ..render import parse_seeds

    if seeds is not None:
        return parse_seeds(seeds)
    if n < 1 or seed < 0:
        raise ConfigError(f"--n must be ≥ 1 and --seed ≥ 0, got --n {n} --seed {seed}")
    return list(range(seed, seed + n))


def _load_specs(texts: list[str]) -> list[tuple[str, float, Any]]:
    """``FILE[*α]`` texts → [(row label, α, Domain)]; labels name the domain (``domain_name``)."""
    from ..domain.arithmetic import parse_domain_spec
    from ..domain.files import Domain
    from ..render import domain_name, row_label

    specs = [parse_domain_spec(t) for t in texts]
    loaded = [(spec, Domain.load(spec.path)) for spec in specs]
    return [(row_label(domain_name(d, spec.path), spec.scale), spec.scale, d) for spec, d in loaded]


def generator_for(spec: Optional[str], rows: list[Any], device: Any) -> Any:
    """--generator, else the generator named by the first domain (file or hypernetwork); a zoo
    generator not cached here fails fast when it cannot be downloaded (``preflight``)."""
    from ..loaders import load_generator
    from ..preflight import check_downloads, generator_download

    if spec:
        check_downloads([needed for needed in (generator_download(spec),) if needed is not None])
        return load_generator(spec, device)
    named = next((row.domain.generator.get("name") for row in rows if row.domain is not None), None)
    if not named:
        raise ConfigError("no generator given and the domain files do not name one; pass --generator")
    try:
        return load_generator(named, device)
    except HDNError as exc:
        raise ConfigError(f"cannot load generator {named!r} named in the domain file ({exc}); pass --generator") from None


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
    truncation: float = typer.Option(1.0, help="Truncation ψ."),
    noise_mode: str = typer.Option("const", help="const | random (seeded) | none."),
    batch_size: int = typer.Option(16, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    precision: str = typer.Option("auto", help="auto (bf16 where the device computes it natively: AMX CPUs, "
                                  "CUDA capability >= 8.0; else fp32) | fp32 | bf16 | fp16."),
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
    force: bool = typer.Option(False, "--force", show_default="off",
                               help="Write into an --out folder that already holds files and replace an existing --video."),
    captions: bool = CAPTIONS,
) -> None:
    """Render the source generator and domains (files, sums, hypernetwork prompts) on the same seeds."""
    from ..atomic import check_output_dir, check_output_file
    from ..render import alpha_sweep_rows, hypernet_rows, interpolation_rows, render_rows, Row
    from ..training.runtime import resolve_device, resolve_precision

    domain, text = domain or [], text or []
    animated = interpolate is not None or alpha_sweep is not None
    if interpolate is not None and (domain or text or alpha_sweep is not None):
        raise ConfigError("--interpolate A B renders between two domains: leave out --domain, --text and --alpha-sweep")
    if bool(text) != (hypernet is not None):
        raise ConfigError("prompts need a hypernetwork: pass --hypernet FILE together with --text PROMPT")
    if video is not None and not animated:
        raise ConfigError("--video needs --interpolate A B or --alpha-sweep START:END")
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
            prompts = hypernet_rows(hypernet, text, dev) if hypernet is not None else []
            rows = [Row("source"), *rows, *prompts]
    G = generator_for(generator, rows, dev)
    images = render_rows(G, rows, seed_list, truncation, noise_mode, batch_size, progress=True, precision=resolved)
    _write_outputs(out, rows, images, seed_list, grid, individual, video if animated else None, animated, fps, captions,
                   {"generator": G.identity.get("name"), "seeds": seed_list, "truncation": truncation,
                    "noise_mode": noise_mode, "precision": resolved})


def _write_outputs(out: Path, rows: list[Any], images: Any, seeds: list[int], grid: bool, individual: bool,
                   video: Optional[Path], animated: bool, fps: float, captions: bool, settings: dict[str, Any]) -> None:
    """grid.png, OUT/<row>/seed<S>.png, the video, and generate.json describing them (a row's
    ``folder`` only where its images were written)."""
    from ..atomic import atomic_path
    from ..images import save_grid, save_image
    from ..render import frames_from_rows, write_video

    written: list[str] = []
    if animated:
        written.append(str(write_video(frames_from_rows(images), video or out / "interpolation.gif", fps)))
    if grid:
        written.append(str(save_grid(images.flatten(0, 1), out / "grid.png", nrow=len(seeds),
                                     rows=[row.label for row in rows] if captions else None)))
    folders = unique_names((row.label.replace("*", "_x") for row in rows), unsafe=r"[^\w.=+-]+",
                           fallback="row", separator="_")
    if individual:
        for folder, row_images in zip(folders, images):
            for s, image in zip(seeds, row_images):
                save_image(image, out / folder / f"seed{s:04d}.png")
        written.append(f"{out}/<row>/seed<S>.png")
    manifest = {**settings, "rows": [
        {"label": row.label, **({"folder": folder} if individual else {}), "scale": row.scale,
         "kind": None if row.domain is None else row.domain.kind,
         "target": None if row.domain is None else row.domain.metadata.get("target")}
        for row, folder in zip(rows, folders)]}
    with atomic_path(out / "generate.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    typer.echo(f"rendered {len(rows)} rows × {len(seeds)} seeds in {settings['precision']}: {', '.join(written)}")


@app.command()
def prune(
    domain: Path = typer.Option(..., "--domain", help="Domain file to sparsify."),
    keep: float = typer.Option(0.2, help="Fraction of entries kept (largest |value|)."),
    out: Path = typer.Option(..., "--out", help="Output domain file."),
    force: bool = typer.Option(False, "--force", show_default="off", help="Replace --out if it exists."),
) -> None:
    """StyleSpaceSparse: keep the top fraction of a domain file's entries by magnitude, zero the rest."""
    from ..atomic import check_output_file
    from ..domain.arithmetic import prune as prune_domain
    from ..domain.files import Domain

    check_output_file(out, force)
    result = prune_domain(Domain.load(domain), keep)
    result.save(out)
    info = result.metadata["sparsify"]
    typer.echo(f"kept {info['kept']} of {info['total']} entries: {out}")
