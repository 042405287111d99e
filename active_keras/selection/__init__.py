"""Online batch selection: scoring policies and selection rules.

`joint` registers the joint selections (`"joint"`, `"joint_topk"`) with
`selectors`; importing the package (or any of its modules) does that.
"""

from active_keras.selection import joint, policies, selectors

__all__ = ["joint", "policies", "selectors"]
