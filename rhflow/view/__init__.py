"""What a run looks like: contact sheets, an HTML report, and the difference between two runs.

Takes manifests (:mod:`rhflow.record.manifest`) and the output files beside them; hands on
images and pages for people (``grid``, ``report``) and a typed comparison (``diff``). Pillow is
imported in ``images`` only. Depends on ``record`` and the shared base modules, never on the
stages that run pipelines.
"""
