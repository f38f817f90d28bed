"""What happened, on disk: the state store, the journal and the manifest.

``store`` is the SQLite state of each task (``.rhflow/state.db``), ``journal`` turns it into
``manifest.json`` (``manifest``), ``lock`` keeps one run per output folder. Depends on nothing of
rhflow but ``errors``, ``model`` and ``atomic``.
"""
