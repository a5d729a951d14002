"""``hdn ui``: a local web app (Gradio) to look at a generator and its domains, with live renders.

What it may read is fixed when it starts. Generators: the ``--generator`` specs given, plus zoo
models already downloaded (the list offers nothing that needs a download). Domain files and
hypernetworks: the files given, and the ``*.safetensors`` files with the right metadata under the
directories given (an :class:`Allowlist` each). The browser only ever sends a *label* from a list
the server made; each label is looked up on the server, and the file's real path (symlinks
resolved) must still lie under one of the roots — so no path that comes from the browser is opened.

Serving (:func:`serve`): bound to 127.0.0.1 unless ``--host`` says otherwise; never a share link
(``share=False`` whatever ``GRADIO_SHARE`` says). Gradio's file route serves its upload/cache
folder, ``allowed_paths`` and static paths: here the cache folder is a private temporary folder
made for this process (``GRADIO_TEMP_DIR``: renders and uploads, pruned to the last 10 minutes
and 256 MiB while the app runs, removed on exit — SIGTERM included), ``allowed_paths`` is empty (``GRADIO_ALLOWED_PATHS``
is dropped: Gradio would fall back to it) and no static paths are set, so only this app's renders
are served. Analytics, monitoring, MCP, SSR, PWA and the run history are off; uploads are capped
at 10 MB (only the photo of the "your photo" tab is uploaded; Gradio decodes it and hands the
server an image, never a path).

Rendering (:meth:`Studio.render`): seed s → W+ code as ``render.seed_latents`` (so seed s matches
``hdn generate --seeds s``), ψ-truncated; style mixing with crossover c > 0 takes W+ entries c… from
the mixing seed's code. The source image is ``G.synthesis(ws)``; the adapted one applies the domain
file (any kind, through ``domain.parameterizations.synthesize``) or the hypernetwork's δ for the prompt
(``hypernet.prompts.prompt_domains``) at strength α. Noise is the generator's constant noise. Loaded
generators, domain files and prompt vectors are cached.

Your photo (:meth:`Studio.stylize_photo`): the uploaded photo is inverted by an encoder
(the ``--encoder`` specs given, plus downloaded zoo encoders) exactly as ``hdn stylize`` does it
(``stylize.encode_photos``: FFHQ-aligned first for a face encoder), then rendered by the
encoder's generator in the chosen domain or the prompt's δ. Inverted photos are cached by their
pixels, so trying another prompt does not invert again.
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from .device import autocast, prepare_generator, resolve_precision
from .domain.files import FORMAT as DOMAIN_FORMAT
from .domain.files import Domain
from .domain.parameterizations import synthesize
from .errors import ConfigError, FileFormatError, HDNError
from .fileformat import read_metadata
from .hypernet.model import FORMAT as HYPERNET_FORMAT
from .images import to_pil
from .hypernet.prompts import prompt_domains
from .ranges import finite_in
from .render import seed_latents
from .stylegan2.generator import Generator, mix_styles
from .loaders import load_generator

if TYPE_CHECKING:
    from .encoders import PhotoEncoder
    from .stylize import Inverted

SOURCES: tuple[str, ...] = ("domain file", "hypernetwork prompt")
SEED_MAX = 99_999
KEEP_RENDERS_S = 600.0  # renders and uploads older than this are deleted while the app runs
MAX_RENDER_BYTES = 256 * 2**20  # and the oldest beyond this many bytes
PRUNE_EVERY_S = 30.0
TRUNCATION_RANGE = (0.0, 1.0)
ALPHA_RANGE = (-1.0, 2.0)
MAX_UPLOAD = "10mb"
PHOTO_CACHE = 8
ITERATIONS_RANGE = (1, 10)
IMAGE_HEIGHT = 384
CSS = ("#source-image img, #adapted-image img, #photo-reconstruction img, #photo-stylized img "
       "{image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain}")
GENERATOR_CACHE = 3
FILE_CACHE = 32
PROMPT_CACHE = 64
SUFFIX = ".safetensors"

__all__ = ["Allowlist", "Studio", "build_app", "domain_files", "hypernet_files", "serve"]


def _stamp(path: Path) -> tuple[int, int]:
    """(mtime_ns, size): a cache key part that changes when the file is rewritten."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@dataclass
