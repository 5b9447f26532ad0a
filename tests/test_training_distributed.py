"""Two gloo processes on the CPU give the weights of one process with the same global batch.

BatchNorm: "frozen" (BN layers use their running statistics, affine weights train), because
SyncBatchNorm needs CUDA and per-process BN statistics would make the result depend on how a
batch is split. The test also checks that "local" BN does depend on it, so the comparison is a
real one.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_training_data import make_toy_dataset

from benchmark.training import TrainConfig, load_checkpoint, train_backbone
from benchmark.training.distributed import init_distributed

MODEL = dict(model_name="test_resnet", image_size=32, seed=0, progress=False)
SETTINGS = dict(
    epochs=1,
    batch_size=16,
    lr=0.05,
    val_episodes=10,
    val_k_shot=1,
    val_n_query=3,
    warmup_epochs=0.0,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROTONET = dict(n_way=3, k_shot=2, n_query=2, episodes_per_epoch=4, episodes_per_step=2)
# (name, method, batchnorm): trained once by one process and once by two.
JOBS = [
    ("classification", "classification", "frozen"),
    ("protonet", "protonet", "frozen"),
    ("local-bn", "classification", "local"),
]


def _train_jobs(out_dir: Path) -> None:
    for name, method, batchnorm in JOBS:
        config = TrainConfig(
            method=method,
            batchnorm=batchnorm,
            **SETTINGS,
            **(PROTONET if method == "protonet" else {}),
        )
        train_backbone(make_toy_dataset(), config, out_dir=out_dir / name, device="cpu", **MODEL)


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    # What torchrun sets; init_distributed starts the gloo group from it and every
    # train_backbone call reuses that group.
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    assert ctx.world_size == world and ctx.rank == rank and ctx.owns_group
    try:
        _train_jobs(Path(out_dir))
    finally:
        ctx.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    _train_jobs(root / "one")
    mp.spawn(_worker, args=(2, _free_port(), str(root / "two")), nprocs=2, join=True)
    return root


def _last(root: Path, n: str, job: str) -> dict:
    return load_checkpoint(root / n / job / "last.pt")


def _max_difference(a: dict, b: dict) -> float:
    return max(
        (a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point()
    )


@pytest.mark.slow
@pytest.mark.parametrize("job", ["classification", "protonet"])
def test_two_gloo_processes_match_one_process(runs, job):
    one, two = _last(runs, "one", job), _last(runs, "two", job)
    assert sorted(os.listdir(runs / "two" / job)) == sorted(os.listdir(runs / "one" / job))
    assert _max_difference(one["model"], two["model"]) < 1e-5
    if job == "classification":
        assert _max_difference(one["classifier"], two["classifier"]) < 1e-5
    assert one["history"][-1]["loss"] == pytest.approx(two["history"][-1]["loss"], rel=1e-4)


@pytest.mark.slow
def test_local_batchnorm_depends_on_the_split_of_the_batch(runs):
    # The same comparison with per-process BN statistics fails: the match above is not vacuous.
    one, two = _last(runs, "one", "local-bn"), _last(runs, "two", "local-bn")
    assert _max_difference(one["model"], two["model"]) > 1e-4
