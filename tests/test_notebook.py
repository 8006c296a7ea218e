"""Executes notebooks/quickstart.ipynb end to end with tiny settings, so it cannot rot."""

import os

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.slow
def test_quickstart_notebook_runs(repo_root, tmp_path, monkeypatch):
  monkeypatch.setenv("TALKJAX_SKIP_INSTALL", "1")
  monkeypatch.setenv("TALKJAX_QUICKSTART_TINY", "1")
  monkeypatch.setenv("TALKJAX_QUICKSTART_DIR", str(tmp_path))
  path = os.path.join(repo_root, "notebooks", "quickstart.ipynb")
  nb = nbformat.read(path, as_version=4)
  assert nb.cells[1].cell_type == "code" and "TALKJAX_SKIP_INSTALL" in nb.cells[1].source  # the install cell
  client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": repo_root}})
  client.execute()  # raises CellExecutionError (with the cell and traceback) if any cell fails

  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
  assert "nothing to install" in text
  assert "held-out evaluation" in text and "eval/lipsync/psnr" in text
  assert "end to end" in text  # the generation report
  images = [o for o in outputs if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
  assert len(images) == 1
  assert any("text/html" in o.get("data", {}) for o in outputs if o.get("output_type") == "display_data")
  assert os.path.getsize(tmp_path / "generated.mp4") > 1000
