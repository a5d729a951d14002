"""Random-weight stand-ins of the released encoder checkpoints, in their exact layout.

Key names, ``opts`` (the training options the released files carry) and the ``latent_avg`` shape
are the released ones; the networks are narrow (tiny widths) and the decoder is the generator
given, so the files stay small. The loading code cannot tell them from the real files.

* :func:`write_e4e_standin`: encoder4editing's ``e4e_ffhq_encode.pt`` (``Encoder4Editing``);
* :func:`write_restyle_standin`: ReStyle's ``restyle_psp_ffhq_encode.pt`` / ``restyle_e4e_ffhq_encode.pt``;
* :func:`write_landmark_standin`: dlib's ``shape_predictor_68_face_landmarks.dat``, a real dlib
  68-point shape predictor trained in milliseconds on two random images (so dlib loads it and
  predicts 68 points; the points mean nothing);
* :func:`write_zoo_standins`: all four into a folder under their zoo file names (a mirror).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hyperdomainnet.encoders import EncoderArch, Encoder4EditingNet, ReStyleNet, write_encoder_checkpoint
from hyperdomainnet.stylegan2.generator import Generator

TINY_WIDTHS = {"widths": (8, 8, 16, 16), "stem_width": 8}

# encoder4editing's FFHQ training run (its README's command over train_options.py's defaults)
E4E_FFHQ_OPTS: dict[str, Any] = {
    "exp_dir": "experiment/ffhq_encode", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
    "batch_size": 8, "test_batch_size": 4, "workers": 8, "test_workers": 4, "learning_rate": 0.0001,
    "optim_name": "ranger", "train_decoder": False, "start_from_latent_avg": True, "lpips_type": "alex",
    "lpips_lambda": 0.8, "id_lambda": 0.5, "l2_lambda": 1.0, "stylegan_weights": "stylegan2-ffhq-config-f.pt",
    "stylegan_size": 1024, "checkpoint_path": None, "max_steps": 200000, "image_interval": 100,
    "board_interval": 50, "val_interval": 10000, "save_interval": 200000, "w_discriminator_lambda": 0.1,
    "w_discriminator_lr": 2e-05, "r1": 10, "d_reg_every": 16, "use_w_pool": True, "w_pool_size": 50,
    "delta_norm": 2, "delta_norm_lambda": 0.0002, "progressive_steps": [0, *range(20000, 54000, 2000)],
    "progressive_start": 20000, "progressive_step_every": 2000, "save_training_data": False,
    "sub_exp_dir": None, "keep_optimizer": False, "resume_training_from_ckpt": None, "update_param_list": None,
    "device": "cuda:0",
}

# ReStyle's FFHQ training runs (train_options.py with the README's FFHQ settings)
RESTYLE_FFHQ_OPTS: dict[str, Any] = {
    "exp_dir": "experiment/restyle_ffhq_encode", "dataset_type": "ffhq_encode", "input_nc": 6,
    "output_size": 1024, "batch_size": 8, "test_batch_size": 8, "workers": 8, "test_workers": 8,
    "learning_rate": 0.0001, "optim_name": "ranger", "train_decoder": False, "start_from_latent_avg": True,
    "lpips_lambda": 0.8, "id_lambda": 0.1, "l2_lambda": 1.0, "w_norm_lambda": 0, "moco_lambda": 0,
    "stylegan_weights": "pretrained_models/stylegan2-ffhq-config-f.pt", "checkpoint_path": None,
    "max_steps": 500000, "image_interval": 100, "board_interval": 50, "val_interval": 1000,
    "save_interval": None, "n_iters_per_batch": 5, "device": "cuda:0",
}


def write_landmark_standin(path: str | Path, seed: int = 0) -> Path:
    """A tiny trained dlib 68-point shape predictor in dlib's own file format (about 2 kB)."""
    import dlib
    import numpy as np

    rng = np.random.default_rng(seed)
    box = dlib.rectangle(8, 8, 56, 56)
    images, shapes = [], []
    for _ in range(2):
        images.append(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        points = [dlib.point(int(p[0]), int(p[1])) for p in rng.integers(8, 57, (68, 2))]
        shapes.append([dlib.full_object_detection(box, points)])
    options = dlib.shape_predictor_training_options()
    options.tree_depth, options.cascade_depth, options.num_trees_per_cascade_level = 1, 1, 1
    options.oversampling_amount, options.feature_pool_size, options.num_test_splits = 1, 4, 1
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    dlib.train_shape_predictor(images, shapes, options).save(str(path))
    return Path(path)


def write_zoo_standins(folder: str | Path, G: Generator) -> dict[str, Path]:
    """Stand-ins of the zoo's encoder and landmark files in ``folder``, by zoo entry name; the
    encoders' decoder is ``G`` (its W+ size sets the number of heads)."""
    folder = Path(folder)
    return {"restyle-psp-ffhq": write_restyle_standin(folder / "restyle_psp_ffhq_encode.pt", G, "psp")[0],
            "restyle-e4e-ffhq": write_restyle_standin(folder / "restyle_e4e_ffhq_encode.pt", G, "e4e", 1)[0],
            "e4e-ffhq": write_e4e_standin(folder / "e4e_ffhq_encode.pt", G, 2)[0],
            "dlib-landmarks-68": write_landmark_standin(folder / "shape_predictor_68_face_landmarks.dat")}


def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics/affines, PReLU slopes and head biases, so that no part of the
    network is an identity or a zero and tests bite."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return net


def start_code(G: Generator, seed: int = 0) -> torch.Tensor:
    """A W+ start code (n_latent, D) as released: the generator's mean w, repeated, plus a shift."""
    shift = 0.1 * torch.randn(G.style_dim, generator=torch.Generator().manual_seed(seed))
    return (G.mean_latent() + shift)[None].repeat(G.n_latent, 1)


def write_e4e_standin(path: str | Path, G: Generator, seed: int = 0) -> tuple[Path, Encoder4EditingNet]:
    """encoder4editing's released layout with a random tiny network and ``G`` as the decoder."""
    torch.manual_seed(seed)
    net = randomize(Encoder4EditingNet(EncoderArch("encoder4editing", G.n_latent, input_nc=3,
                                                   style_dim=G.style_dim, **TINY_WIDTHS)), seed)
    opts = {**E4E_FFHQ_OPTS, "stylegan_size": G.size}
    return write_encoder_checkpoint(path, net, G, start_code(G, seed), opts), net.eval()


def write_restyle_standin(path: str | Path, G: Generator, kind: str = "psp", seed: int = 0) -> tuple[Path, ReStyleNet]:
    """ReStyle's released layout (``kind`` psp | e4e) with a random tiny network and ``G``."""
    torch.manual_seed(seed)
    net = randomize(ReStyleNet(EncoderArch(kind, G.n_latent, style_dim=G.style_dim, **TINY_WIDTHS)), seed)
    encoder_type = {"psp": "BackboneEncoder", "e4e": "ProgressiveBackboneEncoder"}[kind]
    opts = {**RESTYLE_FFHQ_OPTS, "encoder_type": encoder_type, "output_size": G.size}
    return write_encoder_checkpoint(path, net, G, start_code(G, seed), opts), net.eval()
