"""Data-parallel HyperDomainNet training: 2 CPU processes on gloo against one process.

One spawn (``_worker`` on ranks 0 and 1, the way torchrun runs them: env variables + the same
entry points) produces everything the tests below compare with single-process runs.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from hyperdomainnet.errors import HDNError
from hyperdomainnet.hypernet import HyperDomainNet
from hyperdomainnet.training import distributed
from hyperdomainnet.training.config import HypernetConfig
from hyperdomainnet.training.multi_text import TextHypernetTrainer

TOY = "Sketch - Photo\nAnime Drawing - Photo\nZombie - Human\n"


def config(domains: str, **changes: Any) -> HypernetConfig:
    settings = dict(generator="random:32:channel_max=16:n_mlp=2", domains=domains, clip="random:tiny",
                    mapper_clip="random:tiny", width=16, depth=2, head_depth=1, batch=4, steps=2, lr=1e-3,
                    device="cpu", grid_samples=2, save_every=1, log_every=1, preview_unseen=0,
                    losses={"direction": 1.0, "tt_direction": 0.4, "offsets_l2": 1.0})
    settings.update(changes)
    return HypernetConfig(**settings)


def sgd_step(domains: str) -> dict[str, Any]:
    """One training step with plain SGD (so the update is −lr·gradient) from spread-out weights.

    At the released init δ ≈ 0 and b − a is a difference of nearly equal CLIP embeddings, whose
    direction is float noise; random weights of scale 0.1 make the step well conditioned.
    """
    trainer = TextHypernetTrainer(config(domains))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in trainer.hypernet.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    trainer.optimizer = torch.optim.SGD(trainer.hypernet.parameters(), lr=0.1)
    terms = trainer.train_step(0)
    return {"terms": terms, "state": {k: v.clone() for k, v in trainer.hypernet.state_dict().items()}}


def _worker(rank: int, port: int, tmp: str, domains: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    out: dict[str, Any] = {"global_bn": sgd_step(domains)}
    convert = distributed.convert_batchnorm
    distributed.convert_batchnorm = lambda module: module  # control: per-rank BatchNorm statistics
    out["local_bn"] = sgd_step(domains)
    distributed.convert_batchnorm = convert

    trainer = TextHypernetTrainer(config(domains))
    distributed.run_distributed(trainer, Path(tmp, "straight"), trainer.dist, progress=False)
    trainer = TextHypernetTrainer(config(domains, steps=1))
    distributed.run_distributed(trainer, Path(tmp, "resumed"), trainer.dist, progress=False)
    trainer = TextHypernetTrainer(config(domains))
    distributed.run_distributed(trainer, Path(tmp, "resumed"), trainer.dist, resume=True, progress=False)
    try:
        distributed.run_distributed(trainer, Path(tmp, "straight"), trainer.dist, progress=False)
    except HDNError as exc:
        out["error"] = str(exc)
    out["context"] = (trainer.dist.rank, trainer.dist.world_size, str(trainer.dist.device))
    torch.save(out, Path(tmp, f"rank{rank}.pt"))
    distributed.shutdown_distributed()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("ddp")
    (tmp / "toy.txt").write_text(TOY)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp), str(tmp / "toy.txt")), nprocs=2)
    return tmp, [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_ddp_step_on_two_half_batches_equals_one_process_on_the_whole(runs) -> None:
    tmp, ranks = runs
    single = sgd_step(str(tmp / "toy.txt"))
    ddp = ranks[0]["global_bn"]
    assert ddp["terms"] == pytest.approx(single["terms"], rel=1e-5)
    for name, value in single["state"].items():
        assert torch.allclose(ddp["state"][name], value, rtol=1e-4, atol=1e-6), name
        assert torch.equal(ranks[1]["global_bn"]["state"][name], ddp["state"][name]), name  # replicas agree
    # the test bites: with each rank's BatchNorm on its own half batch the update differs
    assert not all(torch.allclose(ranks[0]["local_bn"]["state"][n], v, rtol=1e-4, atol=1e-6)
                   for n, v in single["state"].items())


def test_rank_zero_writes_the_run_and_resume_reaches_every_rank(runs) -> None:
    tmp, ranks = runs
    assert [r["context"] for r in ranks] == [(0, 2, "cpu"), (1, 2, "cpu")]
    straight, resumed = HyperDomainNet.load(tmp / "straight" / "hypernet.safetensors"), \
        HyperDomainNet.load(tmp / "resumed" / "hypernet.safetensors")
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    for run in ("straight", "resumed"):
        steps = [json.loads(line)["step"] for line in (tmp / run / "log.jsonl").read_text().splitlines()]
        assert steps == [1, 2], run  # one writer
    assert straight.metadata["world_size"] == 2


def test_errors_on_rank_zero_stop_every_rank(runs) -> None:
    _, ranks = runs
    for rank in ranks:
        assert "already exists" in rank["error"] and "--resume" in rank["error"]


def test_global_batchnorm_is_batchnorm_in_one_process() -> None:
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    converted = distributed.convert_batchnorm(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)))
    converted.load_state_dict(plain.state_dict())
    assert isinstance(converted[1], distributed.GlobalBatchNorm1d)
    x = torch.randn(5, 4)
    assert torch.equal(plain(x), converted(x))
    assert distributed.init_distributed("cpu").world_size == 1
    assert distributed.all_gather(x) is x
