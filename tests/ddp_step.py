"""One DDP training step, for tests/test_distributed.py: ``torchrun --standalone --nproc_per_node=2
tests/ddp_step.py OUT``. Each rank steps on its half of the batch of :func:`batch`; rank 0 saves the model
and every rank's loss to ``OUT``."""

import sys

import torch
import torch.distributed as dist

from lnlib import TrainConfig
from lnlib.distributed import join
from lnlib.train import Trainer

CFG = TrainConfig(device="cpu", augment=False, batch_size=32, lr=0.1)  # small_cnn with batch norm
LR = 0.1


def batch(n: int = CFG.batch_size):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


if __name__ == "__main__":
    ranks = join("cpu")
    trainer = Trainer.build(CFG, torch.device("cpu"), ranks)
    x, y = batch()
    part = slice(ranks.rank * len(x) // ranks.world, (ranks.rank + 1) * len(x) // ranks.world)
    loss, _ = trainer.step(x[part], y[part], LR, torch.Generator())
    losses = [torch.zeros(()) for _ in range(ranks.world)]
    dist.all_gather(losses, loss)
    if ranks.is_main:
        torch.save({"model": trainer.model.state_dict(), "losses": torch.stack(losses)}, sys.argv[1])
    dist.destroy_process_group()
