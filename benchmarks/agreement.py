"""Fast paths against the per-sample reference on a given device (the unit tests do this on tiny
CPU models; this runs the real sizes, e.g. on a GPU).

For a random-weight config-f generator, batch 4, random noise, a per-sample domain vector δ away
from 0 and the loss Σ sin(image): the largest |difference| of the image and of ∂loss/∂δ between
``impl="fast"`` as training runs it (channels-last, styles and demodulation from a
``StyleCache``) and ``impl="reference"`` (per-sample modulated weights, grouped convolutions),
relative to the reference's largest entry; fp32 with TF32 off. Autocast rows give the cosine
similarity of the gradient with the fp32 reference instead.

    python benchmarks/agreement.py --device cuda --sizes 256 1024
    python benchmarks/agreement.py --sizes 32 --channel-max 16   # smoke run
"""
from __future__ import annotations

import argparse

import torch

from generator import generator_spec
from train_step import machine


def image_and_grad(G, ws, noise, delta, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    delta = delta.clone().requires_grad_()
    image = G.synthesis(ws, domain=delta, noise=noise, **kwargs)
    image.float().sin().sum().backward()
    return image.detach().float(), delta.grad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256])
    parser.add_argument("--channel-max", type=int, default=None,
                        help="cap the generator's channels (default: config-f's 512), for quick runs")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    from hyperdomainnet import load_generator
    from hyperdomainnet.device import prepare_generator

    device = torch.device(args.device)
    print(machine(args.device, torch.get_num_threads()))
    print(f"{'size':>5} {'path':<22} {'image |Δ|/max':>14} {'∂δ |Δ|/max':>12} {'∂δ cosine':>10}")
    for size in args.sizes:
        G = load_generator(generator_spec(size, args.channel_max), device=device)
        gen = torch.Generator().manual_seed(size)
        ws = G.ws(torch.randn(4, G.style_dim, generator=gen).to(device),
                  z2=torch.randn(4, G.style_dim, generator=gen).to(device), crossover=5)
        noise = [n.to(device) for n in G.make_noise("random", 4, torch.device("cpu"), gen)]
        delta = (0.2 * torch.randn(4, G.domain_size, generator=gen)).to(device)
        ref_img, ref_grad = image_and_grad(G, ws, noise, delta, impl="reference")
        prepare_generator(G, device)
        rows = {"fast": ({}, None), "fast + StyleCache": ({"cache": G.style_cache(ws)}, None)}
        rows.update({f"fast {p} autocast": ({}, p) for p in (["bf16", "fp16"] if device.type == "cuda" else ["bf16"])})
        for label, (kwargs, precision) in rows.items():
            if precision:
                dtype = torch.bfloat16 if precision == "bf16" else torch.float16
                with torch.autocast(device.type, dtype=dtype):
                    img, grad = image_and_grad(G, ws, noise, delta, **kwargs)
            else:
                img, grad = image_and_grad(G, ws, noise, delta, **kwargs)
            image_err = float((img - ref_img).abs().max() / ref_img.abs().max())
            grad_err = float((grad - ref_grad).abs().max() / ref_grad.abs().max())
            cosine = float(torch.nn.functional.cosine_similarity(grad.flatten().float(), ref_grad.flatten(), dim=0))
            print(f"{size:>5} {label:<22} {image_err:>14.2e} {grad_err:>12.2e} {cosine:>10.6f}", flush=True)


if __name__ == "__main__":
    main()
