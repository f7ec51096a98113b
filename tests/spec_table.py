"""Spec ``sparse-ift.md`` §5 acceptance table (``spec_table.csv``): the released code's CIFAR-100
ResNet-18 configurations (``variant="official"``) at their nominal mask sparsity, ground truth from the
reference code. Parallel totals exclude the released code's 7,680 unused ``bn*_psum`` parameters
(22,220,964 - 7,680 = 22,213,284, ...)."""
import csv
from pathlib import Path

# (family, s): (total params, masked params, masked tensors (§1.6), active params, 2xMAC FLOPs,
#              profiler FLOPs)
with open(Path(__file__).with_name("spec_table.csv"), newline="") as f:
    SPEC_TABLE = {(r["family"], float(r["sparsity"])): tuple(int(v) for k, v in r.items()
                                                           if k not in ("family", "sparsity"))
                  for r in csv.DictReader(f)}
