"""``rhflow.client``: the RunningHub client, kept at the import path the documentation shows.

The code lives in :mod:`rhflow.api.client`.
"""

from rhflow.api.client import Client, Output, TaskCreated, TaskOutputs

__all__ = ["Client", "Output", "TaskCreated", "TaskOutputs"]
