"""The schema of a job's config, one pydantic model per config group.

Every value is checked for its type, its range and finiteness; keys a group does not have are
refused (except in ``trainer``, ``tracking``, ``scheduler``, the ``callbacks`` nodes and at the
top level, which take keys this schema does not know).  ``_target_``-style keys are never
looked at: they say where the code lives, not what the config means.

The first problem found becomes a ``ConfigError`` whose message names the key, the value given
and what is allowed, e.g. ``optimizer.lr = nan is not allowed: a finite number > 0 is
expected.``  Imports nothing heavy (no torch): the sweep check runs in Hydra's main process.
"""

from __future__ import annotations

from initlab.config.schema.base import *  # noqa: F403
from initlab.config.schema.inits import *  # noqa: F403
from initlab.config.schema.messages import *  # noqa: F403
from initlab.config.schema.names import *  # noqa: F403
from initlab.config.schema.sections import *  # noqa: F403
from initlab.config.schema.sweeper import *  # noqa: F403
from initlab.config.schema.values import *  # noqa: F403
