"""Writes the notebooks under notebooks/ from the cells below (the .ipynb files are committed).

Run ``python scripts/make_notebooks.py`` after editing a notebook's cells here, so that
the notebooks stay reviewable as code. Every notebook starts what it needs, works in a
temporary folder, stops what it started, and asserts its results in its last cell
(tests/test_notebooks.py executes them all).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parent.parent / "notebooks"

SETUP = """\
import tempfile
from pathlib import Path

import pandas as pd

import dicomlab as dl

work = Path(tempfile.mkdtemp(prefix="dicomlab-"))  # everything this notebook writes
work"""

REAL_PACS = """\
# Pointing at a real PACS instead (not run here): register it once in the node book.
# Ask the PACS administrator to add OUR AE title, host and port on their side too
# (C-MOVE sends the images to us; C-GET does not need that).
#
# book = dl.NodeBook.load()
# book.add(dl.Node("hospital", ae_title="PACS", host="pacs.example.org", port=104,
#                  retrieve="get", max_connections=2, timeout=30))
# book.default = "hospital"; book.save()
# dl.echo("hospital")"""

QUICKSTART = [
    new_markdown_cell(
        "# dicomlab in five minutes\n\n"
        "Nodes, echo, queries with date presets, a retrieve, and the network log. "
        "No external PACS: the notebook starts two small PACS (`dl.LocalPACS`) in "
        "this kernel, one seeded with synthetic studies (no patient data), and "
        "stops them at the end."
    ),
    new_code_cell(SETUP),
    new_markdown_cell("## Two nodes in this kernel"),
    new_code_cell(
        'pacs = dl.LocalPACS(work / "pacs", ae_title="DEMOPACS", port=0, allow_unknown="all")\n'
        'mine = dl.LocalPACS(work / "mine", ae_title="MINE", port=0, web_port=0)  # + DICOMweb, viewer\n'
        "pacs.start(); mine.start()\n"
        'studies = dl.synth.write_studies(work / "studies", n_studies=12, seed=1)\n'
        'pacs.import_files(work / "studies")\n'
        "pacs, mine"
    ),
    new_markdown_cell(
        "## Echo\n\n`dl.echo` never raises for a network problem: it tells what went wrong."
    ),
    new_code_cell("ok = dl.echo(pacs.node)\nok"),
    new_code_cell(
        'nobody = dl.Node("nobody", ae_title="NOBODY", host="127.0.0.1", port=1, timeout=2)\n'
        "dl.echo(nobody)"
    ),
    new_markdown_cell(
        "## Query\n\nPresets: `today`, `yesterday`, `last7days`, `lastNdays`, `all`, "
        "or a `(start, end)` pair. Results are typed DataFrames."
    ),
    new_code_cell(
        'week = dl.find(pacs.node, dl.Query.studies(date="last7days"))\n'
        "every = dl.find(pacs.node, dl.Query.studies())\n"
        'print(len(week), "studies this week,", len(every), "in all")\n'
        "every.dtypes.head(8)"
    ),
    new_code_cell(
        "series = dl.find(pacs.node, dl.Query.series(StudyInstanceUID=every.StudyInstanceUID[:2]))\n"
        'series[["StudyInstanceUID", "SeriesNumber", "Modality", "NumberOfSeriesRelatedInstances"]]'
    ),
    new_markdown_cell(
        "## Retrieve\n\nC-GET here (C-MOVE needs the PACS to know our node). The outcome "
        "table says, per study, what was expected and what arrived."
    ),
    new_code_cell(
        'got = dl.retrieve(pacs.node, every.head(4), into=mine, method="get")\n'
        'got[["StudyInstanceUID", "status", "expected_instances", "received_instances", "complete"]]'
    ),
    new_markdown_cell(
        "## Look at what arrived\n\n`mine` also serves a web port: DICOMweb, the OHIF viewer "
        "(installed by `make viewer`), zip downloads and share links. `dl.view` gives a link "
        "that opens exactly these studies."
    ),
    new_code_cell(
        "try:\n"
        "    link = dl.view(got, mine)  # click it: the viewer on these four studies\n"
        "except dl.ConfigError as exc:  # the viewer is not installed here: `make viewer`\n"
        "    link = exc\n"
        "link"
    ),
    new_code_cell(
        "first = got.StudyInstanceUID[0]\n"
        "share = mine.share(first, days=7)  # for a colleague: this study only, for a week\n"
        'zipped = mine.export_zip(first, work / "study.zip")\n'
        'print(share.split("token=")[0] + "token=...", zipped.name, zipped.stat().st_size, "bytes")\n'
        "mine.shares()"
    ),
    new_markdown_cell("## The network log\n\nEvery association and operation, both roles."),
    new_code_cell('ops = dl.read_log(since="today")\ndl.log.summary(ops)'),
    new_code_cell("dl.plot.latency(ops).figure"),
    new_code_cell(REAL_PACS),
    new_markdown_cell("## Stop what we started"),
    new_code_cell(
        "pacs.stop(); mine.stop()\n"
        "assert ok.ok and got.complete.all()\n"
        "assert len(mine.instances()) == got.received_instances.sum() > 0\n"
        "assert {'C-ECHO', 'C-FIND', 'C-GET'} <= set(ops.service)\n"
        "assert not pacs.running and not mine.running\n"
        "assert not mine.serves_web"
    ),
]

