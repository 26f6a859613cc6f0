"""Face toolkit: detection (``detect``), landmarks (``landmarks``), alignment (``align``), parsing (``parse``,
``palette``), blending (``blend``) and dataset preprocessing (``preprocess``). Submodules import their heavy
dependencies (OpenCV, torch, onnxruntime) only when used."""
