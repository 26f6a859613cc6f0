"""Media files in and out: images (decode, write, labels), videos (ffmpeg), in-memory image kinds, their limits."""