COHORT = [
    new_markdown_cell(
        "# Pulling a cohort from a list of accession numbers\n\n"
        "A researcher gets a CSV of accession numbers. We look each one up "
        "(`dl.find_many`), reconcile found and missing, filter in pandas, retrieve "
        "with a concurrency limit, check completeness, and save a manifest next to the files."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "# The stand-in hospital PACS: synthetic studies (seed 7), as in data/fixtures\n"
        'pacs = dl.LocalPACS(work / "pacs", ae_title="HOSPITAL", port=0, allow_unknown="all").start()\n'
        'dl.synth.write_studies(work / "synth", n_studies=30, seed=7)\n'
        'pacs.import_files(work / "synth")\n'
        'mine = dl.LocalPACS(work / "cohort", ae_title="MINE", port=0).start()'
    ),
    new_code_cell(
        "fixtures = Path(dl.__file__).resolve().parent.parent / 'data' / 'fixtures'\n"
        "wanted = pd.read_csv(fixtures / 'cohort_accessions.csv', dtype=str)\n"
        "wanted.head()"
    ),
    new_markdown_cell("## Look every accession number up, over a few associations"),
    new_code_cell(
        "found = dl.find_many(pacs.node, dl.Query.studies(), "
        "AccessionNumber=wanted.AccessionNumber)\n"
        "report = dl.reconcile(found)\n"
        "report.outcome.value_counts()"
    ),
    new_code_cell('report[report.outcome != "matched"]'),
    new_markdown_cell("## Filter like any table: CT and MR only"),
    new_code_cell(
        'cohort = found[found.ModalitiesInStudy.astype(str).str.contains("CT|MR")]\n'
        'cohort[["AccessionNumber", "StudyDate", "ModalitiesInStudy", '
        '"NumberOfStudyRelatedInstances"]]'
    ),
    new_markdown_cell(
        "## Retrieve with at most two associations at a time\n\n"
        "Running this cell again transfers nothing: what is complete is skipped."
    ),
    new_code_cell(
        'outcome = dl.retrieve(pacs.node, cohort, into=mine, method="get", max_connections=2)\n'
        'outcome[["AccessionNumber", "received_instances", "expected_instances", "complete"]] '
        'if "AccessionNumber" in outcome else outcome.head()'
    ),
    new_code_cell(
        "again = dl.retrieve(pacs.node, cohort, into=mine, method='get', max_connections=2)\n"
        "again.skipped.all()"
    ),
    new_markdown_cell("## Manifest: what we have, where, from which request"),
    new_code_cell(
        "held = mine.instances()\n"
        "manifest = held.drop(columns=['AccessionNumber'], errors='ignore').merge(\n"
        "    cohort[['StudyInstanceUID', 'AccessionNumber']], on='StudyInstanceUID')\n"
        "manifest.to_parquet(work / 'cohort' / 'manifest.parquet', index=False)\n"
        "manifest.groupby('AccessionNumber').size()"
    ),
    new_markdown_cell(
        "## A bundle to re-run next month, and jobs that survive a restart\n\n"
        "`dl.Cohort` keeps the request, the study list, what changed on the PACS and "
        "every transfer in one folder (no patient data unless `phi=True`); a re-run "
        "pulls only the difference. Every retrieve is written down as it runs: after a "
        "kernel restart `dl.jobs()` lists it and `dl.resume(job_id)` takes it up."
    ),
    new_code_cell(
        'bundle = dl.Cohort("ct-mr", pacs.node, accessions=list(cohort.AccessionNumber),\n'
        '                   folder=work / "bundle")\n'
        'pulled = bundle.pull(into=mine, method="get", progress=False)  # all held already\n'
        'print(pulled.attrs["changes"])\n'
        'bundle.runs()[["studies", "new", "transferred", "complete"]]'
    ),
    new_code_cell('dl.jobs()[["job_id", "node", "state", "items", "done", "complete"]].head()'),
    new_code_cell(
        "pacs.stop(); mine.stop()\n"
        "assert len(pulled) == 0 and pulled.attrs['changes'] == {'new study': len(cohort)}\n"
        "ours = dl.jobs().set_index('job_id').loc[[outcome.attrs['job_id'], again.attrs['job_id']]]\n"
        "assert (ours.state == 'done').all()\n"
        "assert (report.outcome == 'none').sum() == 3  # the three made-up numbers\n"
        "assert outcome.complete.all() and again.skipped.all()\n"
        "assert len(manifest) == outcome.received_instances.sum() > 0\n"
        "assert pd.read_parquet(work / 'cohort' / 'manifest.parquet').shape == manifest.shape"
    ),
]

