"""hdn ui: the file allowlist, the render callback, the CLI, and the app end to end in headless chromium."""
from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from e2e.browser import HdnProcess, chromium_page, free_port
from hyperdomainnet import load_generator
from hyperdomainnet.cli import main
from hyperdomainnet.clip import load_clip
from hyperdomainnet.domain.files import Domain
from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.images import to_pil
from hyperdomainnet.hypernet.prompts import prompt_domains
from hyperdomainnet.render import seed_latents
from hyperdomainnet.encoders import load_encoder
from hyperdomainnet.encoders.preprocess import encoder_input
from hyperdomainnet.ui import SOURCES, Studio, domain_files, hypernet_files
from test_encoders import tiny_encoder_file

SPEC = "random:32:channel_max=16:n_mlp=2"
PROMPT = "a watercolor cat"


def _domain_file(G: torch.nn.Module, path: Path, seed: int = 0) -> torch.Tensor:
    vector = torch.randn(G.domain_size, generator=torch.Generator().manual_seed(seed)) * 0.5
    Domain(vector, "domain_vector", G.domain_layout, G.identity).save(path)
    return vector


def _hypernet_file(G: torch.nn.Module, path: Path) -> Path:
    """A tiny text HyperDomainNet for the random:tiny CLIP, weights large enough that δ is visible."""
    torch.manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=load_clip("random:tiny").embed_dim, width=16, depth=1,
                         head_depth=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.save(path, {"clip_model": "random:tiny", "input": "text", "generator": G.identity})


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    return load_generator(SPEC)


