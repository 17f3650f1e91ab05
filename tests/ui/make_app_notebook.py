"""Writes tests/ui/query_app.ipynb: the notebook the browser tests open in Voila and JupyterLab.

It starts a seeded LocalPACS and an empty one in the kernel and shows a QueryPanel
whose retrieves go to the empty one. The expected row count is computed by the test
from the same seed and date.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

CELL = """\
import tempfile
from pathlib import Path

import dicomlab as dl

work = Path(tempfile.mkdtemp(prefix="dicomlab-ui-"))
dl.synth.write_studies(work / "synth", n_studies=12, seed=5)
pacs = dl.LocalPACS(work / "pacs", ae_title="UIPACS", port=0, allow_unknown="all").start()
pacs.import_files(work / "synth")
mine = dl.LocalPACS(work / "mine", ae_title="UIMINE", port=0).start()
book = dl.NodeBook(local=dl.LocalIdentity(ae_title="UIMINE", port=mine.port))
book.add(dl.Node("pacs", ae_title="UIPACS", port=pacs.port, retrieve="get"))
book.default = "pacs"
panel = dl.widgets.QueryPanel(book, transfers=dl.widgets.TransferPanel(book, into=mine))
panel"""


def main() -> None:
    nb = new_notebook(cells=[new_code_cell(CELL)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, Path(__file__).with_name("query_app.ipynb"))


if __name__ == "__main__":
    main()