class Allowlist:
    """The files of one format (metadata ``format`` entry) the app may read: the given files, and the
    ``*.safetensors`` files under the given directories whose real paths stay under them. Each is known
    by a label, never an absolute path: the root's name (numbered when two roots share one) and the
    path relative to the root."""

    roots: tuple[Path, ...]
    file_format: str
    what: str
    files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path], file_format: str, what: str) -> Allowlist:
        """Resolve the roots (one-line error for a missing one) and scan them."""
        roots = []
        for given in paths:
            path = Path(given).expanduser()
            if not path.exists():
                raise FileFormatError(f"{what} path {given} does not exist; pass an existing file or directory")
            roots.append(path.resolve())
        allowlist = cls(tuple(roots), file_format, what)
        allowlist.scan()
        return allowlist

    def contains(self, path: Path) -> bool:
        """True when the real path of ``path`` is one of the roots or lies under a directory root."""
        real = path.resolve()
        return any(real == root or (root.is_dir() and real.is_relative_to(root)) for root in self.roots)

    def _candidates(self, root: Path, prefix: str) -> Iterable[tuple[str, Path]]:
        if root.is_file():
            yield prefix, root
            return
        for folder, dirs, names in os.walk(root):  # symlinked folders are not entered
            dirs.sort()
            for name in sorted(names):
                if name.endswith(SUFFIX) and not name.startswith("."):
                    path = Path(folder, name)
                    yield f"{prefix}/{path.relative_to(root).as_posix()}", path

    def _has_format(self, path: Path) -> bool:
        try:
            meta = read_metadata(path)
        except (HDNError, ValueError):  # unreadable, not safetensors, or bad metadata JSON: not listed
            return False
        return meta is not None and meta.get("format") == self.file_format

    def scan(self) -> list[str]:
        """Re-read the roots; returns the labels, in root order then path order."""
        files: dict[str, Path] = {}
        seen: dict[str, int] = {}
        for root in self.roots:
            seen[root.name] = seen.get(root.name, 0) + 1
            prefix = root.name if seen[root.name] == 1 else f"{root.name} ({seen[root.name]})"
            for label, path in self._candidates(root, prefix):
                if label not in files and self.contains(path) and path.is_file() and self._has_format(path):
                    files[label] = path.resolve()
        self.files = files
        return self.labels

    @property
    def labels(self) -> list[str]:
        return list(self.files)

    def path(self, label: str) -> Path:
        """The real path of a listed label; a one-line error for anything else."""
        path = self.files.get(label) if isinstance(label, str) else None
        if path is None or not self.contains(path) or not path.is_file():
            raise ConfigError(f"unknown {self.what} {label!r}; pick one from the list "
                              "(press Rescan after adding files)")
        return path


def domain_files(paths: Iterable[str | Path]) -> Allowlist:
    """The domain files the app may read (see :class:`Allowlist`)."""
    return Allowlist.from_paths(paths, DOMAIN_FORMAT, "domain file")


def hypernet_files(paths: Iterable[str | Path]) -> Allowlist:
    """The HyperDomainNet files the app may read (see :class:`Allowlist`)."""
    return Allowlist.from_paths(paths, HYPERNET_FORMAT, "hypernetwork")


def _checked(value: Any, name: str, lo: float, hi: float) -> float:
    """A finite number in [lo, hi] from the browser, or a one-line error."""
    return finite_in(value, name, (lo, hi))


def _integer(value: Any, name: str, hi: int) -> int:
    number = _checked(value, name, 0, hi)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(number)