@pytest.fixture(scope="module")
def files(G: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """runs/ with one domain file among decoys; hyper/ with a hypernetwork; secret/ outside both."""
    root = tmp_path_factory.mktemp("ui")
    runs, secret = root / "runs", root / "secret"
    (runs / "cat").mkdir(parents=True)
    secret.mkdir()
    _domain_file(G, runs / "cat" / "domain.safetensors")
    _domain_file(G, secret / "outside.safetensors", seed=1)
    save_file({"x": torch.zeros(2)}, str(runs / "plain.safetensors"))  # no hyperdomainnet metadata
    (runs / "broken.safetensors").write_bytes(b"not a safetensors file")
    (runs / "link.safetensors").symlink_to(secret / "outside.safetensors")
    (runs / "linkdir").symlink_to(secret, target_is_directory=True)
    hyper = root / "hyper"
    hyper.mkdir()
    _hypernet_file(G, hyper / "hypernet.safetensors")
    encoders = root / "encoders"
    encoders.mkdir()
    encoder = tiny_encoder_file(encoders)[0]  # its generator has G's domain layout
    photo = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(photo)
    return {"root": root, "runs": runs, "secret": secret, "hyper": hyper,
            "domain": runs / "cat" / "domain.safetensors", "hypernet": hyper / "hypernet.safetensors",
            "encoder": encoder, "photo": photo}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HDN_HOME of the app (no downloaded zoo models), holding a file the app must not serve."""
    path = tmp_path_factory.mktemp("home")
    (path / "private.txt").write_text("secret")
    return path


@pytest.fixture(scope="module", autouse=True)
def app(files: dict[str, Path], home: Path) -> Iterator[HdnProcess]:
    """``hdn ui`` in a subprocess, started before the first test so that it boots while they run, in a
    hostile Gradio environment (GRADIO_SHARE, GRADIO_ALLOWED_PATHS widening to the test folders)."""
    env = {"HDN_HOME": str(home), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "GRADIO_ALLOWED_PATHS": f"{files['root']},{home}", "GRADIO_SHARE": "True"}
    process = HdnProcess(["ui", "--generator", SPEC, "--domain", str(files["runs"]), "--hypernet",
                          str(files["hyper"]), "--encoder", str(files["encoder"]), "--port", str(free_port()),
                          "--device", "cpu"], env)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def studio(files: dict[str, Path]) -> Studio:
    return Studio([SPEC], domain_files([files["runs"]]), hypernet_files([files["hyper"]]), include_zoo=False,
                  encoders=[str(files["encoder"])])


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _assert_same(actual: Image.Image, expected: Image.Image) -> None:
    """Same size and the same 8-bit pixels up to one level (float rounding across processes)."""
    assert actual.size == expected.size
    assert np.abs(_pixels(actual) - _pixels(expected)).max() <= 1


def _expected(G: torch.nn.Module, seed: int, truncation: float, **synthesis: object) -> Image.Image:
    with torch.no_grad():
        return to_pil(G.synthesis(seed_latents(G, [seed], truncation), noise_mode="const", **synthesis))


# ----- allowlist ---------------------------------------------------------------------------------
def test_allowlist_lists_only_domain_files_under_its_roots(files: dict[str, Path]) -> None:
    allow = domain_files([files["runs"], files["hypernet"]])
    assert allow.labels == ["runs/cat/domain.safetensors"]  # not the decoys, symlinks out, or a hypernet
    assert allow.path("runs/cat/domain.safetensors") == files["domain"].resolve()
    single = domain_files([files["domain"]])
    assert single.labels == ["domain.safetensors"]
    hyper = hypernet_files([files["root"] / "hyper"])
    assert hyper.labels == ["hyper/hypernet.safetensors"]


@pytest.mark.parametrize("label", ["../secret/outside.safetensors", "runs/../secret/outside.safetensors",
                                   "runs/link.safetensors", "runs/linkdir/outside.safetensors",
                                   "runs/plain.safetensors", "ABS_SECRET", "ABS_ALLOWED", "/etc/passwd", "",
                                   None, 3])
def test_allowlist_rejects_anything_not_listed(files: dict[str, Path], label: object) -> None:
    allow = domain_files([files["runs"]])
    label = {"ABS_SECRET": str(files["secret"] / "outside.safetensors"),
             "ABS_ALLOWED": str(files["domain"])}.get(label, label) if isinstance(label, str) else label
    with pytest.raises(HDNError, match="unknown domain file"):
        allow.path(label)


def test_allowlist_rescan_and_missing_roots(files: dict[str, Path], G: torch.nn.Module, tmp_path: Path) -> None:
    with pytest.raises(HDNError, match="does not exist"):
        domain_files([tmp_path / "nope"])
    allow = domain_files([tmp_path, tmp_path])
    assert allow.labels == []
    _domain_file(G, tmp_path / "new.safetensors")
    name = tmp_path.name
    assert allow.scan() == [f"{name}/new.safetensors", f"{name} (2)/new.safetensors"]
    (tmp_path / "new.safetensors").unlink()
    with pytest.raises(HDNError, match="unknown domain file"):
        allow.path(f"{name}/new.safetensors")  # listed before, gone now


# ----- render callback ---------------------------------------------------------------------------
def test_render_shows_source_and_domain_at_strength(studio: Studio, G: torch.nn.Module, files: dict[str, Path]) -> None:
    vector = torch.randn(G.domain_size, generator=torch.Generator().manual_seed(0)) * 0.5
    source, adapted, caption = studio.render(SPEC, SOURCES[0], "runs/cat/domain.safetensors", None, None,
                                             seed=5, truncation=0.6, alpha=0.5)
    _assert_same(source, _expected(G, 5, 0.6))
    _assert_same(adapted, _expected(G, 5, 0.6, domain=vector * 0.5))
    assert np.abs(_pixels(adapted) - _pixels(source)).mean() > 1
    assert "seed 5" in caption and "α 0.5" in caption and str(files["root"]) not in caption
    assert studio.generator(SPEC) is studio.generator(SPEC)  # cached
    _, nothing, caption = studio.render(SPEC, SOURCES[0], None, None, None, seed=5, truncation=0.6, alpha=1)
    assert nothing is None and "no domain" in caption


def test_render_precision_is_resolved_once_and_used(files: dict[str, Path], G: torch.nn.Module) -> None:
    def studio_in(precision: str) -> Studio:
        return Studio([SPEC], domain_files([files["runs"]]), hypernet_files([]), include_zoo=False, precision=precision)

    assert studio_in("auto").precision == "fp32"  # no native bf16 here (the tests' autouse fixture)
    bf16 = studio_in("bf16")
    source, adapted, _ = bf16.render(SPEC, SOURCES[0], "runs/cat/domain.safetensors", None, None, seed=5,
                                     truncation=0.6, alpha=1)
    expected = _expected(G, 5, 0.6)
    assert not np.array_equal(_pixels(source), _pixels(expected))  # the render really ran in bf16
    assert np.abs(_pixels(source) - _pixels(expected)).mean() < 3
    with pytest.raises(HDNError, match="--precision 'fp64'"):
        studio_in("fp64")


def test_render_style_mixing_splices_w_plus(studio: Studio, G: torch.nn.Module) -> None:
    source, _, caption = studio.render(SPEC, SOURCES[0], None, None, None, seed=2, truncation=1.0, alpha=1,
                                       mix_seed=9, crossover=3)
    ws = seed_latents(G, [2], 1.0)
    ws[:, 3:] = seed_latents(G, [9], 1.0)[:, 3:]
    with torch.no_grad():
        _assert_same(source, to_pil(G.synthesis(ws, noise_mode="const")))
    assert np.abs(_pixels(source) - _pixels(_expected(G, 2, 1.0))).mean() > 1
    assert "mixed with seed 9" in caption
    with pytest.raises(HDNError, match="crossover"):
        studio.render(SPEC, SOURCES[0], None, None, None, seed=2, truncation=1.0, alpha=1, crossover=G.n_latent)


def test_render_hypernetwork_prompt(studio: Studio, G: torch.nn.Module, files: dict[str, Path]) -> None:
    _, adapted, caption = studio.render(SPEC, SOURCES[1], None, "hyper/hypernet.safetensors", PROMPT,
                                        seed=3, truncation=0.7, alpha=1.0)
    delta = prompt_domains(files["hypernet"], [PROMPT])[0].vector
    _assert_same(adapted, _expected(G, 3, 0.7, domain=delta))
    assert np.abs(_pixels(adapted) - _pixels(_expected(G, 3, 0.7))).mean() > 1
    assert PROMPT in caption
    _, nothing, _ = studio.render(SPEC, SOURCES[1], None, "hyper/hypernet.safetensors", "  ", 3, 0.7, 1.0)
    assert nothing is None


def _expected_photo(files: dict[str, Path], iterations: int, **synthesis: object) -> tuple[Image.Image, Image.Image]:
    """(reconstruction, render with ``synthesis``) of the test photo through the test encoder."""
    E = load_encoder(files["encoder"])
    ws = E.invert(encoder_input(files["photo"]), iterations)
    with torch.no_grad():
        return (to_pil(E.generator.synthesis(ws, noise_mode="const")),
                to_pil(E.generator.synthesis(ws, noise_mode="const", **synthesis)))


def test_stylize_photo_inverts_once_and_renders_the_domain(studio: Studio, G: torch.nn.Module,
                                                           files: dict[str, Path], without_faces_extra: None) -> None:
    vector = torch.randn(G.domain_size, generator=torch.Generator().manual_seed(0)) * 0.5
    photo = Image.open(files["photo"])
    assert list(studio.encoders) == ["psp.pt"]
    recon, stylised, caption = studio.stylize_photo(photo, "psp.pt", SOURCES[0], "runs/cat/domain.safetensors",
                                                    None, None, alpha=0.5, iterations=2)
    expected_recon, expected_stylised = _expected_photo(files, 2, domain=vector * 0.5)
    _assert_same(recon, expected_recon)
    _assert_same(stylised, expected_stylised)
    assert np.abs(_pixels(stylised) - _pixels(recon)).mean() > 1
    assert "psp.pt · 2 iterations" in caption and "at α 0.5" in caption
    hits = studio._inverted.cache_info().hits
    delta = prompt_domains(files["hypernet"], [PROMPT])[0].vector
    _, by_prompt, caption = studio.stylize_photo(photo, "psp.pt", SOURCES[1], None, "hyper/hypernet.safetensors",
                                                 PROMPT, alpha=1, iterations=2)
    assert studio._inverted.cache_info().hits == hits + 1  # the photo was not inverted again
    _assert_same(by_prompt, _expected_photo(files, 2, domain=delta)[1])
    assert PROMPT in caption and str(files["root"]) not in caption
    assert studio.stylize_photo(None, "psp.pt", SOURCES[0], None, None, None, 1, 5)[2] == "upload a photo"


@pytest.mark.parametrize("change, match", [
    ({"encoder": "restyle-psp-ffhq"}, "unknown encoder"),
    ({"encoder": "/etc/passwd"}, "unknown encoder"),
    ({"iterations": 0}, "iterations"), ({"iterations": 11}, "iterations"), ({"iterations": 2.5}, "whole number"),
    ({"alpha": float("inf")}, "strength"),
])
def test_stylize_photo_validates_what_the_browser_sends(studio: Studio, files: dict[str, Path], change: dict,
                                                        match: str) -> None:
    values = {"photo": Image.open(files["photo"]), "encoder": "psp.pt", "source": SOURCES[0],
              "domain": "runs/cat/domain.safetensors", "hypernet": None, "prompt": None, "alpha": 1.0,
              "iterations": 1, **change}
    with pytest.raises(HDNError, match=match):
        studio.stylize_photo(**values)


@pytest.mark.parametrize("change, match", [
    ({"generator": "random:64"}, "unknown generator"),
    ({"generator": "/etc/passwd"}, "unknown generator"),
    ({"source": "file system"}, "unknown source"),
    ({"domain": "../secret/outside.safetensors"}, "unknown domain file"),
    ({"source": SOURCES[1], "hypernet": "runs/cat/domain.safetensors", "prompt": PROMPT}, "unknown hypernetwork"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "whole number"), ({"seed": None}, "seed"),
    ({"truncation": float("nan")}, "truncation"), ({"alpha": "x"}, "strength"), ({"alpha": 1e9}, "strength"),
])
def test_render_validates_what_the_browser_sends(studio: Studio, change: dict, match: str) -> None:
    values = {"generator": SPEC, "source": SOURCES[0], "domain": "runs/cat/domain.safetensors", "hypernet": None,
              "prompt": None, "seed": 0, "truncation": 0.7, "alpha": 1.0, **change}
    with pytest.raises(HDNError, match=match):
        studio.render(**values)


# ----- CLI ---------------------------------------------------------------------------------------
def test_cli_errors_and_defaults(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert main(["ui", "--generator", SPEC, "--domain", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: domain file path") and "\n" not in err
    monkeypatch.setenv("HDN_HOME", str(tmp_path))  # no downloaded zoo models
    assert main(["ui", "--domain", str(files["runs"])]) == 1
    assert "no generator" in capsys.readouterr().err

    import hyperdomainnet.ui as ui_module

    class Demo:
        def block_thread(self) -> None:
            pass

        def close(self) -> None:
            pass

    served: dict[str, object] = {}
    monkeypatch.setattr(ui_module, "serve", lambda studio, host, port: (served.update(host=host, port=port, studio=studio)
                                                                          or (Demo(), "http://127.0.0.1:7860/")))
    assert main(["ui", "--generator", SPEC, "--domain", str(files["runs"]), "--device", "cpu"]) == 0
    assert served["host"] == "127.0.0.1" and served["port"] == 7860
    assert served["studio"].domains.labels == ["runs/cat/domain.safetensors"]
    assert "serving on http://127.0.0.1:7860/" in capsys.readouterr().out


# ----- end to end in a browser -------------------------------------------------------------------
def _fill_number(page: object, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")


def _image(page: object, elem_id: str, timeout_s: float = 30.0) -> tuple[Image.Image, str]:
    """The image an element shows, fetched by its src. Gradio may update the caption before the
    image element gets its new src (an empty src fetches the app's HTML), so poll until it is an image."""
    deadline = time.monotonic() + timeout_s
    while True:
        src = page.locator(f"#{elem_id} img").get_attribute("src") or ""
        response = page.request.get(src) if src else None
        if response is not None and response.status == 200 and response.headers.get("content-type", "").startswith("image/"):
            return Image.open(io.BytesIO(response.body())), src
        assert time.monotonic() < deadline, f"#{elem_id} shows no image (src {src!r})"
        time.sleep(0.2)


def test_browser_end_to_end(G: torch.nn.Module, files: dict[str, Path], home: Path, app: HdnProcess) -> None:
    """Move sliders, render, type a prompt, and check that the PNGs in the page are the generator's
    renders; then probe Gradio's file route and config for leaks."""
    vector = torch.randn(G.domain_size, generator=torch.Generator().manual_seed(0)) * 0.5
    expected_source, expected_adapted = _expected(G, 7, 0.7), _expected(G, 7, 0.7, domain=vector * 0.5)
    delta = prompt_domains(files["hypernet"], [PROMPT])[0].vector
    expected_prompt = _expected(G, 7, 0.7, domain=delta * 0.5)
    url = app.wait_for_url()
    assert url.startswith("http://127.0.0.1:")
    with chromium_page(timeout_ms=120_000) as page:
        page.goto(url)
        page.locator("#caption").get_by_text("seed 0").wait_for()  # the render on page load
        _fill_number(page, "seed", "7")
        _fill_number(page, "alpha", "0.5")
        page.locator("#render").click()
        page.locator("#caption").get_by_text("seed 7 · ψ 0.7 · runs/cat/domain.safetensors at α 0.5").wait_for()
        source, _ = _image(page, "source-image")
        adapted, src = _image(page, "adapted-image")
        _assert_same(source, expected_source)
        _assert_same(adapted, expected_adapted)

        page.locator("#source").get_by_label(SOURCES[1]).check()
        prompt = page.locator("#prompt textarea, #prompt input").first
        prompt.fill(PROMPT)
        prompt.press("Enter")
        page.locator("#caption").get_by_text(f"'{PROMPT}' at α 0.5").wait_for()
        _assert_same(_image(page, "adapted-image")[0], expected_prompt)

        # your photo: upload, see it in the domain file's domain, then in a prompt's
        expected_recon, expected_stylised = _expected_photo(files, 5, domain=vector)
        page.get_by_role("tab", name="Your photo").click()
        page.locator("#photo input[type=file]").set_input_files(str(files["photo"]))
        page.locator("#photo-caption").get_by_text("runs/cat/domain.safetensors at α 1").wait_for()
        _assert_same(_image(page, "photo-reconstruction")[0], expected_recon)
        _assert_same(_image(page, "photo-stylized")[0], expected_stylised)
        page.locator("#photo-source").get_by_label(SOURCES[1]).check()
        prompt = page.locator("#photo-prompt textarea, #photo-prompt input").first
        prompt.fill(PROMPT)
        prompt.press("Enter")
        page.locator("#photo-caption").get_by_text(f"'{PROMPT}' at α 1").wait_for()
        _assert_same(_image(page, "photo-stylized")[0], _expected_photo(files, 5, domain=delta)[1])

        for path in (files["domain"], files["secret"] / "outside.safetensors", home / "private.txt",
                     files["encoder"], files["photo"],
                     Path("/etc/passwd")):
            assert page.request.get(f"{url}gradio_api/file={path}").status == 403, path
        assert page.request.get(src).status == 200
        config = page.request.get(f"{url}config").text()
        assert str(files["root"]) not in config and str(home) not in config
        assert json.loads(config)["components"]
    assert "gradio.live" not in app.output and "public url" not in app.output.lower()