LOGS = [
    new_markdown_cell(
        "# Analysing transfer logs\n\n"
        "dicomlab keeps every association and DIMSE operation as Parquet, partitioned "
        "by UTC date. Here, two weeks of a synthetic log (the same schema as the real "
        "one, deterministic): summaries per peer and service, throughput over time, "
        "latency, failures by status code, and a query straight on the folder with pyarrow."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        'logs = work / "logs"\n'
        "n = dl.log.write_synthetic_log(logs, days=14, seed=0)\n"
        "sorted(p.name for p in (logs / 'operations').iterdir())[:3], n"
    ),
    new_code_cell("ops = dl.read_log(logs)\nops.dtypes"),
    new_markdown_cell("## Per peer and service"),
    new_code_cell("dl.log.summary(ops)"),
    new_markdown_cell("## Throughput over time (C-STORE, MB/s per hour)"),
    new_code_cell('dl.plot.throughput(ops, freq="1h").figure'),
    new_markdown_cell("## Latency per service"),
    new_code_cell("dl.plot.latency(ops).figure"),
    new_markdown_cell("## Failures by status code and peer"),
    new_code_cell(
        "failures = ops[ops.status_category == 'failure']\n"
        "pd.crosstab(failures.status_name, failures.peer_ae)"
    ),
    new_markdown_cell("## Associations: outcomes, and one day on a timeline"),
    new_code_cell(
        "assocs = dl.log.read_associations(logs)\n"
        "print(assocs.outcome.value_counts())\n"
        "day = assocs[assocs.requested_at.dt.strftime('%Y-%m-%d') == '2026-01-28']\n"
        "dl.plot.timeline(day).figure"
    ),
    new_markdown_cell(
        "## Straight on the folder: pyarrow.dataset\n\n"
        "Any Parquet reader works (DuckDB, Spark): the partitions prune whole days."
    ),
    new_code_cell(
        "import pyarrow.dataset as pads\n"
        "part = pads.partitioning(flavor='hive')\n"
        "dataset = pads.dataset(logs / 'operations', format='parquet', partitioning=part)\n"
        "slow = dataset.to_table(\n"
        "    columns=['service', 'duration_s', 'date'],\n"
        "    filter=(pads.field('date') >= '2026-01-25') & (pads.field('duration_s') > 1.0),\n"
        ").to_pandas()\n"
        "slow.groupby('service').duration_s.describe()"
    ),
    new_code_cell(
        "assert len(ops) == n and set(ops.peer_ae) == "
        "{'HOSPITAL_PACS', 'RESEARCH_ORTHANC', 'SLOW_ARCHIVE'}\n"
        "assert len(failures) > 0 and (slow.duration_s > 1.0).all()\n"
        "assert set(assocs.outcome) == {'released', 'aborted', 'rejected'}"
    ),
]

