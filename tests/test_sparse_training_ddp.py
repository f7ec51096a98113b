"""SparseTraining under 2-process DDP (gloo, CPU): every rank draws the same RigL masks."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sift_train import SparseTraining, mark_sparse
from sift_train.distributed import shutdown


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), mark_sparse(nn.Linear(32, 32)), nn.ReLU(),
                          nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    st = SparseTraining(model, opt, method="rigl", sparsity=0.8, distribution="uniform", total_steps=100,
                        update_every=2, seed=0)
    ddp = nn.parallel.DistributedDataParallel(model)
    g = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    for _ in range(4):
        x, y = torch.randn(16, 16, generator=g), torch.randint(0, 4, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    torch.save({"mask": st.masks["2.weight"], "updates": st.last_update_step}, f"{out_dir}/rank{rank}.pt")
    del ddp
    shutdown()  # a barrier first: no rank closes its connections while the other still uses them


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_rigl_masks_agree_across_ddp_ranks(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["updates"] == r1["updates"] == 4
    assert torch.equal(r0["mask"], r1["mask"])
