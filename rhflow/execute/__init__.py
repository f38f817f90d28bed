"""The executor: a ``TaskGraph`` and a client in, a finished ``Manifest`` out.

``runner`` opens the output folder and hands the graph to ``executor``, which schedules tasks on one
event loop: ``lineup`` (what may start), ``remote`` (create, re-attach), ``watching`` (WebSocket or
polling), ``downloads`` and ``transfers`` (files in and out), ``scheduling`` (slots, backoff),
``resume`` (what an earlier run left), ``failures`` (why a task failed). Every change of a task goes
to ``rhflow.record`` as it happens.
"""
