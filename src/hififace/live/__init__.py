"""Live face swapping: a camera, a video file or a network stream in, swapped frames out as they come.

The room holds the parts of ``hififace live`` that know nothing of the model or of the photo/video pipeline:

- :mod:`.capture`: sources of frames (an OpenCV camera, a network stream, a file played in real time) read in a
  thread that keeps only the newest frame (:class:`~.capture.LatestFrame`, never a growing queue), with the time
  stamp of each frame;
- :mod:`.outputs`: where frames go: a preview window (OpenCV highgui), a virtual camera (``pyvirtualcam``), an MP4
  file, an MJPEG stream over HTTP with a small page that shows it;
- :mod:`.overlay`: the visible "AI-generated" mark every live output carries by default, and the fps/latency overlay;
- :mod:`.loop`: the loop that ties them together and measures fps, dropped frames and latency per stage;
- :mod:`.swapper`: the one adapter to today's pipeline (:class:`~hififace.inference.pipeline.FaceSwapper`, the face
  tracker, the paste-back, ffmpeg, the visible mark): the frame processor and what the outputs need of ffmpeg.
"""
from __future__ import annotations

from .capture import Capture, Captured, LatestFrame
from .loop import LiveReport, run_live

__all__ = ["Capture", "Captured", "LatestFrame", "LiveReport", "run_live"]
