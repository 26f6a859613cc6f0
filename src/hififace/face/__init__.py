"""Per-face operations: detection (``detect``), the one face cropper (``cropper``: detect -> choose -> refine ->
align -> crop, and the matrix back), alignment maths (``align``), 68-point landmarks (``landmarks``), parsing
(``parse``, ``palette``), blending (``blend``), tracking (``track``) and drawing (``draw``). Heavy dependencies
(OpenCV, torch, onnxruntime) are imported only when used."""
