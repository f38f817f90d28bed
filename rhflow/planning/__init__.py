"""The planner: a ``Pipeline`` in, a ``TaskGraph`` of ``PlannedTask`` values out.

Pure and offline: it expands sweeps and templates into tasks with stable content-hash ids, joins
``needs``, and names outputs. ``summary`` prints a plan as text or JSON for ``rhflow plan``.
"""