class Studio:
    """What the app shows and how it renders, without any web code: the generator choices, the
    domain and hypernetwork allowlists, caches, and :meth:`render` (the callback the UI calls)."""

    def __init__(self, generators: Sequence[str], domains: Allowlist, hypernets: Allowlist,
                 device: torch.device | str = "cpu", include_zoo: bool = True, encoders: Sequence[str] = (),
                 precision: str = "auto") -> None:
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, self.device)  # of every encoder pass and render
        self.generators = self._generator_specs(generators, include_zoo)
        self.encoders = self._zoo_specs(encoders, include_zoo, "encoder")
        if not self.generators:
            raise ConfigError("no generator to show: pass --generator NAME|FILE|random:<size>, or download one "
                              "with hdn download NAME")
        self.domains, self.hypernets = domains, hypernets
        self._generator = lru_cache(maxsize=GENERATOR_CACHE)(self._load_generator)
        self._domain = lru_cache(maxsize=FILE_CACHE)(self._load_domain)
        self._prompt = lru_cache(maxsize=PROMPT_CACHE)(self._prompt_domain)
        self._encoder = lru_cache(maxsize=GENERATOR_CACHE)(self._load_encoder)
        self._inverted = lru_cache(maxsize=PHOTO_CACHE)(self._invert_photo)

    @staticmethod
    def _zoo_specs(given: Sequence[str], include_zoo: bool, kind: str) -> dict[str, str]:
        """label → spec: the given specs (files made absolute and labelled by their name, numbered
        on a clash, so that no path reaches the browser), then downloaded zoo models of ``kind``."""
        specs: dict[str, str] = {}
        for spec in given:
            path = Path(spec).expanduser()
            label, n = (path.name, 1) if path.exists() else (spec, 1)
            while label in specs:
                n += 1
                label = f"{path.name} ({n})"
            specs[label] = str(path.resolve()) if path.exists() else spec
        if include_zoo:
            from . import zoo

            for entry in zoo.list_entries():
                if (entry.kind == kind and entry.name not in specs
                        and zoo.cached_path(entry) is not None):
                    specs[entry.name] = entry.name
        return specs

    @classmethod
    def _generator_specs(cls, given: Sequence[str], include_zoo: bool) -> dict[str, str]:
        return cls._zoo_specs(given, include_zoo, "generator")

    # ----- loading (cached) ----------------------------------------------------------------------
    def _load_generator(self, spec: str) -> Generator:
        return load_generator(spec, self.device)

    @staticmethod
    def _load_domain(path: Path, stamp: tuple[int, int]) -> Domain:  # noqa: ARG004 (cache key)
        return Domain.load(path)

    def _prompt_domain(self, path: Path, stamp: tuple[int, int], prompt: str) -> Domain:  # noqa: ARG002
        return prompt_domains(path, [prompt], self.device)[0]

    def _load_encoder(self, spec: str) -> PhotoEncoder:
        from .encoders import load_encoder

        encoder = load_encoder(spec, self.device)
        prepare_generator(encoder.generator, self.device)
        return encoder

    def _invert_photo(self, label: str, png: bytes, iterations: int) -> tuple[Inverted, tuple[str, ...]]:
        """The photo (PNG bytes) inverted by an encoder, and the warnings raised on the way."""
        from .stylize import encode_photos

        encoder = self.encoder(label)
        with tempfile.TemporaryDirectory(prefix="hdn-photo-") as folder, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            path = Path(folder, "photo.png")
            path.write_bytes(png)
            inverted = encode_photos(encoder, [path], iterations, progress=False, precision=self.precision)[0]
        return inverted, tuple(dict.fromkeys(str(w.message) for w in caught))

    def encoder(self, label: str) -> PhotoEncoder:
        """The (cached) encoder of a listed label."""
        spec = self.encoders.get(label) if isinstance(label, str) else None
        if spec is None:
            raise ConfigError(f"unknown encoder {label!r}; pick one from the list (start hdn ui with --encoder "
                              "NAME|FILE, e.g. restyle-psp-ffhq)")
        return self._encoder(spec)

    def generator(self, label: str) -> Generator:
        """The (cached) generator of a listed label."""
        spec = self.generators.get(label) if isinstance(label, str) else None
        if spec is None:
            raise ConfigError(f"unknown generator {label!r}; pick one from the list")
        return self._generator(spec)

    def domain(self, source: str, domain: str | None, hypernet: str | None, prompt: str | None
               ) -> tuple[str, Domain] | None:
        """(label, domain) chosen by the source switch, or None when nothing is chosen yet."""
        if source == SOURCES[0]:
            if not domain:
                return None
            path = self.domains.path(domain)
            return domain, self._domain(path, _stamp(path))
        if source == SOURCES[1]:
            text = (prompt or "").strip()
            if not text:
                return None
            if not hypernet:
                raise ConfigError("no hypernetwork chosen; start hdn ui with --hypernet FILE and pick it")
            path = self.hypernets.path(hypernet)
            return repr(text), self._prompt(path, _stamp(path), text)
        raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")

    # ----- rendering -----------------------------------------------------------------------------
    def latents(self, G: Generator, seed: int, truncation: float, mix_seed: int, crossover: int) -> torch.Tensor:
        """W+ (1, n_latent, D) of ``seed``; entries ``crossover``… from ``mix_seed`` when crossover > 0."""
        ws = seed_latents(G, [seed], truncation, self.device)
        return mix_styles(ws, seed_latents(G, [mix_seed], truncation, self.device), crossover) if crossover else ws

    @torch.no_grad()
    def render(self, generator: str, source: str, domain: str | None, hypernet: str | None,
               prompt: str | None, seed: Any, truncation: Any, alpha: Any, mix_seed: Any = 0,
               crossover: Any = 0, reference_style: Any = True) -> tuple[Image.Image, Image.Image | None, str]:
        """(source image, adapted image or None, caption) for the controls' values, all validated; an
        image domain mixes in its reference's style (``Domain.mix``) unless ``reference_style`` is off."""
        seed_, mix_ = _integer(seed, "seed", SEED_MAX), _integer(mix_seed, "mixing seed", SEED_MAX)
        psi = _checked(truncation, "truncation", *TRUNCATION_RANGE)
        scale = _checked(alpha, "strength", *ALPHA_RANGE)
        G = self.generator(generator)
        cut = _integer(crossover, "crossover", G.n_latent - 1)
        chosen = self.domain(source, domain, hypernet, prompt)
        ws = self.latents(G, seed_, psi, mix_, cut)
        with autocast(self.device, self.precision):
            source_image = to_pil(G.synthesis(ws, noise_mode="const"))
        mixing = f" mixed with seed {mix_} from W+ {cut}" if cut else ""
        caption = f"{generator} · seed {seed_}{mixing} · ψ {psi:g}"
        if chosen is None:
            return source_image, None, caption + " · no domain chosen"
        label, domain_file = chosen
        with autocast(self.device, self.precision):
            mixing = reference_style is not False
            adapted = synthesize(G, ws, [domain_file], [scale], style_mixing=mixing, noise_mode="const")
        first = domain_file.style_mixing_from
        styled = "" if first is None or not mixing else f" · reference style from W+ {first}"
        return source_image, to_pil(adapted), f"{caption} · {label} at α {scale:g}{styled}"

    @torch.no_grad()
    def stylize_photo(self, photo: Image.Image | None, encoder: str, source: str, domain: str | None,
                      hypernet: str | None, prompt: str | None, alpha: Any, iterations: Any
                      ) -> tuple[Image.Image | None, Image.Image | None, str]:
        """(reconstruction, stylised image or None, caption) of an uploaded photo."""
        from .stylize import stylize_inverted

        scale = _checked(alpha, "strength", *ALPHA_RANGE)
        steps = _integer(iterations, "iterations", ITERATIONS_RANGE[1])
        if steps < ITERATIONS_RANGE[0]:
            raise ConfigError(f"iterations must be at least {ITERATIONS_RANGE[0]}")
        if photo is None:
            return None, None, "upload a photo"
        E = self.encoder(encoder)
        buffer = io.BytesIO()
        photo.convert("RGB").save(buffer, format="PNG")
        inverted, notes = self._inverted(encoder, buffer.getvalue(), steps)
        passes = f"{steps} iterations" if E.iterative else "one pass"
        caption = f"{encoder} · {passes}" + "".join(f" · {note}" for note in notes)
        chosen = self.domain(source, domain, hypernet, prompt)
        if chosen is None:
            return to_pil(inverted.reconstruction), None, caption + " · no domain chosen"
        label, domain_file = chosen
        result = stylize_inverted(E.generator, domain_file, [inverted], mix=False, scale=scale,
                                  precision=self.precision)[0]
        return to_pil(inverted.reconstruction), to_pil(result.adapted), f"{caption} · {label} at α {scale:g}"

    def crossover_limit(self, generator: str) -> int:
        """The largest crossover index of a generator (n_latent − 1)."""
        return self.generator(generator).n_latent - 1


