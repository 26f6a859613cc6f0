"""Default caps on what an input may cost, in one place (no imports: the command line's parsers read them for their
help without loading numpy or torch). 0 means no limit wherever a cap is an option.

Images (checked from the file header before anything is decoded; :func:`hififace.media.images.decode`):

- :data:`PHOTO_MAX_PIXELS` 200 megapixels for whole photos (swap targets and sources, ``preprocess``, frame folders
  of ``eval --protocol ffpp``, ``faces``); PIL's own decompression-bomb guard refuses files over about 179
  megapixels first (``PIL.Image.MAX_IMAGE_PIXELS`` x 2), with the "far too large to decode safely" line;
- :data:`CROP_MAX_PIXELS` 40 megapixels for aligned face crops (``grid``, ``demo``, ``interpolate``, eval pairs,
  ``HifiFace`` inputs read from files), which are a few hundred pixels wide;
- :data:`MIN_SIDE` 16 pixels: smaller images hold no usable face.

Videos (``hififace video``, ``hififace.swap_video``, the app; see :class:`hififace.media.video.VideoLimits`):

- :data:`MAX_FRAME_PIXELS` 4096 x 4096 (16.8 megapixels) takes every 4K format (UHD 3840x2160, DCI 4096x2160, 4:3
  open gate 4096x3072) in either orientation and refuses 8K and pixel bombs (a 199 KB file of 8192x8192 frames
  took 4.4 GB). A decoded 4096 x 4096 frame is 48 MiB and about 40 are in flight (decode-ahead, batch, encoder
  queue), so the cap bounds memory.
- :data:`MAX_SECONDS` one hour and :data:`MAX_FRAMES` 216,000 (an hour at 60 fps) bound the time: a few kilobytes
  can hold millions of tiny frames. No separate budget of decoded pixels: frame size times frame count is what it
  would bound, and the app bounds its jobs' time directly (:data:`APP_JOB_SECONDS`).

The web app (``hififace app``):

- :data:`APP_MAX_UPLOAD_MB` 2048: about five minutes of a phone's 4K 60 fps video (~50 Mbit/s);
- :data:`APP_QUEUE_SIZE` 4 jobs waiting (one runs at a time: the model is shared); more are refused;
- :data:`APP_JOB_SECONDS` 30 minutes per job (a video stops between batches of frames; a photo swap is short);
- :data:`APP_RESULT_SECONDS` 10 minutes: results are deleted that long after they were made.
"""

PHOTO_MAX_PIXELS = 200_000_000
CROP_MAX_PIXELS = 40_000_000
MIN_SIDE = 16

MAX_FRAME_PIXELS = 4096 * 4096
MAX_FRAMES = 216_000
MAX_SECONDS = 3600.0

APP_MAX_UPLOAD_MB = 2048
APP_QUEUE_SIZE = 4
APP_JOB_SECONDS = 1800.0
APP_RESULT_SECONDS = 600.0
