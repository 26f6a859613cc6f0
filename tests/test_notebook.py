"""docs/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel), in random-weight mode:
install check, stand-in checkpoint -> convert -> info, a photo swap, an interpolation GIF and a video swap, all
written, all labelled "random weights"."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from hififace.media.labels import read_label

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "quickstart.ipynb"


def test_the_committed_notebook_is_clean_and_stands_alone():
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)  # no stale outputs
    source = "\n".join("".join(c["source"]) for c in code)
    for word in ("tests/", "from tests", "import fakes", "inferkit"):  # users have no tests/ folder
        assert word not in source, word
    assert "REFERENCE_CKPT = None" in source  # random-weight mode unless the user gives a file


def test_quickstart_notebook_runs_top_to_bottom(tmp_path, isolated_home):  # noqa: F811
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("cv2")
    pytest.importorskip("imageio_ffmpeg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError (with the cell and its traceback) if any cell fails
    work = tmp_path / "hififace-quickstart"
    for name in ("swapped.jpg", "interpolation.gif", "swapped.mp4"):
        label = " ".join(f"{k}={v}" for k, v in read_label(work / name).items())
        assert "AI-Generated=true" in label and "hififace:weights=random" in label, (name, label)
    with Image.open(work / "interpolation.gif") as gif:
        assert gif.n_frames == 7
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "2 of 2 faces swapped" in text and "8 frames, face swapped in 8" in text
    images = [o for o in outputs if o.output_type == "display_data" and any(k.startswith("image/") for k in o.data)]
    assert len(images) == 3  # the numbered faces, the swapped photo, the GIF
    assert any("text/html" in o.get("data", {}) and "<video" in o.data["text/html"] for o in outputs)
