"""ONNX export and runtime shared by the model classes of :mod:`rank.rerank`.

- ``rank.onnx._export``: turning a torch checkpoint into an ONNX model (graph fusion,
  SmoothQuant-style calibration, int8 quantization whose products stay exact on every
  onnxruntime CPU kernel, fp16), written atomically with its tokenizer and ``config.json``.
- ``rank.onnx._runtime``: finding a model directory, opening an onnxruntime session, checking
  an int8 model's bound, loading the tokenizer and running length-bucketed batches.

The public entry points are the model classes and their exporters:
:class:`rank.rerank.CrossEncoder` / :func:`rank.rerank.export_cross_encoder` and
:class:`rank.rerank.ColBERTEncoder` / :func:`rank.rerank.export_colbert_encoder`. The modules
here need the ``onnx`` extra (runtime) and the ``export`` extra (export), imported lazily.
"""
