"""The RunningHub API, spoken over HTTP and WebSocket.

Takes a base URL and a key; hands on typed results (``TaskCreated``, ``TaskOutputs``, ...) and
``ApiError`` values. ``client`` has one method per endpoint, ``results`` parses answers, ``follow``
reads a task's progress from its WebSocket. Depends on nothing of rhflow but ``errors`` and
``atomic``.
"""