# Every render callback: only the latest request runs, one at a time (they share the models).
RENDER_QUEUE: dict[str, Any] = {"trigger_mode": "always_last", "concurrency_id": "render", "concurrency_limit": 1}


def _ui_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show HDNError messages in the page (gr.Error) instead of a generic failure."""
    import gradio as gr

    @wraps(fn)
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except HDNError as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return wrapped


@dataclass(frozen=True)
class _Choices:
    """The domain controls' starting values, shared by both tabs."""

    domain: str | None
    hypernet: str | None
    source: str
    prompts: bool  # the hypernetwork controls only when one was given


def _image_options(interactive: bool = False) -> dict[str, Any]:
    return {"type": "pil", "format": "png", "interactive": interactive, "height": IMAGE_HEIGHT,
            "buttons": ["download", "fullscreen"]}


def _domain_controls(gr: Any, studio: Studio, choices: _Choices, prefix: str) -> tuple[Any, Any, Any, Any]:
    """Source switch, domain file, hypernetwork and prompt; element ids ``{prefix}source`` etc."""
    source = gr.Radio(list(SOURCES), value=choices.source, label="Domain from", elem_id=f"{prefix}source",
                      visible=choices.prompts)
    domain = gr.Dropdown(studio.domains.labels, value=choices.domain, label="Domain file", elem_id=f"{prefix}domain")
    hypernet = gr.Dropdown(studio.hypernets.labels, value=choices.hypernet, label="Hypernetwork",
                           elem_id=f"{prefix}hypernet", visible=choices.prompts)
    prompt = gr.Textbox(label="Prompt (hypernetwork; Enter renders)", placeholder="e.g. Pixar",
                        elem_id=f"{prefix}prompt", visible=choices.prompts)
    return source, domain, hypernet, prompt


