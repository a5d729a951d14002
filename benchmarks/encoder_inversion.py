"""Photo inversion speed: a ReStyle encoder against II2S, and the whole ``hdn stylize --text`` of a photo.

All models have random weights of the real architectures (FFHQ config-f generator, IR-SE50 pSp
encoder with one head per W+ entry, a HyperDomainNet of the released width fed by a random
ViT-B/32 CLIP text tower), so the figures are the real ones without downloading anything:

* encoder: ``stylize.encode_photos`` of one photo (5 iterations: 5 encoder passes, 4 renders for
  the next iteration's input, 1 reconstruction render; ``--kind encoder4editing``: one pass and
  the reconstruction render), and per photo in a batch of ``--batch``;
* stylize: the same inversion + the prompt's δ (CLIP text embedding → HyperDomainNet) + the
  stylised render + writing the strip, the models being loaded already (``hdn stylize --text``
  after start-up);
* II2S: ``inversion.invert`` steps (generator forward/backward at full size, LPIPS-VGG at 256,
  P-norm), ``--ii2s-steps`` of them timed and scaled to 1,000 steps (printed as such when fewer);
* where the stylize time goes: one encoder pass (the inference network and, interleaved, the
  module network it replaces), one render, the PNG strip; FLOPs as torch's FlopCounterMode counts them, against this device's fp32 matmul rate.

    python benchmarks/encoder_inversion.py                       # 1024 px, CPU, II2S 1000 steps
    python benchmarks/encoder_inversion.py --ii2s-steps 5        # time 5 II2S steps, extrapolate
    python benchmarks/encoder_inversion.py --size 256 --device cuda
    python benchmarks/encoder_inversion.py --kind encoder4editing --ii2s-steps 2   # e4e-ffhq
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from train_step import counted_flops, machine, matmul_rate

II2S_STEPS = 1000
PROMPT = "3D render in the style of Pixar"


def timed(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def write_photo(path: Path, size: int) -> Path:
    """A smooth random colour field (a photo's statistics do not change the cost)."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC).save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024, help="generator resolution (FFHQ: 1024)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--kind", choices=("psp", "encoder4editing"), default="psp",
                        help="the encoder: ReStyle pSp (iterative) or encoder4editing's e4e (e4e-ffhq, one pass)")
    parser.add_argument("--batch", type=int, default=4, help="photos per forward for the batched figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ii2s-steps", type=int, default=II2S_STEPS,
                        help="II2S steps to time; fewer than 1000 are scaled to 1000")
    parser.add_argument("--encoder-width", type=int, default=None,
                        help="narrower IR-SE50 stages (widths scaled to this last width; tests only)")
    parser.add_argument("--clip", default="random:ViT-B-32", help="CLIP spec of the hypernetwork's input")
    parser.add_argument("--hyper-width", type=int, default=512, help="HyperDomainNet width (released: 512)")
    parser.add_argument("--pnorm-samples", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from hyperdomainnet.clip import load_clip
    from hyperdomainnet.encoders import E4EEncoder, Encoder4EditingNet, EncoderArch, ReStyleEncoder, ReStyleNet
    from hyperdomainnet.hypernet import HyperDomainNet
    from hyperdomainnet.hypernet.model import prompt_embeddings
    from hyperdomainnet.images import load_image, save_grid
    from hyperdomainnet.inversion import PNormStats, invert
    from hyperdomainnet.perceptual import load_lpips
    from hyperdomainnet.loaders import load_generator
    from hyperdomainnet.stylize import stylize_inverted, encode_photos
    from hyperdomainnet.domain.files import Domain
    from hyperdomainnet.device import prepare_generator

    print(machine(args.device, args.threads))
    print(f"load average {os.getloadavg()[0]:.1f} (other processes share the CPU when it exceeds the cores)")
    set_up = time.perf_counter()
    G = prepare_generator(load_generator(f"random:{args.size}", device), device)
    channels = 3 if args.kind == "encoder4editing" else 6
    arch = EncoderArch(args.kind, G.n_latent, input_nc=channels)
    if args.encoder_width:
        scale = args.encoder_width / arch.widths[-1]
        arch = EncoderArch(args.kind, G.n_latent, input_nc=channels,
                           widths=tuple(max(2, round(w * scale)) for w in arch.widths),
                           stem_width=max(2, round(arch.stem_width * scale)))
    network, encoder = (Encoder4EditingNet, E4EEncoder) if args.kind == "encoder4editing" else (ReStyleNet, ReStyleEncoder)
    net = network(arch).eval().requires_grad_(False).to(device)
    E = encoder(net, G, G.mean_latent()[None].repeat(G.n_latent, 1), f"random {args.kind}").to(device)
    if not E.iterative:
        args.iterations = 1
    clip = load_clip(args.clip, device)
    hyper = HyperDomainNet(G.domain_layout, embed_dim=clip.embed_dim, width=args.hyper_width).eval().to(device)
    folder = Path(tempfile.mkdtemp(prefix="hdn-bench-"))
    photos = [write_photo(folder / f"photo{i}.png", args.size) for i in range(args.batch)]
    if E.iterative:
        E.average_image()
    print(f"set-up (models built, average image rendered): {time.perf_counter() - set_up:.1f} s; "
          f"encoder {sum(p.numel() for p in net.parameters()) / 1e6:.0f} M parameters, generator {args.size} px")

    def encode_one() -> object:
        return encode_photos(E, photos[:1], args.iterations, align=False, progress=False)

    def encode_batch() -> object:
        return encode_photos(E, photos, args.iterations, align=False, batch_size=args.batch, progress=False)

    def stylize_one() -> torch.Tensor:  # as `hdn stylize --text`
        inverted = encode_photos(E, photos[:1], args.iterations, align=False, progress=False)
        delta = hyper.domain_vectors(prompt_embeddings(clip, [PROMPT]))[0]
        domain = Domain(delta.cpu(), "domain_vector", list(G.domain_layout), {"name": "random"})
        result = stylize_inverted(G, domain, inverted)[0]
        strip = result.strip()
        save_grid(strip, folder / "stylized.png", nrow=3)
        shutil.copyfile(folder / "stylized.png", folder / "grid.png")
        return strip

    encode_one()  # warm-up
    enc = statistics.median(timed(encode_one, args.repeats, device))
    batch = statistics.median(timed(encode_batch, max(1, args.repeats - 1), device)) / args.batch
    styl = statistics.median(timed(stylize_one, args.repeats, device))

    lpips = load_lpips("vgg", device, random_backbone=True)
    pnorm = PNormStats.compute(G, n_samples=args.pnorm_samples)  # the statistics' cost is a one-off per generator
    target = load_image(photos[0], G.size).to(device)
    steps = max(1, min(args.ii2s_steps, II2S_STEPS))
    invert(G, target, steps=1, lpips_net=lpips, pnorm=pnorm, progress=False)  # warm-up
    ii2s_measured = statistics.median(timed(lambda: invert(G, target, steps=steps, lpips_net=lpips, pnorm=pnorm,
                                                           progress=False), 1, device))
    ii2s = ii2s_measured * II2S_STEPS / steps
    scaled = "" if steps == II2S_STEPS else f" (scaled from {steps} timed steps: {ii2s_measured:.2f} s)"

    print(f"\nencoder inversion, {args.iterations} iterations, 1 photo:   {enc:8.2f} s")
    print(f"encoder inversion, per photo in a batch of {args.batch}:     {batch:8.2f} s")
    print(f"hdn stylize --text, 1 photo, models loaded:  {styl:8.2f} s   (goal on a 2-core CPU: ≤ 10 s)")
    print(f"II2S, {II2S_STEPS} steps, 1 photo:                  {ii2s:8.1f} s{scaled}")
    print(f"speed-up of the encoder over II2S:           {ii2s / enc:8.0f}×   (goal: ≥ 50×)")
    if not math.isfinite(ii2s / enc):
        raise SystemExit("non-finite timing")
    parts(E, G, stylize_one, folder, args.repeats, device)


def parts(E: object, G: object, stylize_one: Callable[[], torch.Tensor], folder: Path, repeats: int,
          device: torch.device) -> None:
    """Time and count the pieces of one stylised photo (medians of interleaved calls)."""
    from hyperdomainnet.images import save_grid

    x = torch.rand(1, E.net.arch.input_nc, 256, 256, device=device).contiguous(memory_format=torch.channels_last) * 2 - 1
    ws = E.latent_avg[None]
    inference = E.inference_net()
    strip = stylize_one()   # photo | reconstruction | stylised, as written
    calls = {"encoder pass (inference network)": lambda: inference(x),
             "encoder pass (module network)": lambda: E.net(x),
             "render, 1 image": lambda: G.synthesis(ws),
             "PNG strip written": lambda: save_grid(strip, folder / "strip.png", nrow=3)}
    times: dict[str, list[float]] = {name: [] for name in calls}
    with torch.no_grad():
        for _ in range(max(2, repeats)):
            for name, fn in calls.items():
                times[name] += timed(fn, 1, device)
        flops = {"encoder pass (inference network)": counted_flops(lambda _: inference(x)),
                 "render, 1 image": counted_flops(lambda _: G.synthesis(ws))}
    rate = matmul_rate(device, "fp32")
    print(f"\nwhere the time goes (median of {max(2, repeats)} interleaved calls; fp32 matmul rate "
          f"{rate / 1e9:.0f} GFLOP/s):")
    for name, values in times.items():
        line = f"  {name + ':':44s}{statistics.median(values):7.3f} s"
        if name in flops:
            achieved = flops[name] / statistics.median(values)
            line += f"   {flops[name] / 1e9:6.1f} GFLOP, {achieved / 1e9:4.0f} GFLOP/s = {achieved / rate:.0%} of the matmul rate"
        print(line)
    total = counted_flops(lambda _: stylize_one())
    print(f"  hdn stylize --text counts {total / 1e9:.0f} GFLOP: at the matmul rate ≥ {total / rate:.2f} s")


if __name__ == "__main__":
    main()
