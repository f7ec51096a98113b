"""RunWriter: run folders from a hand-written loop, read back by sift_graph."""
import json

import numpy as np
import torch
from torch import nn

import sift_graph
from sift_train import RunWriter, SparseTraining, sparse_ift


def test_run_folder_from_own_loop_is_analysed_by_sift_graph(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Conv1d(1, 4, 3),
                        nn.Flatten(), nn.Linear(4 * 30, 3))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net

        def forward(self, x):
            h = self.body[3](self.body[2](self.body[1](self.body[0](x))))
            return self.body[6](self.body[5](self.body[4](h.unsqueeze(1))))

    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    model = sparse_ift(Net(), "parallel", 0.5, x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    st = SparseTraining(model, opt, method="rigl", total_steps=20, update_every=5)
    writer = RunWriter(tmp_path / "run", {"model": "tiny", "family": "parallel", "sparsity": 0.5},
                       steps_per_epoch=10)
    writer.snapshot(0, model, test_acc=0.1)
    saved = {}
    for step in range(1, 11):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        writer.log(step, train_loss=loss.item(), grad_norm=1.0)
        if step % 5 == 0:
            writer.snapshot(step, model, test_acc=0.5)
            saved[step] = {n: m.clone() for n, m in st.masks.items()}
    writer.finish(step=10, test_acc=0.5)

    run = sift_graph.load_run(tmp_path / "run")
    assert [s.step for s in run.snapshots] == [0, 5, 10] and run.snapshots[1].reason == "every"
    assert run.snapshots[0].reason == "init" and run.snapshots[2].epoch == 1.0
    loaded = run.snapshots[2].load()
    for name, mask in saved[10].items():
        m, w = loaded[name]
        assert np.array_equal(m.reshape(mask.shape), mask.numpy()), name
        assert np.array_equal(w.reshape(mask.shape), model.get_parameter(name).detach().numpy())
    assert list(run.metrics.columns[:8]) == ["step", "epoch", "train_loss", "train_acc", "test_loss",
                                             "test_acc", "lr", "flops"]
    assert "grad_norm" in run.metrics and len(run.metrics) == 10
    assert json.loads((tmp_path / "run" / "done.json").read_text())["step"] == 10

    layers, summary = sift_graph.analyze(tmp_path / "run", out=tmp_path / "out", jobs=1, figures=False,
                                         progress=False)
    assert len(summary) == 3 and set(summary["family"]) == {"parallel"}
    assert set(layers["layer"]) == set(saved[10])
