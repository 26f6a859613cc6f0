"""The web page (Gradio) around :class:`~hififace.app.service.SwapService`.

One page, two tabs. *Swap*: source photo(s), a target photo or video (its faces shown numbered as soon as it is
uploaded), the face choice, options, a Swap button; the result is previewed and offered for download, with a
progress bar for videos, and with *quality report* ticked the report's plot, a one-line summary and the JSON and
PNG to download. *Verify*: what ``hififace verify`` says about an uploaded file. Errors a user can fix appear on
the page as the library's one-line message, naming the uploaded file. The consent notice is always on the page;
with random weights a banner says so. Nothing is sent anywhere: analytics are off, fonts are local, and the server
listens on 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import HifiFaceError
from ..media.images import IMAGE_EXTENSIONS
from ..provenance.report import VERDICTS
from .service import FACE_MODES, VIDEO_EXTENSIONS, SwapService

log = logging.getLogger(__name__)

#: Files in Gradio's cache (uploads, the faces preview) older than this are deleted (seconds): longer than a job can
#: wait in the queue. Results are deleted sooner, by the service (``result_seconds``).
CACHE_LIFETIME = 3600
#: How often Gradio looks for old files (seconds).
CACHE_CHECK = 300

TITLE = "hififace — face swapping"
CONSENT_MD = (
    "**Use it only with consent.** Only process faces of people who agreed to it, never to deceive, harass or "
    "impersonate, and follow the law where you live. Every image and video made here is labelled as synthetic in "
    "its metadata, signed with C2PA Content Credentials and invisibly watermarked (check any file in the *Verify* "
    "tab, or with `hififace verify FILE`); tick *visible mark* to draw an 'AI-generated' mark on it too."
)
RANDOM_MD = (
    "**Random weights.** {why} This page runs a smoke test: the swapped faces are noise. Results are named "
    "`..._random_weights`, carry a visible mark and say so in their metadata. Start the app with "
    "`--weights DIR` (a folder made by `hififace convert`) for real swaps."
)
CSS = "#random-weights { border: 2px solid #d97706; border-radius: 6px; padding: 0 0.6em; }"


def _error_md(err: BaseException) -> str:
    return f"**error:** {_escape(str(err))}"


def _escape(text: str) -> str:
    """Markdown-inert text (file names may hold * or _)."""
    for ch in "\\`*_[]<>#|":
        text = text.replace(ch, "\\" + ch)
    return text


def build_ui(service: SwapService, random_reason: str = "") -> Any:
    """The Gradio Blocks of the app (not launched)."""
    import gradio as gr

    image_types = list(IMAGE_EXTENSIONS)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(CACHE_CHECK, CACHE_LIFETIME)) as page:
        gr.Markdown(f"# {TITLE}\n{_escape(service.describe())}")
        gr.Markdown(CONSENT_MD, elem_id="consent")
        if service.random:
            gr.Markdown(RANDOM_MD.format(why=random_reason or "This model folder holds random weights."),
                        elem_id="random-weights")
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Swap", id="swap-tab", elem_id="swap-tab"), gr.Row():
                with gr.Column():
                    sources = gr.File(label="Source photo(s): whose identity to use (several are averaged)",
                                      file_count="multiple", file_types=image_types + [".safetensors"],
                                      elem_id="sources")
                    target = gr.File(label="Target photo or video: whose face is replaced",
                                     file_types=image_types + list(VIDEO_EXTENSIONS), elem_id="target")
                    faces = gr.Image(label="Faces found in the target photo, numbered from the left", type="numpy",
                                     interactive=False, elem_id="faces")
                    mode = gr.Radio([(label, value) for value, label in FACE_MODES.items()], value="largest",
                                    label="Which face to replace", elem_id="face-mode")
                    index = gr.Number(value=0, precision=0, minimum=0, label="Face number N", elem_id="face-index")
                    reference = gr.File(label="Reference photo (for 'most like a reference')",
                                        file_types=image_types, height=120, elem_id="reference")
                    with gr.Row():
                        color = gr.Checkbox(label="match skin colours", value=False)
                        mark = gr.Checkbox(label="visible 'AI-generated' mark" + (" (always, random weights)"
                                                                                if service.random else ""),
                                           value=service.random, interactive=not service.random)
                        enhance = gr.Checkbox(label=f"enhance: restore the swapped faces ({service.restorer.name})"
                                              if service.restorer is not None else "enhance", value=False,
                                              visible=service.restorer is not None, elem_id="enhance")
                        quality = gr.Checkbox(label="quality report (identity, pose, flicker: JSON and plot)",
                                              value=False, elem_id="quality-report")
                    with gr.Accordion("What the swapped face keeps of the target", open=False):
                        mouth = gr.Checkbox(label="keep the target's mouth (teeth, tongue)", value=False,
                                            elem_id="keep-mouth")
                        id_strength = gr.Slider(0.0, 1.0, value=1.0, step=0.05, elem_id="identity-strength",
                                                label="identity strength (0: the target's own, 1: the source's)")
                        shape_strength = gr.Slider(
                            0.0, 1.0, value=1.0, step=0.05, elem_id="shape-strength",
                            label="3D face-shape strength (0: the target's own, 1: the source's)")
                        weighting = gr.Radio([("mean of the photos", "mean"), ("weighted by head pose", "pose"),
                                              ("the photo closest in pose", "nearest")], value="mean",
                                             label="Several source photos", elem_id="source-weighting")
                    button = gr.Button("Swap", variant="primary", elem_id="swap")
                with gr.Column():
                    status = gr.Markdown(elem_id="status")
                    image_out = gr.Image(label="Result (labelled as synthetic)", type="filepath", interactive=False,
                                         elem_id="result-image")
                    video_out = gr.Video(label="Result video (labelled as synthetic)", interactive=False,
                                         elem_id="result-video")
                    download = gr.File(label="Download the result", interactive=False, elem_id="download")
                    quality_md = gr.Markdown(elem_id="quality-summary")
                    quality_plot = gr.Image(label="Quality report", type="filepath", interactive=False,
                                            visible=False, elem_id="quality-plot")
                    quality_files = gr.File(label="Download the quality report (JSON and PNG)", file_count="multiple",
                                            interactive=False, visible=False, elem_id="quality-files")

            with gr.Tab("Verify", id="verify-tab", elem_id="verify-tab"):
                gr.Markdown("Upload an image or a video to see what `hififace verify` reports: its metadata label, "
                            "its C2PA Content Credentials, the invisible watermark, and a verdict.")
                checked = gr.File(label="Image or video to check", file_types=image_types + list(VIDEO_EXTENSIONS),
                                  elem_id="verify-file")
                verdict = gr.Markdown(elem_id="verify-report")

        def on_target(path):
            try:
                return service.faces_preview(path), ""
            except HifiFaceError as err:
                return None, _error_md(err)

        no_report = ("", gr.update(value=None, visible=False), gr.update(value=None, visible=False))

        def on_swap(src, tgt, face_mode, face_index, ref, color_match, watermark, restore, report, keep_mouth, id_a,
                    shape_b, weights, progress=gr.Progress(track_tqdm=True)):
            try:
                out = service.run(src, tgt, face_mode, face_index, ref, color_match, watermark,
                                  progress=lambda fraction, what: progress(fraction, desc=what), keep_mouth=keep_mouth,
                                  identity_strength=id_a, shape_strength=shape_b, source_weighting=weights,
                                  enhance=restore, report=report)
            except HifiFaceError as err:
                return None, None, None, _error_md(err), *no_report
            except Exception as err:  # a bug or a library failure: one line on the page, the traceback in the log
                log.exception("app: swap failed")
                return (None, None, None, _error_md(f"unexpected {type(err).__name__}: {err}; see the server log"),
                        *no_report)
            done = f"**done:** {_escape(out.path.name)}: {_escape(out.message)}."
            if out.warning:
                done += f"\n\n**warning:** {_escape(out.warning)}."
            path = str(out.path)
            shown = (path, None, path, done) if out.kind == "image" else (None, path, path, done)
            if out.report is None:
                return (*shown, *no_report)
            return (*shown, f"**quality:** {_escape(out.summary)}.", gr.update(value=str(out.plot), visible=True),
                    gr.update(value=[str(out.report), str(out.plot)], visible=True))

        def on_verify(path):
            try:
                return verify_markdown(service.verify(path).as_dict())
            except HifiFaceError as err:
                return _error_md(err)
            except Exception as err:  # a bug or a library failure: one line on the page, the traceback in the log
                log.exception("app: verify failed")
                return _error_md(f"unexpected {type(err).__name__}: {err}; see the server log")

        checked.change(on_verify, inputs=checked, outputs=verdict)
        target.change(on_target, inputs=target, outputs=[faces, status])
        button.click(on_swap, inputs=[sources, target, mode, index, reference, color, mark, enhance, quality, mouth,
                                      id_strength, shape_strength, weighting],
                     outputs=[image_out, video_out, download, status, quality_md, quality_plot, quality_files])
    return page


def verify_markdown(rep: dict) -> str:
    """The verify report of one file (:meth:`FileReport.as_dict`) as Markdown for the page."""
    c, w = rep["c2pa"], rep["watermark"]
    mark = (f"detected (confidence {w['confidence']:.4f}, bits {w['bits'] or '-'})" if w.get("detected")
            else f"not found (score {w.get('score', 0):.1f})")
    lines = [f"**{_escape(rep['verdict'])}**: {_escape(VERDICTS.get(rep['verdict'], ''))}", "",
             f"- file: {_escape(str(rep['file']))}",
             f"- metadata label: {'yes' if rep['label'] else 'no'}",
             f"- C2PA: {_escape(c['status'])}" + (f", signer {_escape(c['signer'])}" if c.get("signer") else "")
             + (f", made by {_escape(c['generator'])}" if c.get("generator") else "")
             + (f", weights {_escape(c['fingerprint'])}" if c.get("fingerprint") else ""),
             f"- invisible watermark: {_escape(mark)}"]
    return "\n".join(lines)


def launch(page: Any, service: SwapService, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           max_upload_mb: float | None = None, queue_size: int | None = None) -> Any:
    """Start serving ``page`` on ``host:port`` (``share``: also through a public gradio.live link) and return at
    once; ``page.block_thread()`` then waits for Ctrl-C. One swap runs at a time; ``queue_size`` more may wait
    (others are refused by Gradio: "This application is currently busy"); uploads over ``max_upload_mb`` are
    refused by Gradio before they are stored (default: the service's limit; 0 = none). A port that is taken is one
    clear error."""
    mb = service.max_upload_mb if max_upload_mb is None else max_upload_mb
    try:
        page.queue(default_concurrency_limit=1, max_size=queue_size or None)  # one swap at a time: the model is shared
        page.launch(server_name=host, server_port=int(port), share=bool(share), inbrowser=False, quiet=True,
                    show_error=False, allowed_paths=[str(service.workdir)], prevent_thread_lock=True, css=CSS,
                    max_file_size=int(mb * 1_000_000) if mb else None)
    except OSError as err:
        log.debug("gradio: %s", err)
        raise HifiFaceError(f"cannot listen on {host}:{port}: the port is taken or the address is not this "
                            f"machine's; pick another --port or --host") from None
    return page
