"""Losses: contrastive image-text losses for ActiveCLIP."""

from active_keras.losses.contrastive import (
    EXAMPLE_LOSSES,
    ClipLoss,
    SigLipLoss,
    depends_on_batch,
    get,
    get_example_loss,
    negative_dot,
    negative_logit,
    siglip_example_loss,
)

__all__ = [
    "EXAMPLE_LOSSES",
    "ClipLoss",
    "SigLipLoss",
    "depends_on_batch",
    "get",
    "get_example_loss",
    "negative_dot",
    "negative_logit",
    "siglip_example_loss",
]
