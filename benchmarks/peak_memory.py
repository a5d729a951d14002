"""Where a CPU text-adaptation process's memory goes, stage by stage (what `hdn adapt text` does).

One process: imports, the generator, the trainer's set-up (the CLIP ensemble loaded, the prompts'
template embeddings encoded, then its text towers freed), and training steps. Per stage: the
resident set after it and the peak resident set during it (VmHWM, reset at the stage's start
through /proc/self/clear_refs; Linux). Random-weight models of the real architectures take the
memory trained ones take. ``--keep-text-towers`` hands the trainer a CLIP it did not load, which
it leaves whole (as a library caller sharing one CLIP between runs): the difference is the text
towers' share.

    python benchmarks/peak_memory.py --size 256 --clip random:ViT-B-32:1.0
    python benchmarks/peak_memory.py --size 256 --clip random:ViT-B-32:1.0 --keep-text-towers
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from train_step import _peak_rss, _reset_peak, machine


def resident() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="random config-f generator of this size")
    parser.add_argument("--clip", default="random:ViT-B-32:1.0", help="CLIP ensemble spec")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--generator", default=None, help="generator spec (default: random:<size>)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--keep-text-towers", action="store_true",
                        help="give the trainer a CLIP it did not load, so it keeps the text towers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine("cpu", args.threads))
    rows: list[tuple[str, int, int, float]] = []
    reset_ok = _reset_peak()

    def stage(name: str, fn):  # noqa: ANN001, ANN202
        _reset_peak()
        start = time.perf_counter()
        out = fn()
        rows.append((name, resident(), _peak_rss(reset_ok), time.perf_counter() - start))
        return out

    def imports() -> None:
        import hyperdomainnet.training.text  # noqa: F401

    stage("python, torch and hyperdomainnet imported", imports)
    from hyperdomainnet import load_generator
    from hyperdomainnet.clip import ClipEnsemble
    from hyperdomainnet.training.config import TextAdaptConfig
    from hyperdomainnet.training.text import TextTrainer

    spec = args.generator or f"random:{args.size}"
    G = stage(f"generator {spec} loaded", lambda: load_generator(spec))
    cfg = TextAdaptConfig(generator=spec, clip=args.clip, target="3D Render in the Style of Pixar", batch=args.batch,
                          device="cpu", grid_samples=1, precision="fp32")
    clip = stage(f"CLIP {args.clip} loaded (kept whole)", lambda: ClipEnsemble.from_spec(args.clip)) \
        if args.keep_text_towers else None
    setup = "trainer set up (" + ("prompts encoded)" if clip is not None else "CLIP loaded, prompts encoded, text towers freed)")
    trainer = stage(setup, lambda: TextTrainer(cfg, G=G, clip=clip))
    for step in range(args.steps):
        stage(f"training step {step + 1} (batch {args.batch})", lambda: trainer.train_step(step))
    print(f"{'stage':<62} {'resident MiB':>12} {'peak MiB':>9} {'time':>8}")
    for name, rss, peak, seconds in rows:
        print(f"{name:<62} {rss / 2**20:>12.0f} {peak / 2**20:>9.0f} {seconds:>7.1f}s")
    print(f"process peak: {max(peak for _, _, peak, _ in rows) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
