"""Converters: every foreign weight file (the reference checkpoint, xuehy generators, ArcFace, ReconNet, BFM, GFPGAN,
``hififace train`` checkpoints) turned into this project's modules and model folders, strictly: every key is mapped,
or listed as deliberately dropped, or the load stops naming the keys. Above models and losses; ``weights/`` only
reads and writes files."""
