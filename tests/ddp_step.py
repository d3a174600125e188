"""One DDP training step, for tests/test_distributed.py: ``torchrun --standalone --nproc_per_node=2
tests/ddp_step.py OUT``. Each rank steps on its half of the batch of :func:`batch` with
:func:`lnlib.train.train_epoch` (one step: the batch is one ``batch_size``); rank 0 saves the model and the
loss over both ranks to ``OUT``."""

import sys

import torch
import torch.distributed as dist

from lnlib import TrainConfig
from lnlib.distributed import join, shard
from lnlib.train import build, train_epoch

# small_cnn with batch norm; one epoch of one step at the warm-up's first learning rate, lr·1/1
CFG = TrainConfig(device="cpu", augment=False, batch_size=32, lr=0.1)


def batch(n: int = CFG.batch_size):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


if __name__ == "__main__":
    ranks = join("cpu")
    net = build(CFG, torch.device("cpu"), ranks)
    x, y = batch()
    loss, _ = train_epoch(net, shard(x, ranks), shard(y, ranks), 0)
    if ranks.is_main:
        torch.save({"model": net.model.state_dict(), "loss": loss}, sys.argv[1])
    dist.destroy_process_group()
