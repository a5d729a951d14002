"""Training-step and rendering speed and memory: the fast path against the straightforward reference.

One command prints, for each size and CLIP ensemble (batch 4 by default), the median time of a
text-adaptation step and its peak memory for

* ``reference``: the research-code way, in the same process tree on the same machine: per-sample
  modulated weights and grouped convolutions (``impl="reference"``), the native FIR op (zero
  insertion + single-channel convolution over (B·C, 1, H, W)), styles recomputed for each render,
  the default CPU allocator, NCHW, fp32;
* ``fast``: ``TextTrainer.train_step`` as shipped (fp32): activation-space modulation with dense
  convolutions, the fused modulated-conv/activation autograd functions, the depthwise/polyphase
  FIR, styles and demodulation shared by G_A and G_B, channels-last, the tuned CPU allocator,
  CLIP's packed self-attention;
* variants of ``fast`` on the first size/ensemble: bf16 autocast, low-memory mode (block
  recomputation + micro-batches of 1), NCHW; on CUDA also fp16 autocast (with loss scaling) and
  ``torch.compile`` of the synthesis network (compiled in the untimed warm-up), and low-memory
  rows for every ensemble;

then ``targets`` rows: one ``hdn adapt text`` step training K = 1, 4, 16 targets at once
(``TextTrainer``; K = 1 is a single-target run) with the throughput in
domains × steps / s, the time against K single steps, the FLOPs FlopCounterMode counts in one
step, the machine's measured matrix-product rate at the step's precision, the floor FLOPs / rate
and the fraction of it reached; then a HyperDomainNet step (per-sample δ from the hypernetwork, 256 px), the shipped
``TextHypernetTrainer`` step (``trainer``: more work, no ratio) and batched multi-domain
rendering (one δ per sample, no gradients) in images/s. Every case runs in a fresh process
(``spawn``) so that its peak memory is its own: on the CPU the growth of the peak resident set
over the resident set after loading (VmHWM reset through /proc/self/clear_refs), on CUDA
``max_memory_allocated`` over the allocated memory after loading. Random-weight models (config-f
StyleGAN2, open_clip ViTs) do the same work as trained ones.

    python benchmarks/train_step.py                  # CPU: 256 and 1024 px, ViT-B/32 and ViT-B/32+ViT-B/16
    python benchmarks/train_step.py --device cuda    # one GPU: the same table
    python benchmarks/train_step.py --sizes 256 --clips B/32 --repeats 2   # a quick look
    python benchmarks/train_step.py --sizes 256 --clips B/32 --kinds targets --targets 1 4 16 --micro-batch 16 --repeats 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

CLIPS = {"B/32": "random:ViT-B-32:1.0", "B/32+B/16": "random:ViT-B-32:1.0,random:ViT-B-16:1.0"}


@dataclass(frozen=True)
class Case:
    """One measurement: ``kind`` step | hypernet | render, ``path`` reference | fast, config changes."""

    kind: str  # step | targets | hypernet | render
    size: int
    clip: str
    path: str
    label: str
    changes: dict[str, Any] = field(default_factory=dict)


# ----- memory and timing ------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss(reset_ok: bool) -> int:
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Meter:
    """Median wall time of repeated calls and the peak memory they add over the starting point."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[int], Any], repeats: int) -> tuple[list[float], int, int]:
        """Times of ``repeats`` calls after one untimed warm-up, the peak memory they add over the
        loaded models and the process's whole peak (CUDA: memory the allocator reserved; CPU: peak
        resident set). The peaks count the warm-up too (memory an allocator keeps after it is part
        of the step's footprint)."""
        self._sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            reset_ok = _reset_peak()
            base = _rss()
        fn(0)
        self._sync()
        times = []
        for i in range(repeats):
            start = time.perf_counter()
            fn(i + 1)
            self._sync()
            times.append(time.perf_counter() - start)
        if self.cuda:
            return times, max(torch.cuda.max_memory_allocated() - base, 0), torch.cuda.max_memory_reserved()
        peak = _peak_rss(reset_ok)
        return times, max(peak - base, 0), peak

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def matmul_rate(device: torch.device, precision: str, n: int = 2048, repeats: int = 3) -> float:
    """The best FLOP/s of an n×n×n matrix product in the step's precision (bf16/fp16 operands
    under autocast, else fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def op_breakdown(fn: Callable[[int], Any], top: int) -> str:
    """The ``top`` operators of one call by self time (torch.profiler), as ``name share%`` items."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        fn(10**6 + 1)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in events[:top])


