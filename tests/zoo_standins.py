"""Stand-ins of every zoo file in its released layout, with random weights and tiny channels.

Layouts as the files are published:
* rosinality FFHQ generator (convert_weight.py of the NVIDIA pickle): ``{"g", "g_ema", "latent_avg"}``
  (the discriminator "d" of the real file is left out: nothing reads it); 18 W+ layers, 8 mapping
  layers, channels capped at ``CHANNELS`` and ``STYLE_DIM``-d styles (512 in the real files);
* LSUN generators (generator-only conversions): ``{"g_ema"}``, no mean latent;
* NVIDIA AFHQ pickles: a training snapshot ``{"G", "D", "G_ema", ...}`` of persistent objects;
* ReStyle pSp / e4e (yuval-alaluf/restyle-encoder): ``{"state_dict": encoder.* + decoder.*, "opts",
  "latent_avg"}`` with the IR-SE50 key names and ``opts`` as its training script stores them;
* encoder4editing's single-pass e4e: the same top-level layout, its ``Encoder4Editing`` key names;
* dlib's 68-point landmark model (a tiny trained predictor in dlib's format), served bzip2-compressed;
* NVIDIA's StyleGAN3 pickles: training snapshots of ``networks_stylegan3`` persistent objects (one
  stand-in per config and size, served under each of the public file names);
* the released HyperDomainNet archive: ``checkpoints/td_checkpoints/td_<name>.pt``,
  ``checkpoints/im2im_checkpoints/im2im_<name>.pt`` (with ``style_latents`` (1, 11, D)) and the
  three mappers ``checkpoints/mapper_*.pt`` (``residual_channelin`` state dicts, ``mapper_config``,
  ``clip_encoder``, ``sg2_params`` naming the FFHQ generator file).
The mappers name the test's random CLIP tower instead of ViT-B/32 (its weights cannot be fetched
here); its 32-d embeddings set the mappers' input width.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch

from encoder_standins import write_e4e_standin, write_landmark_standin
from test_convert import MAPPER_CONFIG, official_mapper
from test_nvidia_pkl import nvidia_tree, snapshot, to_nvidia_state_dict, write_pickle
from test_stylegan3_loading import nvidia_stylegan3_tree
from hyperdomainnet.encoders import EncoderArch, ReStyleNet, write_encoder_checkpoint
from hyperdomainnet.loaders import load_generator

CHANNELS = 4
STYLE_DIM = 32  # 512 in the real files; ReStyle's heads are style_dim wide, so this keeps them small
TINY_CLIP = "random:tiny"
TINY_CLIP_DIM = 32
FFHQ_GENERATOR_PATH = "pretrained/StyleGAN2/stylegan2-ffhq-config-f.pt"
#: The released domains, by the file names the research code's example notebook loads.
TEXT_DOMAINS = ("anime", "botero", "joker", "monalisa", "neanderthal", "pixar", "sketch", "ukiyo-e", "werewolf")
IMAGE_DOMAINS = ("anastasia", "digital_painting_jing", "mermaid", "sketch", "speed_paint", "titan_armin",
                 "titan_erwin")
MAPPERS = {"mapper_20_td.pt": "td", "mapper_large_resample_td.pt": "td", "mapper_base_im2im.pt": "im2im"}


def generator(size: int, seed: int = 0) -> torch.nn.Module:
    return load_generator(f"random:{size}:channel_max={CHANNELS}:n_mlp=8:style_dim={STYLE_DIM}:seed={seed}")


def _bytes(payload: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def rosinality(size: int, seed: int, full: bool) -> bytes:
    G = generator(size, seed)
    state = {k: v for k, v in G.state_dict().items() if k != "latent_avg"}
    payload = {"g": state, "g_ema": state, "latent_avg": G.mean_latent().clone()} if full else {"g_ema": state}
    return _bytes(payload)


def nvidia_pickle(tmp: Path, size: int, seed: int) -> bytes:
    G = generator(size, seed)
    arch = {**G.arch.to_dict(), "size": size}
    state = {k: v.detach() for k, v in G.state_dict().items()}
    state["latent_avg"] = G.mean_latent().clone()
    tree = nvidia_tree(to_nvidia_state_dict(state, arch), arch, "pass\n")
    return write_pickle(tmp / f"afhq{seed}.pkl", snapshot(tree)).read_bytes()


def restyle(tmp: Path, kind: str) -> bytes:
    G = generator(1024)
    net = ReStyleNet(EncoderArch(kind, G.n_latent, style_dim=G.style_dim, widths=(8, 8, 16, 16), stem_width=8))
    opts = {"exp_dir": "experiments/restyle_" + kind, "dataset_type": "ffhq_encode", "batch_size": 8,
            "test_batch_size": 8, "input_nc": 6, "label_nc": 0, "output_size": 1024,
            "encoder_type": "BackboneEncoder" if kind == "psp" else "ProgressiveBackboneEncoder",
            "start_from_latent_avg": True, "n_iters_per_batch": 5, "checkpoint_path": None,
            "stylegan_weights": "pretrained_models/stylegan2-ffhq-config-f.pt", "learning_rate": 0.0001,
            "optim_name": "ranger", "lpips_lambda": 0.8, "id_lambda": 0.1, "l2_lambda": 1.0}
    latent_avg = G.mean_latent()[None].repeat(G.n_latent, 1)
    return write_encoder_checkpoint(tmp / f"restyle_{kind}.pt", net, G, latent_avg, opts).read_bytes()


def stylegan3_pickle(tmp: Path, config: str, size: int) -> bytes:
    G = load_generator(f"random:sg3-{config}:{size}:channel_base=4096:channel_max={CHANNELS}:style_dim={STYLE_DIM}")
    return write_pickle(tmp / f"sg3-{config}-{size}.pkl", snapshot(nvidia_stylegan3_tree(G, "pass\n"))).read_bytes()


def _sg2_params() -> dict[str, object]:
    return {"img_size": 1024, "latent_size": STYLE_DIM, "map_layers": 8, "channel_multiplier": 2, "device": "cuda:0",
            "checkpoint_path": FFHQ_GENERATOR_PATH}


def archive() -> bytes:
    """The released checkpoints.zip, its folders and member names as the research code reads them."""
    layout = list(generator(1024).domain_layout)
    gen = torch.Generator().manual_seed(7)

    def domain(da_type: str) -> dict[str, object]:
        state = {f"heads.conv_{i}.params_in": 0.2 * torch.randn(1, 1, c, 1, 1, generator=gen)
                 for i, c in enumerate(layout)}
        extra = {"style_latents": torch.randn(1, 11, STYLE_DIM, generator=gen)} if da_type == "im2im" else {}
        return {"model_type": "parameterization", "patch_key": "cin_mult", "state_dict": state,
                "sg2_params": _sg2_params(), "da_type": da_type, **extra}

    def mapper(da_type: str) -> dict[str, object]:
        root = official_mapper(layout, embed=TINY_CLIP_DIM)
        config = {**MAPPER_CONFIG, "input_dimension": TINY_CLIP_DIM}
        return {"model_type": "mapper", "mapper_config": config, "patch_key": "cin_mult",
                "state_dict": root.state_dict(), "sg2_params": _sg2_params(), "da_type": da_type,
                "clip_encoder": TINY_CLIP}

    members = {**{f"checkpoints/td_checkpoints/td_{n}.pt": domain("td") for n in TEXT_DOMAINS},
               **{f"checkpoints/im2im_checkpoints/im2im_{n}.pt": domain("im2im") for n in IMAGE_DOMAINS},
               **{f"checkpoints/{name}": mapper(da) for name, da in MAPPERS.items()}}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for member, payload in members.items():
            zf.writestr(member, _bytes(payload))
    return buffer.getvalue()


def standins(tmp: Path) -> dict[str, bytes]:
    """{zoo file name: stand-in bytes} for every file entry of the packaged registry."""
    sg3 = {(config, size): stylegan3_pickle(tmp, config, size) for config in "tr" for size in (256, 512, 1024)}
    files = {
        "stylegan2-ffhq-config-f.pt": rosinality(1024, 0, full=True),
        "stylegan2-afhqcat-512x512.pkl": nvidia_pickle(tmp, 512, 1),
        "afhqdog.pkl": nvidia_pickle(tmp, 512, 2),
        "stylegan2-car-config-f.pt": rosinality(512, 3, full=False),
        "stylegan2-cat-config-f.pt": rosinality(256, 4, full=False),
        "stylegan2-church-config-f.pt": rosinality(256, 5, full=False),
        "stylegan2-horse-config-f.pt": rosinality(256, 6, full=False),
        "restyle_psp_ffhq_encode.pt": restyle(tmp, "psp"),
        "restyle_e4e_ffhq_encode.pt": restyle(tmp, "e4e"),
        "e4e_ffhq_encode.pt": write_e4e_standin(tmp / "e4e.pt", generator(1024))[0].read_bytes(),
        "shape_predictor_68_face_landmarks.dat": write_landmark_standin(tmp / "landmarks.dat").read_bytes(),
        "hyperdomainnet-checkpoints.zip": archive(),
    }
    for dataset, size in (("ffhq", 1024), ("ffhqu", 1024), ("metfaces", 1024), ("metfacesu", 1024),
                          ("ffhqu", 256), ("afhqv2", 512)):
        for config in "tr":
            files[f"stylegan3-{config}-{dataset}-{size}x{size}.pkl"] = sg3[config, size]
    return files
