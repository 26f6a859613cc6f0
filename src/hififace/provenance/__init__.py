"""Provenance anyone can check: signed C2PA Content Credentials and an invisible watermark.

* :mod:`.label`: the synthetic-content label every written file carries (metadata fields, XMP, EXIF, the one-line
  comment of videos) and the optional visible mark;
* :mod:`.watermark`: embed / detect a mark that survives JPEG, resizing, cropping, screenshots and video
  re-encoding (numpy and scipy only);
* :mod:`.credentials`: sign a written JPEG, PNG, WebP or MP4 with a C2PA manifest (c2pa-python, the optional
  extra ``provenance``), the signing identity (given, or a local key made once), and reading manifests back;
* :mod:`.report`: what ``hififace verify`` reports for one file (label, manifest, watermark, verdict).

This room imports only :mod:`hififace.errors`, :mod:`hififace.utils` and third-party libraries, so that the
low-level image and video writers can call it.
"""
