"""Writes the notebooks the browser tests open in Voila and JupyterLab (tests/ui/*.ipynb).

query_app.ipynb starts a seeded LocalPACS and an empty one in the kernel and shows a
QueryPanel whose retrieves go to the empty one; the expected rows are computed by the
test from the same seed and date. report_app.ipynb shows two NetworkReports on their
Plots tab: the kernel's own log of a minute of echoes and queries, and a synthetic log
of one whole day. nodes_app.ipynb shows a NodePanel over a LocalPACS that knows ours
as a C-MOVE destination. worklist_app.ipynb shows a WorklistPanel over a LocalPACS
holding three synthetic steps.
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


REPORT_CELLS = [
    """\
import tempfile
from datetime import UTC, datetime, time
from pathlib import Path

import dicomlab as dl

work = Path(tempfile.mkdtemp(prefix="dicomlab-ui-"))
dl.synth.write_studies(work / "synth", n_studies=3, seed=5)
pacs = dl.LocalPACS(work / "pacs", ae_title="UIPACS", port=0, allow_unknown="all").start()
pacs.import_files(work / "synth")
for _ in range(6):  # a minute (or less) of this kernel's own traffic
    dl.echo(pacs.node, calling_ae="UIMINE")
    dl.find(pacs.node, dl.Query.studies(), calling_ae="UIMINE")
midnight = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
dl.log.write_synthetic_log(work / "day", days=1, seed=3, end=midnight)  # yesterday, whole""",
    """\
minute = dl.widgets.NetworkReport()
minute.tabs.selected_index = 2  # Plots
minute.ui.add_class("dl-report-minute")
minute""",
    """\
day = dl.widgets.NetworkReport(folder=work / "day")
day.tabs.selected_index = 2
day.ui.add_class("dl-report-day")
day""",
]

NODES_CELL = """\
import tempfile
from pathlib import Path

import dicomlab as dl

work = Path(tempfile.mkdtemp(prefix="dicomlab-ui-"))
dl.synth.write_studies(work / "synth", n_studies=2, seed=5)
mine = dl.LocalPACS(work / "mine", ae_title="UIMINE", port=0).start()
known = dl.NodeBook()
known.add(dl.Node("mine", ae_title="UIMINE", port=mine.port))
pacs = dl.LocalPACS(work / "pacs", ae_title="UIPACS", port=0, book=known, allow_unknown="all")
pacs.start().import_files(work / "synth")
book = dl.NodeBook(local=dl.LocalIdentity(ae_title="UIMINE", port=mine.port))
book.add(dl.Node("pacs", ae_title="UIPACS", port=pacs.port))
panel = dl.widgets.NodePanel(book, local=mine)
panel"""


WORKLIST_CELL = """\
import tempfile
from pathlib import Path

import dicomlab as dl

work = Path(tempfile.mkdtemp(prefix="dicomlab-ui-"))
ris = dl.LocalPACS(work / "ris", ae_title="UIRIS", port=0).start()
ris.worklist.add(dl.synth.worklist(3, seed=5))
panel = dl.widgets.WorklistPanel(ris)
panel"""


def _write(name: str, cells: list[str]) -> None:
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, Path(__file__).with_name(name))


def main() -> None:
    _write("query_app.ipynb", [CELL])
    _write("report_app.ipynb", REPORT_CELLS)
    _write("nodes_app.ipynb", [NODES_CELL])
    _write("worklist_app.ipynb", [WORKLIST_CELL])


if __name__ == "__main__":
    main()
