"""Generator speed and memory: the project's fast path vs the straightforward reference path.

Measures, for a random-weight config-f generator at the given sizes and batch size: forward
without grad, and forward + backward to the domain vector δ (the training step's generator
part), for ``fast`` (as ``TextTrainer`` runs it: ``prepare_generator``, i.e. channels-last and
the tuned CPU allocator) and ``reference`` (``impl="reference"``: per-sample modulated weights,
grouped convolutions, the research FIR op). Each case runs in its own process; time and peak
memory are measured as in ``train_step.py`` (whose ``Meter`` this reuses).

    python benchmarks/generator.py                 # 256 px, batch 4, CPU
    python benchmarks/generator.py --sizes 256 1024 --device cuda

The whole training step (CLIP included) is measured by benchmarks/train_step.py.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
from typing import Any

import torch

from train_step import Meter, machine


def _run_case(size: int, batch: int, impl: str, mode: str, device: str, repeats: int, threads: int,
              queue: Any) -> None:
    torch.set_num_threads(threads)
    from hyperdomainnet import load_generator
    from hyperdomainnet.training.runtime import prepare_generator

    G = load_generator(f"random:{size}", device=device)
    if impl == "fast":
        prepare_generator(G, torch.device(device))
    ws = G.ws(torch.randn(batch, G.style_dim, device=device))
    delta = torch.zeros(G.domain_size, device=device, requires_grad=mode == "fwd+bwd")

    def step(_: int) -> None:
        if mode == "fwd":
            with torch.no_grad():
                G.synthesis(ws, domain=delta, impl=impl)
        else:
            G.synthesis(ws, domain=delta, impl=impl).square().mean().backward()
            delta.grad = None

    queue.put(Meter(torch.device(device))(step, repeats))


def measure(size: int, batch: int, impl: str, mode: str, device: str, repeats: int,
            threads: int) -> tuple[list[float], int]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_case, args=(size, batch, impl, mode, device, repeats, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    print(machine(args.device, args.threads))
    print(f"batch {args.batch}; median of {args.repeats} after one warm-up; peak = memory above the loaded generator")
    print(f"{'size':>5} {'mode':>8} {'fast s':>9} {'ref s':>9} {'speed-up':>9} {'fast MiB':>9} {'ref MiB':>9} {'mem ratio':>9}")
    for size in args.sizes:
        for mode in ("fwd", "fwd+bwd"):
            fast_t, fast_m = measure(size, args.batch, "fast", mode, args.device, args.repeats, args.threads)
            ref_t, ref_m = measure(size, args.batch, "reference", mode, args.device, args.repeats, args.threads)
            fast_s, ref_s = statistics.median(fast_t), statistics.median(ref_t)
            print(f"{size:>5} {mode:>8} {fast_s:>9.3f} {ref_s:>9.3f} {ref_s / fast_s:>8.2f}x "
                  f"{fast_m / 2**20:>9.0f} {ref_m / 2**20:>9.0f} {fast_m / max(ref_m, 1):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
