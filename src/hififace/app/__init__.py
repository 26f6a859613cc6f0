"""The web app: ``hififace app`` (Gradio, in the ``app`` extra).

:mod:`hififace.app.service` does the work without any web framework (:class:`SwapService`: uploaded files in,
labelled output file out, one-line errors); :mod:`hififace.app.ui` is the Gradio page around it. The model is
used through the swap-engine interface (:mod:`hififace.inference.engine`), so any engine can be served::

    from hififace import HifiFace
    from hififace.app.service import SwapService
    from hififace.app.ui import build_ui, launch

    service = SwapService(HifiFace.from_pretrained("weights/hififace-256"))
    page = launch(build_ui(service), service, port=7860)      # http://127.0.0.1:7860
    page.block_thread()                                       # until Ctrl-C
"""
