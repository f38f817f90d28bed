"""The pipeline language: a YAML file in, a frozen ``Pipeline`` (see ``rhflow.model``) out.

``yamlfile`` reads YAML keeping each value's line and column; ``schema`` checks the shape against
``schemas/pipeline.schema.json``; ``checks`` and ``sweeps`` check the meaning; ``render`` is the
sandboxed template language; ``workflows`` checks overrides against a workflow's API-format JSON;
``loader`` ties them together (``load_pipeline``). Every problem comes out at once, with
``file:line:col``, in one ``ConfigError``.
"""
