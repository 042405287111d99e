"""active_keras: train on what is worth learning.

Online batch selection for Keras 3 on TensorFlow: ClassAct and ActiveCLIP from
"Bad Students Make Great Teachers" (Evans et al., 2023).
"""

from active_keras.active_learner import ActiveLearner
from active_keras.selection import policies, selectors

__all__ = ["ActiveLearner", "policies", "selectors"]
__version__ = "0.1.0"
