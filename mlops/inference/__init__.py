"""The inference layer: the only package that imports torch, transformers, sentence-transformers,
onnxruntime or setfit, and only inside the backend modules, so web processes stay light.

Models load once per process through the cached getters in ``encoders`` (and the scorer registry),
and are warmed when a Celery worker process starts.
"""
