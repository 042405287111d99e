"""Online batch selection: scoring policies and selection rules."""

from active_keras.selection import policies, selectors

__all__ = ["policies", "selectors"]