def _samples_tab(gr: Any, demo: Any, studio: Studio, choices: _Choices) -> None:
    """Seeded samples: controls on the left, source and adapted renders side by side."""
    first_generator = next(iter(studio.generators))
    gr.Markdown("### hyperdomainnet: source and adapted generator, same latent")
    with gr.Row():
        with gr.Column(scale=1):
            generator = gr.Dropdown(list(studio.generators), value=first_generator, label="Generator",
                                    elem_id="generator")
            source, domain, hypernet, prompt = _domain_controls(gr, studio, choices, "")
            rescan = gr.Button("Rescan files", size="sm")
            seed = gr.Slider(0, SEED_MAX, value=0, step=1, label="Seed", elem_id="seed")
            truncation = gr.Slider(*TRUNCATION_RANGE, value=0.7, step=0.05, label="Truncation ψ",
                                   elem_id="truncation")
            alpha = gr.Slider(*ALPHA_RANGE, value=1.0, step=0.05, label="Strength α", elem_id="alpha")
            mix_seed = gr.Slider(0, SEED_MAX, value=1, step=1, label="Style-mixing seed", elem_id="mix-seed")
            crossover = gr.Slider(0, studio.crossover_limit(first_generator), value=0, step=1,
                                  label="Style-mixing crossover (0: off; W+ index taken from the mixing seed)",
                                  elem_id="crossover")
            reference_style = gr.Checkbox(value=True, label="Image domains: the reference's style on the fine "
                                          "W+ layers (as released)", elem_id="reference-style")
            button = gr.Button("Render", variant="primary", elem_id="render")
        source_image, adapted_image, caption = _result_column(gr, ("Source", "source-image"),
                                                              ("Adapted", "adapted-image"), "caption")

    inputs = [generator, source, domain, hypernet, prompt, seed, truncation, alpha, mix_seed, crossover,
              reference_style]
    outputs = [source_image, adapted_image, caption]
    render = _ui_errors(studio.render)
    gr.on([button.click, demo.load, source.change, domain.change, hypernet.change, prompt.submit,
           seed.release, truncation.release, alpha.release, mix_seed.release, crossover.release,
           reference_style.change],
          render, inputs, outputs, **RENDER_QUEUE)
    reset_mixing = _ui_errors(lambda label: gr.Slider(maximum=studio.crossover_limit(label), value=0))
    generator.change(reset_mixing, generator, crossover).then(render, inputs, outputs, **RENDER_QUEUE)
    rescan.click(lambda: (gr.Dropdown(choices=studio.domains.scan()), gr.Dropdown(choices=studio.hypernets.scan())),
                 None, [domain, hypernet])


def _result_column(gr: Any, left: tuple[str, str], right: tuple[str, str], caption_id: str) -> tuple[Any, Any, Any]:
    """The wide column of a tab: two images side by side ((label, element id) each) above a caption."""
    with gr.Column(scale=2):
        with gr.Row():
            images = [gr.Image(label=label, elem_id=elem_id, **_image_options()) for label, elem_id in (left, right)]
        caption = gr.Markdown(elem_id=caption_id)
    return images[0], images[1], caption


