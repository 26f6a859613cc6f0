"""Weight files: our safetensors folders, strict converters for foreign checkpoints, file resolution."""
