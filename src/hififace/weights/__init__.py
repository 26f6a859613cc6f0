"""Weight files, and nothing above them: safetensors reading and writing, the bounded legacy .pth/.ckpt reader, file
resolution ($HIFIFACE_HOME, ~/.cache/hififace). Converters of foreign files are in hififace.converters."""
