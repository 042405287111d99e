"""Losses: contrastive image-text losses for ActiveCLIP."""

from active_keras.losses.contrastive import ClipLoss, SigLipLoss, get, negative_dot

__all__ = ["ClipLoss", "SigLipLoss", "get", "negative_dot"]
