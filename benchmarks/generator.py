"""Generator speed and memory: the project's fast path vs the straightforward reference path.

Measures, for a random-weight config-f generator at the given sizes and batch size:
forward without grad, and forward + backward to the domain vector δ (the training step's
generator part), for ``impl="fast"`` (activation-space modulation, dense convolutions) and
``impl="reference"`` (per-sample modulated weights, grouped convolutions). Each case runs in its
own process so that peak memory (CUDA: max allocated; CPU: growth of max RSS) is its own.

    python benchmarks/generator.py                 # 256 px, batch 4, CPU
    python benchmarks/generator.py --sizes 256 1024 --device cuda

The whole training step (CLIP included) is measured by benchmarks/train_step.py.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import time

import torch


def _peak_bytes(device: str, before: int) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def _run_case(size: int, batch: int, impl: str, mode: str, device: str, repeats: int, threads: int,
              queue: mp.Queue) -> None:
    torch.set_num_threads(threads)
    from hyperdomainnet import load_generator

    G = load_generator(f"random:{size}", device=device)
    ws = G.ws(torch.randn(batch, G.style_dim, device=device))
    delta = torch.zeros(G.domain_size, device=device, requires_grad=mode == "fwd+bwd")

    def step() -> None:
        if mode == "fwd":
            with torch.no_grad():
                G.synthesis(ws, domain=delta, impl=impl)
        else:
            G.synthesis(ws, domain=delta, impl=impl).square().mean().backward()
            delta.grad = None

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    queue.put((statistics.median(times), _peak_bytes(device, before)))


def measure(size: int, batch: int, impl: str, mode: str, device: str, repeats: int, threads: int) -> tuple[float, int]:
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
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"torch {torch.__version__} | device {args.device} ({device_name}) | threads {args.threads} | "
          f"batch {args.batch} | median of {args.repeats}")
    print(f"{'size':>5} {'mode':>8} {'fast s':>9} {'ref s':>9} {'speed-up':>9} {'fast MiB':>9} {'ref MiB':>9} {'mem ratio':>9}")
    for size in args.sizes:
        for mode in ("fwd", "fwd+bwd"):
            fast_t, fast_m = measure(size, args.batch, "fast", mode, args.device, args.repeats, args.threads)
            ref_t, ref_m = measure(size, args.batch, "reference", mode, args.device, args.repeats, args.threads)
            print(f"{size:>5} {mode:>8} {fast_t:>9.3f} {ref_t:>9.3f} {ref_t / fast_t:>8.2f}x "
                  f"{fast_m / 2**20:>9.0f} {ref_m / 2**20:>9.0f} {fast_m / max(ref_m, 1):>9.2f}")


if __name__ == "__main__":
    main()
