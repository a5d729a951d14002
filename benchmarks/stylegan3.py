"""StyleGAN3 speed: rendering ms per image, and a text-adaptation step against StyleGAN2 and the reference ops.

* ``render``: ``G.synthesis`` of a StyleGAN3-T generator at batch 1 (no gradients) per size, on the
  fast path (dense modulated convs, the filtered leaky ReLU as strided / transposed depthwise
  convolutions, channels-last) and, at the ``--reference-sizes``, on the reference path (per-sample weights and
  grouped convolutions, NVIDIA's plain filtered leaky ReLU: zero insertion, full 2-D filters at
  the up-sampled rate, every other sample kept);
* ``step``: one ``hdn adapt text`` step (``TextTrainer.train_step``, direction loss, CLIP
  ViT-B/32 random weights, the same batch) on StyleGAN2 config-f, on StyleGAN3-T (fast path), and
  on StyleGAN3-T with the reference ops driven by the same loss; each with the FLOPs
  FlopCounterMode counts in one step, the machine's fp32 matrix-product rate, the floor
  FLOPs / rate and the fraction of it reached (as ``train_step.py`` reports for StyleGAN2).

Random weights do the same work as trained ones. One process; medians of ``--repeats`` calls after
one warm-up (whose FLOPs are the ones counted).

    python benchmarks/stylegan3.py                           # CPU: render 256 and 1024, step at 256
    python benchmarks/stylegan3.py --device cuda --batch 8   # one GPU
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from train_step import _reference_step, machine, matmul_rate

CLIP = "random:ViT-B-32:1.0"


def sg3_spec(size: int, extra: str) -> str:
    return f"random:sg3-t:{size}{extra}"


def timed(fn: Callable[[int], Any], repeats: int, device: torch.device, count: bool = False
          ) -> tuple[list[float], int]:
    """Wall times of ``repeats`` calls after one untimed warm-up, and the FLOPs FlopCounterMode
    counts in the warm-up (when ``count``; 0 otherwise)."""
    from torch.utils.flop_counter import FlopCounterMode

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with FlopCounterMode(display=False) if count else contextlib.nullcontext() as counter:
        fn(0)
    sync()
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i + 1)
        sync()
        times.append(time.perf_counter() - start)
    return times, counter.get_total_flops() if count else 0


def render_row(size: int, impl: str, args: argparse.Namespace) -> str:
    from hyperdomainnet import load_generator
    from hyperdomainnet.device import prepare_generator

    device = torch.device(args.device)
    G = load_generator(sg3_spec(size, args.spec_extra), device=device)
    if impl == "fast":
        prepare_generator(G, device)  # channels-last, CPU allocator tuning: as the commands render
    ws = G.ws(torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(0)).to(device))

    @torch.no_grad()
    def render(_: int) -> None:
        G.synthesis(ws, impl=impl)

    times, _ = timed(render, args.repeats, device)
    med = statistics.median(times)
    spread = f"[{min(times) * 1e3:.0f}–{max(times) * 1e3:.0f}]"
    return f"render  {size:>5}  StyleGAN3-T {impl:<9}  {med * 1e3:10.0f} ms/image {spread}"


def step_row(label: str, spec: str, reference: bool, args: argparse.Namespace, rate: float) -> tuple[str, float]:
    from hyperdomainnet import load_generator
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.text import TextTrainer

    cfg = TextAdaptConfig(generator=spec, clip=args.clip, source="Photo", target="3D Render in the Style of Pixar",
                          batch=args.batch, lr=0.1, mixing=0.9, noise_mode="random", losses={"direction": 1.0},
                          device=args.device, grid_samples=1, precision="fp32",
                          **({"low_memory": True, "micro_batch": 1} if args.low_memory else {}))
    G = load_generator(spec, device=args.device)
    clip = ClipEnsemble.from_spec(cfg.clip, device=args.device)
    fn = _reference_step(cfg, G, clip) if reference else TextTrainer(cfg, G=G, clip=clip).train_step
    times, flops = timed(fn, args.repeats, torch.device(args.device), count=True)
    med = statistics.median(times)
    floor = flops / rate
    return (f"step    {args.step_size:>5}  {label:<22}  {med:8.2f} s [{min(times):.1f}–{max(times):.1f}]  "
            f"{flops / 1e12:6.3f} TFLOP, floor {floor:6.2f} s, {floor / med:4.0%} of it reached"), med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="render sizes")
    parser.add_argument("--reference-sizes", type=int, nargs="*", default=[256],
                        help="render sizes with the reference path too")
    parser.add_argument("--step-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4, help="text-step batch")
    parser.add_argument("--clip", default=CLIP)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--spec-extra", default="",
                        help="options appended to the StyleGAN3 spec, e.g. :channel_max=16")
    parser.add_argument("--sg2-extra", default="", help="options appended to the StyleGAN2 spec")
    parser.add_argument("--low-memory", action="store_true",
                        help="fast step rows in low-memory mode (recomputation, micro-batches of 1)")
    parser.add_argument("--kinds", nargs="+", choices=["render", "step"], default=["render", "step"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    import logging

    logging.disable(logging.WARNING)  # open_clip: "No pretrained weights loaded" for random ViTs
    print(machine(args.device, args.threads))
    print(f"median of {args.repeats} timed calls after one warm-up (min–max in brackets); fp32")
    if "render" in args.kinds:
        for size in args.sizes:
            for impl in ("fast", "reference") if size in args.reference_sizes else ("fast",):
                print(render_row(size, impl, args), flush=True)
    if "step" in args.kinds:
        rate = matmul_rate(torch.device(args.device), "fp32")
        print(f"text steps: batch {args.batch}, CLIP {args.clip}, fp32 matmul {rate / 1e9:.0f} GFLOP/s")
        size = args.step_size
        rows = [("StyleGAN2 fast", f"random:{size}{args.sg2_extra}", False),
                ("StyleGAN3-T fast", sg3_spec(size, args.spec_extra), False),
                ("StyleGAN3-T reference", sg3_spec(size, args.spec_extra), True)]
        medians = {}
        for label, spec, reference in rows:
            line, medians[label] = step_row(label, spec, reference, args, rate)
            print(line, flush=True)
        fast = medians["StyleGAN3-T fast"]
        print(f"StyleGAN3-T fast vs reference ops: {medians['StyleGAN3-T reference'] / fast:.2f}× faster; "
              f"vs StyleGAN2: {fast / medians['StyleGAN2 fast']:.2f}× the time")


if __name__ == "__main__":
    main()
