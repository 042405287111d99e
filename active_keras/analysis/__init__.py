"""Analysis of runs: cost, speed-ups, reports.

- `flops`: forward FLOPs from the TF graph and the per-step FLOP ledger.
- `selection_log`: what the selection does during training (a callback).
- `speedup`, `ladder`: speed-ups along a curve and over budget ladders.
- `report`: a run's HTML report.
"""
