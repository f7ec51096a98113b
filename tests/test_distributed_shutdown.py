"""How a process leaves its process group (sift_train.distributed.shutdown): a barrier first on the
normal path, so no rank tears its Gloo/NCCL connections down while a peer still uses them; at once after
an error, where a peer may never reach the barrier. The process group is replaced by a recorder here;
the real 2-process runs are tests/test_distributed.py and tests/test_sparse_training_ddp.py."""
import pytest

import sift_train.distributed as distributed
import sift_train.train
from sift_train.__main__ import main


@pytest.fixture
def calls(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "barrier", lambda *a, **k: seen.append("barrier"))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda *a, **k: seen.append("destroy"))
    return seen


def test_shutdown_waits_at_a_barrier_before_it_leaves(calls):
    distributed.shutdown()
    assert calls == ["barrier", "destroy"]


def test_shutdown_after_an_error_leaves_at_once(calls):
    distributed.shutdown(synchronize=False)
    assert calls == ["destroy"]


def test_shutdown_without_a_process_group_does_nothing(monkeypatch):
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "barrier", lambda *a, **k: pytest.fail("barrier without a group"))
    distributed.shutdown()


@pytest.mark.parametrize("fails", [False, True])
def test_cli_train_synchronizes_only_when_training_succeeded(calls, monkeypatch, tmp_path, fails):
    def fake_train(cfg, out, **kwargs):
        if fails:
            raise RuntimeError("a rank failed")
        return {"step": 1, "epoch": 1, "test_acc": 0.5}

    monkeypatch.setattr(sift_train.train, "train", fake_train)
    argv = ["train", "--dataset", "synthetic", "--model", "mlp", "--out", str(tmp_path / "r"), "--no-progress"]
    if fails:
        with pytest.raises(RuntimeError, match="a rank failed"):
            main(argv)
        assert calls == ["destroy"]
    else:
        assert main(argv) == 0
        assert calls == ["barrier", "destroy"]
