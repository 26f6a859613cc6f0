"""hififace: high-fidelity one-shot face swapping (HifiFace, Wang et al., IJCAI 2021).

Public API::

    from hififace import HifiFace, HifiFaceConfig
    model = HifiFace.from_pretrained("weights/hififace-256")
    out = model.swap(source, target)          # tensors, PIL images or uint8 arrays
    ident = model.identity(source)            # encode a source once, reuse it for many targets
    out = model.swap(ident, target)

    import hififace                           # whole photos and videos: detect, align, swap, paste back
    result = hififace.swap_image("me.jpg", "group.jpg", "out.jpg", weights="weights/hififace-256", all_faces=True)
    report = hififace.swap_video("me.jpg", "clip.mp4", "out.mp4", weights="weights/hififace-256")
    swapper = hififace.FaceSwapper.from_pretrained("weights/hififace-256")   # the pipeline object

Use it only with the consent of the people whose faces you process; every image written by the
command line is labelled as synthetic in its metadata.
"""
from __future__ import annotations

from ._version import __version__

from .config import HifiFaceConfig
from .errors import ConfigError, HifiFaceError, InputImageError, WeightsError

__all__ = [
    "__version__",
    "HifiFace",
    "HifiFaceConfig",
    "Identity",
    "PreparedTarget",
    "SwapOutput",
    "create_generator",
    "FaceSwapper",
    "swap_image",
    "swap_video",
    "HifiFaceError",
    "InputImageError",
    "WeightsError",
    "ConfigError",
]


def __getattr__(name: str):  # lazy: `import hififace` stays cheap for the CLI
    if name in ("HifiFace", "Identity", "PreparedTarget", "SwapOutput"):
        from .models import hififace as _m

        return getattr(_m, name)
    if name in ("FaceSwapper", "swap_image", "swap_video"):
        from . import api

        return getattr(api, name)
    if name == "create_generator":
        from .models.generator import create_generator

        return create_generator
    raise AttributeError(f"module 'hififace' has no attribute {name!r}")
