"""Run one ``hdn`` command with the CUDA allocator capped at a given size, as on a smaller GPU.

``torch.cuda.set_per_process_memory_fraction`` makes every allocation past the cap raise the same
out-of-memory error a card of that size would; the CUDA context (≈0.5 GiB, outside the
allocator) is not counted, so cap a little below the card's size. At exit the script prints the
allocator's peaks, the GPU and the torch build.

    python benchmarks/memory_cap.py 11 -- adapt text --preset td_single_ffhq --low-memory \\
        --generator random:1024 --clip random:ViT-B-32:1.0,random:ViT-B-16:1.0 --steps 5 --out /tmp/run
"""
from __future__ import annotations

import argparse
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gib", type=float, help="allocator cap in GiB")
    parser.add_argument("hdn_args", nargs=argparse.REMAINDER, help="-- then the hdn command's arguments")
    args = parser.parse_args()
    hdn_args = args.hdn_args[1:] if args.hdn_args[:1] == ["--"] else args.hdn_args
    if not torch.cuda.is_available():
        sys.exit("memory_cap.py needs a CUDA GPU")
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(args.gib * 2**30 / total, 1.0))
    print(f"GPU {torch.cuda.get_device_name()} ({total / 2**30:.1f} GiB), torch {torch.__version__} "
          f"(CUDA {torch.version.cuda}); allocator capped at {args.gib:g} GiB", flush=True)
    from hyperdomainnet.cli import main as hdn

    code = hdn(hdn_args)
    print(f"exit {code}; peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB, "
          f"peak reserved {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB (cap {args.gib:g} GiB)", flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
