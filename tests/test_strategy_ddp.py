"""``trainer.strategy`` under real DDP (2 CPU processes, gloo): a ``DDPStrategy`` whose collectives are
torch.distributed's, ``self.all_gather``, ``rank_zero_only.rank``/``rank_zero_info``, and a dict of training
loaders each sharded by its own ``DistributedSampler``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.ddp_support import describe, run, script_env

SCRIPT = r'''
import json, os
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from engine import Trainer, LightningModule, seed_everything
from engine.rank_zero import rank_zero_info, rank_zero_only
from plugins.strategies import DDPStrategy

OUT = os.environ["HL_OUT"]


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(torch.arange(n), x, (x[:, 0] > 0).long())


class Model(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.seen = {"a": {}, "b": {}}

    def configure_optimizers(self):
        self.estimate = self.trainer.estimated_stepping_batches
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return {"a": DataLoader(data(32, 0), batch_size=4, shuffle=True),
                "b": DataLoader(data(16, 1), batch_size=4, shuffle=True)}

    def training_step(self, batch, batch_idx):
        loss = 0.0
        for key, (idx, x, y) in batch.items():
            self.seen[key].setdefault(str(self.current_epoch), []).extend(idx.tolist())
            loss = loss + nn.functional.cross_entropy(self.layer(x), y)
        return loss

    def on_train_end(self):
        s, r = self.trainer.strategy, self.global_rank
        x = torch.tensor([float(r + 1), 10.0 * (r + 1)])
        w = torch.tensor(float(r + 1), requires_grad=True)
        s.all_gather(w * 2, sync_grads=True).sum().backward()
        int_sum = s.reduce(torch.tensor(r + 1), reduce_op="sum")
        record = dict(
            is_ddp=isinstance(s, DDPStrategy), start_method=s.start_method, backend=s.process_group_backend,
            world=s.world_size, rank=s.global_rank, local=s.local_rank, is_zero=s.is_global_zero,
            root=str(s.root_device), sampler_kwargs=s.distributed_sampler_kwargs,
            mean=s.reduce(x).tolist(), sum=s.reduce(x, reduce_op="sum").tolist(),
            max=s.reduce(x, reduce_op=torch.distributed.ReduceOp.MAX).tolist(),
            int_sum=[str(int_sum.dtype), int_sum.item()],
            gathered=s.all_gather(torch.tensor([r, r * 10])).tolist(),
            module_gathered={k: v.tolist() for k, v in self.all_gather({"v": torch.tensor(float(r)), "n": r + 5}).items()},
            grad=w.grad.item(),
            broadcast=s.broadcast({"from": r}, src=1),
            broadcast_none=repr(s.broadcast(None if r == 0 else "rank 1's own", src=0)),
            all_agree=s.reduce_boolean_decision(r == 0, all=True), any_agree=s.reduce_boolean_decision(r == 0, all=False),
            rank_zero_only_rank=rank_zero_only.rank, estimate=self.estimate,
            batches=self.trainer.num_training_batches, seen=self.seen,
        )
        s.barrier("before writing")
        rank_zero_info(f"info from rank {r}")
        with open(os.path.join(OUT, f"rank{r}.json"), "w") as f:
            json.dump(record, f)


if __name__ == "__main__":
    seed_everything(7)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Model())
'''


def test_ddp_strategy_collectives_and_a_dict_of_training_loaders(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    script = tmp_path / "strategy_ddp.py"
    script.write_text(SCRIPT)
    proc = run([sys.executable, str(script)], script_env(tmp_path), tmp_path)
    assert proc.returncode == 0, describe(proc)
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    for r, rec in enumerate(ranks):
        assert rec["is_ddp"] and (rec["start_method"], rec["backend"]) == ("popen", "gloo")
        assert (rec["world"], rec["rank"], rec["local"], rec["is_zero"]) == (2, r, r, r == 0)
        assert rec["root"] == "cpu" and rec["sampler_kwargs"] == {"num_replicas": 2, "rank": r}
        assert rec["mean"] == [1.5, 15.0] and rec["sum"] == [3.0, 30.0] and rec["max"] == [2.0, 20.0]
        assert rec["int_sum"] == ["torch.int64", 3]  # a sum of integers stays an integer
        assert rec["gathered"] == [[0, 0], [1, 10]]
        assert rec["module_gathered"] == {"v": [0.0, 1.0], "n": [5, 6]}
        assert rec["grad"] == 4.0  # sync_grads: both ranks' gradients of the gathered slot come back
        assert rec["broadcast"] == {"from": 1}
        assert rec["broadcast_none"] == "None"  # rank 0's None reaches rank 1, not rank 1's own object
        assert rec["all_agree"] is False and rec["any_agree"] is True
        assert rec["rank_zero_only_rank"] == r
        # Per rank: "a" has 16 samples (4 batches), "b" 8 (2 batches, cycled): 4 batches an epoch, 2 epochs.
        assert rec["batches"] == 4 and rec["estimate"] == 8
    for key, n in (("a", 32), ("b", 16)):
        for epoch in ("0", "1"):
            mine, other = ranks[0]["seen"][key][epoch], ranks[1]["seen"][key][epoch]
            assert sorted(set(mine) | set(other)) == list(range(n)) and not set(mine) & set(other)
        assert ranks[0]["seen"][key]["0"] != ranks[0]["seen"][key]["1"], f"loader {key!r} reshuffles every epoch"
    assert len(ranks[0]["seen"]["b"]["0"]) == 16  # its 8 samples twice: it started over
    assert "info from rank 0" in proc.stderr and "info from rank 1" not in proc.stderr