TEACHING = [
    new_markdown_cell(
        "# Teaching DICOM networking\n\n"
        "Two PACS nodes talk inside this kernel. We look at an association's sequence of "
        "messages, presentation contexts (accepted and rejected), C-FIND matching rules, "
        "C-MOVE versus C-GET, and status codes."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "book = dl.NodeBook()\n"
        'student = dl.LocalPACS(work / "student", ae_title="STUDENT", port=0).start()\n'
        'book.add(dl.Node("student", ae_title="STUDENT", host="127.0.0.1", port=student.port))\n'
        'teacher = dl.LocalPACS(work / "teacher", ae_title="TEACHER", port=0, book=book,\n'
        '                       allow_unknown=("echo", "find", "get")).start()\n'
        'dl.synth.write_studies(work / "synth", n_studies=6, seed=3)\n'
        'teacher.import_files(work / "synth")\n'
        "teacher, student"
    ),
    new_markdown_cell(
        "## An association, message by message\n\n"
        "A C-ECHO, then the log's story of that association as a sequence diagram."
    ),
    new_code_cell(
        'echoed = dl.echo(teacher.node, calling_ae="STUDENT")\n'
        "assocs = dl.log.read_associations()\n"
        "last = assocs[(assocs.role == 'SCU') & (assocs.peer_ae == 'TEACHER')].iloc[-1]\n"
        "dl.plot.sequence(dl.log.association(last.association_id)).figure"
    ),
    new_markdown_cell(
        "## Presentation contexts\n\n"
        "Each proposed context pairs an abstract syntax (what: a SOP class) with transfer "
        "syntaxes (how it is encoded). The acceptor accepts or rejects each one. Here we "
        "propose one the teacher knows (Verification) and one it does not (a private "
        "SOP class). This cell uses pynetdicom directly, to show the negotiation itself."
    ),
    new_code_cell(
        "from pynetdicom import AE\n"
        "ae = AE(ae_title='CURIOUS')\n"
        "ae.add_requested_context('1.2.840.10008.1.1')  # Verification\n"
        "ae.add_requested_context('1.2.3.4.5.6.7.8.9')  # made-up private SOP class\n"
        "assoc = ae.associate('127.0.0.1', teacher.port, ae_title='TEACHER')\n"
        "contexts = pd.DataFrame(\n"
        "    [{'abstract syntax': str(c.abstract_syntax), 'result': c.result, 'meaning': c.status}\n"
        "     for c in assoc.accepted_contexts + assoc.rejected_contexts])\n"
        "assoc.release()\n"
        "contexts"
    ),
    new_markdown_cell(
        "## C-FIND matching rules by example\n\n"
        "Single value, wildcards `*` and `?`, ranges `A-B`, and lists of UIDs."
    ),
    new_code_cell(
        "everything = dl.find(teacher.node, dl.Query.studies(), calling_ae='STUDENT')\n"
        "name = str(everything.PatientName.iloc[0])\n"
        "family = name.split('^')[0]\n"
        "examples = {\n"
        "    'exact name': dict(PatientName=name),\n"
        "    'wildcard *': dict(PatientName=family[:2] + '*'),\n"
        "    'wildcard ?': dict(PatientName='?' + name[1:]),\n"
        "    'date range': dict(StudyDate=(everything.StudyDate.min().date(),\n"
        "                                  everything.StudyDate.median().date())),\n"
        "    'UID list': dict(StudyInstanceUID=list(everything.StudyInstanceUID[:2])),\n"
        "}\n"
        "matches = {k: len(dl.find(teacher.node, dl.Query.studies(**v), calling_ae='STUDENT'))\n"
        "           for k, v in examples.items()}\n"
        "pd.Series(matches, name='matches')"
    ),
    new_markdown_cell(
        "## C-MOVE versus C-GET\n\n"
        "C-GET brings the images back on the same association. C-MOVE asks the PACS to "
        "open a *new* association to a destination it must know by AE title, host and "
        "port: an unknown destination fails (0xA801), which is the most common support "
        "call. The teacher knows STUDENT, so C-MOVE to STUDENT works; it does not know "
        "STRANGER."
    ),
    new_code_cell(
        "one = everything.head(1)\n"
        "by_get = dl.retrieve(teacher.node, one, into=student, method='get',\n"
        "                     calling_ae='STUDENT', progress=False)\n"
        "stranger = dl.LocalPACS(work / 'stranger', ae_title='STRANGER', port=0).start()\n"
        "by_move = dl.retrieve(teacher.node, everything.iloc[1:2], into=stranger,\n"
        "                      method='move', calling_ae='STUDENT', progress=False)\n"
        "stranger.stop()\n"
        "print(by_get[['status', 'complete']].to_string())\n"
        "print(by_move.error.iloc[0])"
    ),
    new_markdown_cell("## Status codes\n\nWhat the numbers in a DIMSE response mean."),
    new_code_cell(
        "codes = [0x0000, 0xFF00, 0xFE00, 0xB000, 0xA700, 0xA801, 0xA900, 0xC000, 0x0122]\n"
        "pd.DataFrame([{'code': f'0x{c:04X}', 'category': dl.decode_status(c).category,\n"
        "               'name': dl.decode_status(c).name} for c in codes])"
    ),
    new_markdown_cell(
        "## Results go back to the PACS\n\n"
        "A researcher's results are DICOM objects too, and they go back with the same "
        "`dl.store`. Here the student segments a CT series it pulled (a SEG), measures the "
        "segment in a TID 1500 measurement report (an SR) and bookmarks two images (a Key "
        "Object Selection, KOS), all built with highdicom; the teacher's PACS files them in "
        "the study they belong to, as series of their own."
    ),
    new_code_cell(
        "from pydicom import dcmread\n"
        "\n"
        "from dicomlab import derived\n"
        "\n"
        "ct_study = everything[everything.ModalitiesInStudy.astype(str).str.contains('CT')].head(1)\n"
        "dl.retrieve(teacher.node, ct_study, into=student, method='get', calling_ae='STUDENT',\n"
        "            progress=False)\n"
        "rows = student.instances()\n"
        "ct = rows[(rows.Modality == 'CT') & (rows.StudyInstanceUID == ct_study.StudyInstanceUID.iloc[0])]\n"
        "series = [dcmread(p) for p in ct[ct.SeriesInstanceUID == ct.SeriesInstanceUID.iloc[0]].path]\n"
        "seg = derived.segmentation(series)\n"
        "report = derived.measurement_report(seg, series)\n"
        "bookmark = dl.key_objects(ct.head(2), description='teaching: images of interest')\n"
        "sent_back = dl.store(teacher.node, [seg, report, *bookmark], calling_ae='STUDENT', progress=False)\n"
        "filed = dl.find(teacher.node, dl.Query.series(StudyInstanceUID=ct_study.StudyInstanceUID.iloc[0]),\n"
        "                calling_ae='STUDENT')\n"
        "filed[['Modality', 'SeriesDescription', 'NumberOfSeriesRelatedInstances']]"
    ),
    new_markdown_cell(
        "## TLS\n\n"
        "DICOM over TLS (usually port 2762) encrypts the association and lets each side "
        "check the other's certificate. AE titles alone prove nothing (anyone can claim "
        "one); a client certificate does. Here the teacher serves TLS beside its plain "
        "port and requires client certificates signed by a demo CA."
    ),
    new_code_cell(
        "certs = dl.tls.make_demo_certificates(work / 'certs')\n"
        "secure = dl.LocalPACS(work / 'secure', ae_title='SECURE', port=0,\n"
        "                      tls=certs.server(require_client_cert=True), tls_port=0,\n"
        "                      allow_unknown='all').start()\n"
        "attempts = {\n"
        "    'with our client certificate': secure.tls_node.replace(tls=certs.client()),\n"
        "    'without a client certificate': secure.tls_node.replace(\n"
        "        tls=certs.client(with_certificate=False)),\n"
        "    'trusting no CA (system store)': secure.tls_node.replace(tls=dl.TLS()),\n"
        "    'plain DICOM on the TLS port': secure.node.replace(port=secure.tls_port),\n"
        "}\n"
        "tls_echoes = {k: dl.echo(n) for k, n in attempts.items()}\n"
        "secure.stop()\n"
        "pd.DataFrame([{'attempt': k, 'ok': r.ok, 'detail': r.detail}\n"
        "              for k, r in tls_echoes.items()])"
    ),
    new_markdown_cell(
        "## How a modality learns what to scan, and knows its images are safe\n\n"
        "A modality asks a *worklist* what to scan (a C-FIND on the Modality Worklist "
        "model: patient, accession number, procedure, station, time). After scanning it "
        "sends the images, then asks for *storage commitment* (an N-ACTION; the archive "
        "answers in an N-EVENT-REPORT) before it deletes its own copies. The teacher "
        "serves a worklist; the student plays the modality. When the study of a scheduled "
        "accession number arrives, its step is done and leaves the worklist."
    ),
    new_code_cell(
        "teacher.worklist.add(dl.synth.worklist(3, seed=9))\n"
        "todo = dl.find(teacher.node, dl.Query.worklist(), calling_ae='STUDENT')\n"
        "todo[['PatientName', 'AccessionNumber', 'Modality', 'ScheduledStationAETitle',\n"
        "      'ScheduledProcedureStepStartDate', 'ScheduledProcedureStepStartTime']]"
    ),
    new_code_cell(
        "scan = dl.synth.write_studies(work / 'scan', n_studies=3, seed=9)  # 'acquired'\n"
        "first = scan[scan.AccessionNumber == todo.AccessionNumber.iloc[0]]\n"
        "sent = dl.store(teacher.node, first.path, commit=True, calling_ae='STUDENT',\n"
        "                progress=False)\n"
        "left = dl.find(teacher.node, dl.Query.worklist(), calling_ae='STUDENT')\n"
        "print(f'{sent.committed.sum()} of {len(sent)} instances committed by the teacher')\n"
        "print(f'{len(todo)} steps scheduled, {len(left)} left once the first study arrived')"
    ),
    new_markdown_cell(
        "## The same, by clicking\n\n"
        "`dl.widgets.App` puts the node book, queries, transfers, the network report "
        "and a server panel in tabs. Every panel exposes its results to code "
        "(`app.query.result`, `app.query.selection`)."
    ),
    new_code_cell(
        "book.add(dl.Node('teacher', ae_title='TEACHER', host='127.0.0.1', port=teacher.port,\n"
        "                 retrieve='get'))\n"
        "book.local = dl.LocalIdentity(ae_title='STUDENT', port=student.port)\n"
        "book.default = 'teacher'\n"
        "app = dl.widgets.App(book, local=student)\n"
        "app"
    ),
    new_code_cell(
        "app.query.preset_buttons['all'].click()  # what clicking 'Search All' does\n"
        "app.query.wait()\n"
        "app.query.result[['StudyDate', 'PatientName', 'ModalitiesInStudy']]"
    ),
    new_code_cell(
        "found_by_app = len(app.query.result)\n"
        "assert found_by_app == len(everything) + first.StudyInstanceUID.nunique()  # + the scan\n"
        "assert echoed.ok\n"
        "assert set(contexts.result) == {0x00, 0x03}  # accepted, abstract syntax not supported\n"
        "assert matches['exact name'] >= 1 and matches['UID list'] == 2\n"
        "assert by_get.complete.all() and by_move.status.iloc[0] != 0\n"
        "assert 'STRANGER' in by_move.error.iloc[0]\n"
        "assert [r.ok for r in tls_echoes.values()] == [True, False, False, False]\n"
        "assert 'client certificate' in tls_echoes['without a client certificate'].detail\n"
        "assert sent_back.attrs['complete'] and {'SEG', 'SR', 'KO'} <= set(filed.Modality)\n"
        "assert sent.committed.all() and len(left) == len(todo) - 1"
    ),
    new_markdown_cell(
        "The App above stays live after *Run All*: click **Search All**, click a study's "
        "row, **Retrieve Study**, then open the network report. When class is over, "
        "`app.close(); teacher.stop(); student.stop()` frees the ports (shutting the "
        "kernel down does the same)."
    ),
]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, cells in (
        ("01_quickstart", QUICKSTART),
        ("02_cohort_pull", COHORT),
        ("03_transfer_logs", LOGS),
        ("04_teaching_dicom_networking", TEACHING),
    ):
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, OUT / f"{name}.ipynb")
        print("wrote", OUT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
