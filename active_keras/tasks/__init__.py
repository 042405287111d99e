"""Tasks: what a run trains on, with what models, loss and evaluation."""