def _photo_tab(gr: Any, studio: Studio, choices: _Choices) -> None:
    """Your photo: upload, pick an encoder and a domain or prompt; reconstruction and stylised result."""
    encoders = list(studio.encoders)
    gr.Markdown("### Your photo in any domain: encoder inversion, then the adapted generator"
                + ("" if encoders else " — start hdn ui with --encoder restyle-psp-ffhq (or a file) to use it"))
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(label="Your photo", elem_id="photo", sources=["upload"], type="pil",
                             image_mode="RGB", height=IMAGE_HEIGHT // 2)
            encoder = gr.Dropdown(encoders, value=encoders[0] if encoders else None, label="Encoder",
                                  elem_id="photo-encoder")
            source, domain, hypernet, prompt = _domain_controls(gr, studio, choices, "photo-")
            alpha = gr.Slider(*ALPHA_RANGE, value=1.0, step=0.05, label="Strength α", elem_id="photo-alpha")
            iterations = gr.Slider(*ITERATIONS_RANGE, value=5, step=1, label="Encoder iterations",
                                   elem_id="photo-iterations")
            button = gr.Button("Stylise", variant="primary", elem_id="photo-run")
        reconstruction, stylised, caption = _result_column(gr, ("Reconstruction", "photo-reconstruction"),
                                                           ("Stylised", "photo-stylized"), "photo-caption")
    inputs = [photo, encoder, source, domain, hypernet, prompt, alpha, iterations]
    gr.on([button.click, photo.upload, prompt.submit, domain.change, source.change, alpha.release],
          _ui_errors(studio.stylize_photo), inputs, [reconstruction, stylised, caption], **RENDER_QUEUE)


def build_app(studio: Studio) -> Any:
    """The Gradio Blocks app: a "Samples" tab (seeded renders) and a "Your photo" tab."""
    import gradio as gr

    domain = studio.domains.labels[0] if studio.domains.labels else None
    hypernet = studio.hypernets.labels[0] if studio.hypernets.labels else None
    choices = _Choices(domain, hypernet, SOURCES[1] if hypernet and not domain else SOURCES[0], bool(hypernet))
    with gr.Blocks(title="hyperdomainnet", analytics_enabled=False) as demo:
        with gr.Tab("Samples", elem_id="samples-tab"):
            _samples_tab(gr, demo, studio, choices)
        with gr.Tab("Your photo", elem_id="photo-tab"):
            _photo_tab(gr, studio, choices)
    return demo


def prune_folder(folder: Path, max_age_s: float = KEEP_RENDERS_S, max_bytes: int = MAX_RENDER_BYTES) -> int:
    """Delete the files under ``folder`` older than ``max_age_s``, then the oldest ones until the
    rest hold at most ``max_bytes``; return how many were deleted (files vanishing meanwhile are skipped)."""
    found = []
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                stat = path.stat()
                found.append((stat.st_mtime, stat.st_size, path))
        except OSError:
            continue
    found.sort()
    now, total, removed = time.time(), sum(size for _, size, _ in found), 0
    for mtime, size, path in found:
        if now - mtime <= max_age_s and total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total, removed = total - size, removed + 1
    return removed


def _prune_forever(folder: Path) -> None:
    """Keep the render folder bounded while the app runs (a daemon thread)."""
    while folder.is_dir():
        prune_folder(folder)
        time.sleep(PRUNE_EVERY_S)


def serve(studio: Studio, host: str = "127.0.0.1", port: int = 7860) -> tuple[Any, str]:
    """Launch the app without blocking; returns (demo, local URL). See the module docstring for the
    serving settings. The private render folder is pruned while the app runs (``prune_folder``)
    and removed at exit."""
    private = Path(tempfile.mkdtemp(prefix="hdn-ui-"))
    atexit.register(shutil.rmtree, private, True)
    threading.Thread(target=_prune_forever, args=(private,), daemon=True, name="hdn-ui-prune").start()
    os.environ["GRADIO_TEMP_DIR"] = str(private)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(private / "examples")
    os.environ.pop("GRADIO_ALLOWED_PATHS", None)  # launch() falls back to it when allowed_paths is empty
    demo = build_app(studio)
    try:
        demo.launch(server_name=host, server_port=port, share=False, allowed_paths=[],
                    max_file_size=MAX_UPLOAD, enable_monitoring=False, mcp_server=False, ssr_mode=False,
                    pwa=False, run_history=False, footer_links=[], show_error=False, inbrowser=False,
                    quiet=True, prevent_thread_lock=True, css=CSS)
    except OSError as exc:
        raise ConfigError(f"cannot serve on {host}:{port} ({exc}); pass a free --port") from None
    return demo, demo.local_url
