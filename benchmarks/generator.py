"""Generator speed and memory: the project's fast path vs the straightforward reference path.

Measures, for a random-weight config-f generator at the given sizes and batch size: forward
without grad, and forward + backward to the domain vector δ (the training step's generator
part), for ``fast`` (as ``TextTrainer`` runs it: ``prepare_generator``, i.e. channels-last and
the tuned CPU allocator) and ``reference`` (``impl="reference"``: per-sample modulated weights,
grouped convolutions, the research FIR op). Each case runs in its own process; time and peak
memory are measured as in ``train_step.py`` (whose ``Meter`` this reuses).

    python benchmarks/generator.py                 # 256 px, batch 4, CPU
    python benchmarks/generator.py --sizes 256 1024 --device cuda
    python benchmarks/generator.py --sizes 32 --channel-max 16 --batch 1 --repeats 1 --same-process  # smoke run

The whole training step (CLIP included) is measured by benchmarks/train_step.py.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import statistics
from typing import Any

import torch

from train_step import Meter, machine


def generator_spec(size: int, channel_max: int | None) -> str:
    """The random generator measured: config-f at ``size`` px, channels capped at ``channel_max``."""
    return f"random:{size}" if channel_max is None else f"random:{size}:channel_max={channel_max}"


def _run_case(spec: str, batch: int, impl: str, mode: str, device: str, repeats: int, threads: int,
              results: Any) -> None:
    torch.set_num_threads(threads)
    from hyperdomainnet import load_generator
    from hyperdomainnet.device import prepare_generator

    G = load_generator(spec, device=device)
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

    times, added_peak, _process_peak = Meter(torch.device(device))(step, repeats)
    results.put((times, added_peak))


def measure(spec: str, batch: int, impl: str, mode: str, device: str, repeats: int,
            threads: int, same_process: bool = False) -> tuple[list[float], int]:
    """(times of the timed calls, peak memory added over the loaded generator), in a fresh process
    (``same_process``: in this one, quicker to start but with peaks shared between cases)."""
    if same_process:
        local: queue.SimpleQueue[Any] = queue.SimpleQueue()
        _run_case(spec, batch, impl, mode, device, repeats, threads, local)
        return local.get()
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_run_case, args=(spec, batch, impl, mode, device, repeats, threads, results))
    proc.start()
    proc.join()
    try:
        return results.get(timeout=10)
    except queue.Empty:
        raise SystemExit(f"the {impl} {mode} case of {spec} failed (exit {proc.exitcode}); see the error above") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channel-max", type=int, default=None,
                        help="cap the generator's channels (default: config-f's 512), for quick runs")
    parser.add_argument("--same-process", action="store_true",
                        help="run every case in this process (quick start; memory peaks are not per case)")
    args = parser.parse_args()

    print(machine(args.device, args.threads))
    print(f"batch {args.batch}; median of {args.repeats} after one warm-up; peak = memory above the loaded generator")
    print(f"{'size':>5} {'mode':>8} {'fast s':>9} {'ref s':>9} {'speed-up':>9} {'fast MiB':>9} {'ref MiB':>9} {'mem ratio':>9}")
    for size in args.sizes:
        for mode in ("fwd", "fwd+bwd"):
            spec = generator_spec(size, args.channel_max)
            fast_t, fast_m = measure(spec, args.batch, "fast", mode, args.device, args.repeats, args.threads,
                                     args.same_process)
            ref_t, ref_m = measure(spec, args.batch, "reference", mode, args.device, args.repeats, args.threads,
                                   args.same_process)
            fast_s, ref_s = statistics.median(fast_t), statistics.median(ref_t)
            print(f"{size:>5} {mode:>8} {fast_s:>9.3f} {ref_s:>9.3f} {ref_s / fast_s:>8.2f}x "
                  f"{fast_m / 2**20:>9.0f} {ref_m / 2**20:>9.0f} {fast_m / max(ref_m, 1):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
