"""What the text and image HyperDomainNet trainers share: the network (DDP under torchrun), Adam,
the seeded plan RNG, the step's latents and noise, rendering of this rank's slice, the domain
norm, the update, checkpoint state, previews and the result file.

Sampling of one step (global batch, identical on every rank): W+ codes with style mixing and a
noise seed per sample for G_B. With ``quirks="official"`` G_A gets its own crossover index and
its own noise seeds, as the research code's generator draws both on every call; otherwise G_A
and G_B render the same codes with the same noise.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..clip import ClipEncoder, ClipEnsemble, load_clip
from ..errors import ConfigError, HDNError
from ..domain.parameterizations import DomainVector
from ..hypernet.model import HyperDomainNet
from ..losses import offsets_l1, offsets_l2
from ..stylegan2.generator import Generator
from .config import HypernetConfig
from .distributed import all_gather, data_parallel, init_distributed, mean_over_ranks
from .sampling import sample_ws_per_call
from .steps import run_metadata
from .trainer import Trainer

SEED_RANGE = 2**62
RESULT_NAME = "hypernet.safetensors"


def seeded_noise(G: Generator, seeds: Sequence[int], device: torch.device) -> list[torch.Tensor]:
    """Per-layer noise maps (B, 1, h, w), sample i drawn on ``device`` from a generator seeded
    ``seeds[i]`` (so a sample's noise does not depend on the batch it is rendered in)."""
    per_sample = [G.make_noise("random", 1, device, torch.Generator(device).manual_seed(int(s)))
                  for s in seeds]
    return [torch.cat(layer) for layer in zip(*per_sample)]


class HypernetTrainerBase(Trainer):
    """Subclasses set ``input_kind`` and ``preview_labels``/``preview_inputs`` and implement
    ``train_step`` and ``domain_metadata``."""

    input_kind = "text"
    result_name = RESULT_NAME

    def __init__(self, config: HypernetConfig, G: Generator | None = None, clip: ClipEnsemble | None = None) -> None:
        self.dist = init_distributed(config.device)
        self.local = self.dist.local_slice(config.batch)
        if config.batch // self.dist.world_size < 2:
            raise ConfigError(f"batch {config.batch} leaves fewer than 2 samples per process "
                              f"({self.dist.world_size} processes); use --batch {2 * self.dist.world_size} or more")
        super().__init__(config, G, clip, device=self.dist.device)
        try:
            self.mapper_encoder = self.encoder(config.mapper_clip).set_precision(config.clip_precision)
        except HDNError as exc:  # only a separately loaded encoder can fail: say which option names it
            raise type(exc)(f"--mapper-clip {config.mapper_clip}: {exc} (or give --mapper-clip one of the "
                            "--clip encoders)") from None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.hypernet = HyperDomainNet(self.G.domain_layout, embed_dim=self.mapper_encoder.embed_dim,
                                           width=config.width, depth=config.depth,
                                           head_depth=config.head_depth).to(self.device)
        self.output = DomainVector(self.G)  # what the network predicts: δ after demodulation, per sample
        self.net = data_parallel(self.hypernet, self.dist)
        self.optimise(self.hypernet)
        self.preview_labels: list[str] = []
        self.preview_inputs = torch.empty(0, self.hypernet.embed_dim, device=self.device)

    @property
    def official(self) -> bool:
        return self.config.quirks == "official"

    def encoder(self, spec: str) -> ClipEncoder:
        """The ensemble's encoder of that spec, or a newly loaded one."""
        try:
            return self.clip[spec]
        except KeyError:
            return load_clip(spec, self.device)

    # ----- one step ------------------------------------------------------------------------------
    def draw(self, high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=self.rng)

    def draw_latents(self) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        """Global W+ codes of G_A and G_B and their per-sample noise seeds (module docstring)."""
        batch = self.config.batch
        *ws_src, ws_trg = sample_ws_per_call(self.G, batch, self.config.mixing, self.rng, self.device,
                                             2 if self.official else 1)
        trg = self.draw(SEED_RANGE, batch).tolist()
        src = self.draw(SEED_RANGE, batch).tolist() if self.official else trg
        return (ws_src[0] if ws_src else ws_trg), ws_trg, src, trg

    def noise(self, seeds: list[int]) -> list[torch.Tensor | None]:
        """Noise maps for these samples: seeded per sample, or the config's constant / no noise."""
        if self.config.noise_mode != "random":
            return self.G.make_noise(self.config.noise_mode, len(seeds), self.device)
        return seeded_noise(self.G, seeds, self.device)

    def render(self, ws_src: torch.Tensor, ws_trg: torch.Tensor, noise_src: list[int], noise_trg: list[int],
               inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's G_A(w) (no grad), G_B(w; δ) and δ (B_local, D) for its slice of the batch."""
        same = ws_src is ws_trg
        ws_trg, inputs = ws_trg[self.local], inputs[self.local]
        ws_src = ws_trg if same else ws_src[self.local]
        cache = self.G.style_cache(ws_trg)  # styles and demodulation, shared when G_A renders the same codes
        with torch.no_grad():
            src = self.G.synthesis(ws_src, noise=self.noise(noise_src[self.local]), cache=cache)
        delta = self.net(inputs)
        trg = self.output.synthesize_per_sample(self.G, ws_trg, delta, noise=self.noise(noise_trg[self.local]),
                                                cache=cache, checkpoint=self.config.low_memory)
        return src, trg, delta

    def regularizers(self, delta: torch.Tensor) -> dict[str, torch.Tensor]:
        """offsets_l2 / offsets_l1 of the global batch's domain vectors (per layer, as the official)."""
        wanted = [k for k in ("offsets_l2", "offsets_l1") if self.config.losses.get(k)]
        if not wanted:
            return {}
        layers = self.G.split_domain(all_gather(delta))
        return {k: (offsets_l2 if k == "offsets_l2" else offsets_l1)(layers) for k in wanted}

    def update_across_ranks(self, terms: dict[str, torch.Tensor], local_terms: Sequence[str] = ()) -> dict[str, float]:
        """``update``; ``local_terms`` are means over this rank's samples, reported as
        their mean over ranks (so the report and the finiteness check agree on every rank)."""
        def summarize(values: dict[str, float]) -> dict[str, float]:
            return {**values, **mean_over_ranks({k: values[k] for k in local_terms})}

        return self.update(terms, summarize=summarize)

    # ----- previews, state, result ---------------------------------------------------------------
    @property
    def preview_rows(self) -> list[str]:
        """The names of the preview's rows (its grid's captions)."""
        return ["source", *self.preview_labels]

    @torch.no_grad()
    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: the source, then one row per preview domain (``preview_labels``) on fixed seeds."""
        n = self.preview_ws.shape[0]
        rows = [self.G.synthesis(self.preview_ws)]
        if len(self.preview_inputs):
            vectors = self.hypernet.domain_vectors(self.preview_inputs)
            ws = self.preview_ws.repeat(len(vectors), 1, 1)
            rows.append(self.output.synthesize_per_sample(self.G, ws, vectors.repeat_interleave(n, 0)))
        return torch.cat(rows).float().cpu(), n

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "domains_sha256": self.domains_sha256()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("domains_sha256") != self.domains_sha256():
            raise ConfigError("the training domains (list or reference images) changed since the run started; "
                              "restore them or start a new run in another directory")
        super().load_state_dict(state)

    def domain_metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    def domains_sha256(self) -> str:
        return self.domain_metadata()["domain_lists_sha256"]["train"]

    def metadata(self) -> dict[str, Any]:
        """``steps.run_metadata`` plus what inference needs: the input encoder and kind, the generator."""
        cfg = self.config
        return run_metadata(cfg, self.clip.spec, f"hypernet_{self.input_kind}", clip_model=cfg.mapper_clip,
                            input=self.input_kind, generator=self.G.identity, placement="after_demod",
                            **self.domain_metadata(), quirks=cfg.quirks,
                            preview_rows=self.preview_rows, world_size=self.dist.world_size)

    def save_result(self, path: Path) -> None:
        self.hypernet.save(path, self.metadata())
