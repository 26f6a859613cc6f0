"""Evaluation (``hififace eval``): face-swap metrics and reports.

- :mod:`.evaluate`: :class:`~.evaluate.Evaluator` scores (source, target, result) rows with every available metric;
- :mod:`.identity` (dlib descriptor, user IResNet), :mod:`.threedmm` (pose / expression / shape errors),
  :mod:`.inception` + :mod:`.realism` (FID, KID), :mod:`.image` (PSNR, SSIM); LPIPS is :mod:`hififace.losses.lpips`;
- :mod:`.pairs` (pairs.csv), :mod:`.ffpp` (the FaceForensics++ protocol), :mod:`.cache` (per-image caches),
  :mod:`.report` + :mod:`.plots` (the report folder, ``--compare``), :mod:`.run` (the command as a function).

See docs/evaluation.md.
"""