def counted_flops(fn: Callable[[int], Any]) -> int:
    """FLOPs of one call as torch's FlopCounterMode counts them (matrix products and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(10**6)
    return counter.get_total_flops()


# ----- the measured work ------------------------------------------------------------------------
def _text_config(case: Case, batch: int, device: str) -> Any:
    from hyperdomainnet.training.config import TextAdaptConfig

    return TextAdaptConfig(generator=f"random:{case.size}", clip=CLIPS[case.clip], source="Photo",
                           target="3D Render in the Style of Pixar", batch=batch, lr=0.1, mixing=0.9,
                           noise_mode="random", losses={"direction": 1.0}, device=device, grid_samples=1,
                           **{"precision": "fp32", **case.changes})


def _direction(clip: Any, text: dict, src: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    from hyperdomainnet.losses import direction_loss

    total = 0
    for enc, weight in clip:
        with torch.no_grad():
            a = enc.encode_images(src)
        total = total + weight * direction_loss(enc.encode_images(trg), a, *text[enc.name])
    return total


def _text_embeddings(clip: Any, cfg: Any) -> dict:
    return {enc.name: (enc.template_embeddings(cfg.target)[None], enc.template_embeddings(cfg.source)[None])
            for enc, _ in clip}


def _reference_step(cfg: Any, G: Any, clip: Any) -> Callable[[int], Any]:
    """The research-code step: per-sample weights, grouped convs, native FIR, nothing shared."""
    from hyperdomainnet.training.sampling import sample_noise, sample_ws_per_call

    device = torch.device(cfg.device)
    delta = torch.zeros(G.domain_size, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=cfg.lr, betas=cfg.betas)
    rng = torch.Generator().manual_seed(cfg.seed)
    text = _text_embeddings(clip, cfg)

    def step(_: int) -> None:
        ws = sample_ws_per_call(G, cfg.batch, cfg.mixing, rng, device, 1)[0]
        noise = sample_noise(G, cfg.noise_mode, cfg.batch, rng, device)
        with torch.no_grad():
            src = G.synthesis(ws, noise=noise, impl="reference")
        trg = G.synthesis(ws, domain=delta, noise=noise, impl="reference")
        loss = _direction(clip, text, src, trg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _hypernet_step(cfg: Any, G: Any, clip: Any, fast: bool) -> Callable[[int], Any]:
    """HyperDomainNet step: δ_i = net(e_i) per sample, G_A / G_B, direction loss, Adam on the net."""
    from hyperdomainnet.hypernet import HyperDomainNet
    from hyperdomainnet.clip.attention import prepare_clip
    from hyperdomainnet.device import prepare_generator
    from hyperdomainnet.training.sampling import sample_noise, sample_ws_per_call

    device = torch.device(cfg.device)
    if fast:
        prepare_generator(G, device)
        prepare_clip(clip)
    impl = "fast" if fast else "reference"
    gen = torch.Generator().manual_seed(0)
    net = HyperDomainNet(G.domain_layout, embed_dim=512).to(device).train()
    inputs = torch.nn.functional.normalize(torch.randn(cfg.batch, 512, generator=gen), dim=1).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-5)
    rng = torch.Generator().manual_seed(cfg.seed)
    text = _text_embeddings(clip, cfg)

    def step(_: int) -> None:
        ws = sample_ws_per_call(G, cfg.batch, cfg.mixing, rng, device, 1)[0]
        noise = sample_noise(G, cfg.noise_mode, cfg.batch, rng, device)
        cache = G.style_cache(ws) if fast else None
        with torch.no_grad():
            src = G.synthesis(ws, noise=noise, impl=impl, cache=cache)
        trg = G.synthesis(ws, domain=net(inputs), noise=noise, impl=impl, cache=cache)
        loss = _direction(clip, text, src, trg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _hypernet_trainer(cfg: Any, G: Any, clip: Any) -> Callable[[int], Any]:
    """``TextHypernetTrainer.train_step`` as shipped (train-20 list, convex-hull mixing, resampling,
    crops, direction + tt_direction): more work than the step above, so no ratio is printed."""
    from hyperdomainnet.training.config import HypernetConfig
    from hyperdomainnet.training.multi_text import TextHypernetTrainer

    settings = {k: getattr(cfg, k) for k in ("generator", "clip", "batch", "mixing", "noise_mode", "device")}
    config = HypernetConfig(**settings, domains="train-20", mapper_clip=cfg.clip.split(",")[0].rsplit(":", 1)[0],
                            losses={"direction": 1.0, "tt_direction": 0.4}, grid_samples=1)
    return TextHypernetTrainer(config, G=G, clip=clip).train_step


def _render(G: Any, batch: int, device: torch.device, fast: bool, compile: bool) -> Callable[[int], Any]:
    """Batched multi-domain rendering: one random δ per sample, no gradients."""
    from hyperdomainnet.device import prepare_generator

    if fast:
        prepare_generator(G, device, compile=compile)
    gen = torch.Generator().manual_seed(0)
    ws = G.ws(torch.randn(batch, G.style_dim, generator=gen).to(device))
    domains = (0.2 * torch.randn(batch, G.domain_size, generator=gen)).to(device)

    @torch.no_grad()
    def render(_: int) -> None:
        G.synthesis(ws, domain=domains, impl="fast" if fast else "reference")

    return render


def _run_case(case: Case, batch: int, device: str, repeats: int, threads: int, queue: Any,
              profile_top: int = 0) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(threads)
    import logging

    logging.disable(logging.WARNING)  # open_clip: "No pretrained weights loaded" for random ViTs
    from hyperdomainnet import load_generator
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.device import resolve_precision
    from hyperdomainnet.training.text import TextTrainer

    try:
        G = load_generator(f"random:{case.size}", device=device)
        fast = case.path == "fast"
        if case.kind == "render":
            fn = _render(G, batch, torch.device(device), fast, case.changes.get("compile", False))
        else:
            cfg = _text_config(case, batch, device)
            clip = ClipEnsemble.from_spec(cfg.clip, device=device)
            if case.kind == "hypernet" and case.label == "trainer":
                fn = _hypernet_trainer(cfg, G, clip)
            elif case.kind == "hypernet":
                fn = _hypernet_step(cfg, G, clip, fast)
            elif fast:
                fn = TextTrainer(cfg, G=G, clip=clip).train_step
            else:
                fn = _reference_step(cfg, G, clip)
        times, peak, total = Meter(torch.device(device))(fn, repeats)
        extra = {}
        if case.kind == "targets":
            precision = resolve_precision(cfg.precision, torch.device(device))
            extra = {"flops": counted_flops(fn), "rate": matmul_rate(torch.device(device), precision),
                     "precision": precision}
            if profile_top:
                extra["ops"] = op_breakdown(fn, profile_top)
        queue.put((times, peak, total, None, extra))
    except Exception as exc:  # report and go on with the other cases
        queue.put(([], 0, 0, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}", {}))


def measure(case: Case, batch: int, device: str, repeats: int,
            threads: int, profile_top: int = 0) -> tuple[list[float], int, int, str | None, dict[str, Any]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run_case, args=(case, batch, device, repeats, threads, queue, profile_top))
    proc.start()
    proc.join()
    if queue.empty():
        return [], 0, 0, f"the process died (exit code {proc.exitcode}; out of memory?)", {}
    return queue.get()


# ----- the table --------------------------------------------------------------------------------
def _seconds(median: float, low: float, high: float) -> str:
    """``4.29 s [4.2–4.4]``, or in milliseconds under a second (GPU steps)."""
    if median >= 1:
        return f"{median:6.2f} s [{low:.1f}–{high:.1f}]"
    return f"{median * 1e3:5.1f} ms [{low * 1e3:.0f}–{high * 1e3:.0f}]"


def machine(device: str, threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device.startswith("cuda") else ""
    build = f"torch {torch.__version__}" + (f" (CUDA {torch.version.cuda})" if torch.version.cuda else "")
    from hyperdomainnet.device import native_bf16

    return (f"machine: {cpu}, {os.cpu_count()} logical CPUs, {threads} torch threads{gpu}; {build}, "
            f"MKL {torch.backends.mkl.is_available()}, oneDNN {torch.backends.mkldnn.is_available()}, "
            f"CPU capability {torch.backends.cpu.get_cpu_capability()}, AMX "
            f"{bool(getattr(torch.cpu, '_is_amx_tile_supported', lambda: False)())}, "
            f"native bf16 on {device}: {native_bf16(torch.device(device))}; device {device}")


def target_case(k: int, size: int, clip: str, batch: int, micro_batch: int | None) -> Case:
    """A ``targets`` row: K prompts in one run (K = 1: the single-target trainer); rows of more
    than ``micro_batch`` images render in micro-batches of that many (label ``K=16 mb 16``)."""
    changes: dict[str, Any] = {"precision": "auto"}
    if k > 1:
        changes["targets"] = [f"style number {i}" for i in range(k)]
    label = f"K={k}"
    if micro_batch and k * batch > micro_batch:
        changes["micro_batch"] = micro_batch
        label += f" mb {micro_batch}"
    return Case("targets", size, clip, "fast", label, changes)


def cases(sizes: list[int], clips: list[str], device: str, targets: list[int] = (1, 4, 16), batch: int = 4,
          micro_batch: int | None = None) -> list[Case]:
    out = [target_case(k, sizes[0], clips[0], batch, micro_batch) for k in targets]
    for size in sizes:
        for clip in clips:
            out += [Case("step", size, clip, "reference", "reference"), Case("step", size, clip, "fast", "fast")]
            if clip == clips[0] or device.startswith("cuda"):
                out.append(Case("step", size, clip, "fast", "fast low-memory", {"low_memory": True, "micro_batch": 1}))
            if size == sizes[0] and clip == clips[0]:
                out += [Case("step", size, clip, "fast", "fast bf16", {"precision": "bf16"}),
                        Case("step", size, clip, "fast", "fast NCHW", {"channels_last": False})]
                if device.startswith("cuda"):
                    out += [Case("step", size, clip, "fast", "fast fp16", {"precision": "fp16"}),
                            Case("step", size, clip, "fast", "fast compile", {"compile": True})]
    out += [Case("hypernet", min(sizes), clips[0], path, path) for path in ("reference", "fast")]
    out.append(Case("hypernet", min(sizes), clips[0], "fast", "trainer"))
    for size in sizes:
        out += [Case("render", size, "-", path, path) for path in ("reference", "fast")]
        if device.startswith("cuda"):
            out.append(Case("render", size, "-", "fast", "fast compile", {"compile": True}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=list(CLIPS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case, after one warm-up")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (model set-up on CUDA)")
    parser.add_argument("--targets", type=int, nargs="+", default=[1, 4, 16], help="K of the targets rows")
    parser.add_argument("--micro-batch", type=int, default=None, metavar="N",
                        help="targets rows: render more than N images in micro-batches of N (for K = 16 on a small machine)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="targets rows: also print the N operators taking most time in one profiled step")
    parser.add_argument("--kinds", nargs="+", choices=["step", "targets", "hypernet", "render"],
                        help="run only these kinds of case (default: all)")
    parser.add_argument("--labels", nargs="+", help="run only the cases with these path labels, e.g. reference fast")
    args = parser.parse_args()
    threads = args.threads

    print(machine(args.device, threads))
    print(f"batch {args.batch}; median of {args.repeats} timed calls after one warm-up (min–max in brackets); "
          "peak = memory above the loaded models; total = the process's peak "
          f"({'memory reserved by the CUDA allocator, models included' if args.device.startswith('cuda') else 'resident set'}); "
          "ratios against the reference row above")
    header = (f"{'what':<9} {'size':>5} {'CLIP':<10} {'path':<16} {'median':>18} {'peak MiB':>9} {'total MiB':>9} "
              f"{'speed-up':>9} {'memory':>7}")
    print(header)
    print("-" * len(header))
    reference: dict[tuple[str, int, str], tuple[float, int]] = {}
    single: float | None = None
    for case in cases(args.sizes, args.clips, args.device, args.targets, args.batch, args.micro_batch):
        if (args.kinds and case.kind not in args.kinds) or (args.labels and case.label not in args.labels):
            continue
        times, peak, total, error, extra = measure(case, args.batch, args.device, args.repeats, threads, args.profile)
        what = {"step": "text step", "targets": "targets", "hypernet": "HDN step", "render": "render"}[case.kind]
        prefix = f"{what:<9} {case.size:>5} {case.clip:<10} {case.label:<16}"
        if error:
            print(f"{prefix} failed: {error}", flush=True)
            continue
        med = statistics.median(times)
        if case.kind == "targets":
            k = len(case.changes.get("targets", [])) or 1
            single = med if k == 1 else single
            floor = extra["flops"] / extra["rate"]
            versus = f"{med / (k * single):.2f}× of {k} single steps" if single else "no K=1 row"
            print(f"{prefix} {_seconds(med, min(times), max(times)):>18} {peak / 2**20:>9.0f} {total / 2**20:>9.0f} "
                  f"{k / med:6.3f} domain-steps/s, {versus}; {extra['flops'] / 1e12:.2f} TFLOP counted, "
                  f"{extra['precision']} matmul {extra['rate'] / 1e9:.0f} GFLOP/s, floor {floor:.2f} s, "
                  f"{floor / med:.0%} of it reached", flush=True)
            if extra.get("ops"):
                print(f"{'':<9} top operators: {extra['ops']}", flush=True)
            continue
        key = (case.kind, case.size, case.clip)
        if case.path == "reference":
            reference[key] = (med, peak)
        ref_t, ref_m = reference.get(key, (float("nan"), 0)) if case.label != "trainer" else (float("nan"), 0)
        if case.kind == "render":
            timing = f"{args.batch / med:8.2f} img/s"
        else:
            timing = _seconds(med, min(times), max(times))
        mem_ratio = f"{peak / ref_m:6.2f}x" if ref_m else "    -"
        speed_up = f"{ref_t / med:8.2f}x" if ref_m else "        -"
        print(f"{prefix} {timing:>18} {peak / 2**20:>9.0f} {total / 2**20:>9.0f} {speed_up:>9} {mem_ratio:>7}",
              flush=True)


if __name__ == "__main__":
    main()
