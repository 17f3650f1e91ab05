"""WorklistPanel: the modality worklist a LocalPACS serves, edited from a form."""

from __future__ import annotations

import datetime as _dt

import ipywidgets as w
import pandas as pd

import dicomlab as dl
from dicomlab.widgets.base import Panel, frame_html, plural

__all__ = ["WorklistPanel"]

_SHOWN = {
    "PatientName": "Patient",
    "PatientID": "Patient ID",
    "AccessionNumber": "Accession",
    "Modality": "Modality",
    "ScheduledStationAETitle": "Station",
    "ScheduledProcedureStepStartDate": "Date",
    "ScheduledProcedureStepStartTime": "Time",
    "ScheduledProcedureStepDescription": "Procedure",
    "done": "Done",
}
"""The table's columns (DICOM keyword -> heading)."""
_MODALITIES = ["CT", "MR", "CR", "DX", "US", "MG", "NM", "PT", "XA", "OT"]


def _clock(t: object) -> str:
    """A time of day (a Timedelta since midnight) as HH:MM[:SS]."""
    if not isinstance(t, pd.Timedelta) or pd.isna(t):
        return ""
    seconds = int(t.total_seconds())
    hh, mm, ss = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{hh:02d}:{mm:02d}" + (f":{ss:02d}" if ss else "")


class WorklistPanel(Panel):
    """Add scheduled procedure steps to ``local.worklist``, mark them done or remove them.

    The form makes one step (its values checked as ``local.worklist.add`` checks a
    DataFrame: a refusal quotes the bad value and adds nothing); "Add synthetic" adds
    the steps that scheduled the studies ``dl.synth`` makes. A modality asking
    ``local`` for its worklist (``findscu -W``, ``dl.find(local.node,
    dl.Query.worklist())``) sees the steps not done.
    """

    css = "dl-worklist"

    def __init__(self, local: dl.LocalPACS) -> None:
        super().__init__()
        self.local = local
        self.patient_name = w.Text(description="Patient", placeholder="FAMILY^GIVEN")
        self.patient_id = w.Text(description="Patient ID")
        self.accession = w.Text(description="Accession")
        self.modality = w.Dropdown(options=_MODALITIES, value="CT", description="Modality")
        self.station = w.Text(description="Station AE", placeholder="CT01")
        self.day = w.DatePicker(description="Date", value=_dt.date.today())
        self.time = w.Text(description="Time", placeholder="HH:MM", value="09:00")
        self.description = w.Text(description="Procedure")
        fields = {
            "patient-name": self.patient_name,
            "patient-id": self.patient_id,
            "accession": self.accession,
            "modality": self.modality,
            "station": self.station,
            "date": self.day,
            "time": self.time,
            "description": self.description,
        }
        for name, field in fields.items():
            field.add_class(f"dl-worklist-{name}")
        self.add_button = w.Button(description="Add", icon="plus").add_class("dl-worklist-add")
        self.synthetic_button = w.Button(description="Add synthetic").add_class(
            "dl-worklist-synthetic"
        )
        self.chosen = w.Dropdown(options=[], description="Accession").add_class(
            "dl-worklist-chosen"
        )
        self.done_button = w.Button(description="Mark done").add_class("dl-worklist-done")
        self.remove_button = w.Button(description="Remove").add_class("dl-worklist-remove")
        self.table = w.HTML("").add_class("dl-worklist-table")
        self.add_button.on_click(lambda _: self.add())
        self.synthetic_button.on_click(lambda _: self.add_synthetic())
        self.done_button.on_click(lambda _: self.mark_done())
        self.remove_button.on_click(lambda _: self.remove())
        self.ui = w.VBox(
            [
                w.HBox([self.patient_name, self.patient_id, self.accession]),
                w.HBox([self.modality, self.station, self.description]),
                w.HBox([self.day, self.time, self.add_button, self.synthetic_button]),
                self.message,
                self.table,
                w.HBox([self.chosen, self.done_button, self.remove_button]),
            ]
        ).add_class(self.css)
        self.refresh()

    def form_frame(self) -> pd.DataFrame:
        """The form as a one-step worklist DataFrame (checked by ``add``)."""
        row = {
            "PatientName": self.patient_name.value.strip(),
            "PatientID": self.patient_id.value.strip(),
            "AccessionNumber": self.accession.value.strip(),
            "Modality": self.modality.value,
            "ScheduledStationAETitle": self.station.value.strip(),
            "ScheduledProcedureStepStartDate": self.day.value,
            "ScheduledProcedureStepStartTime": self.time.value.strip(),
            "ScheduledProcedureStepDescription": self.description.value.strip(),
        }
        return pd.DataFrame([{k: (v if v != "" else None) for k, v in row.items()}])

    def add(self) -> None:
        form = self.form_frame()
        self.run("adding", lambda: self.local.worklist.add(form), self._added)

    def add_synthetic(self, n: int = 5) -> None:
        def work() -> pd.DataFrame:
            seed = len(self.local.worklist) + 1
            return self.local.worklist.add(dl.synth.worklist(n, seed=seed))

        self.run("adding synthetic steps", work, self._added)

    def mark_done(self) -> None:
        accession = self.chosen.value
        if accession:
            done = self.local.worklist.mark_done
            self.run("marking done", lambda: done(accession), self._changed)

    def remove(self) -> None:
        accession = self.chosen.value
        if accession:
            self.run("removing", lambda: self.local.worklist.remove(accession), self._changed)

    def _added(self, added: pd.DataFrame) -> None:
        self.say(f"added {plural(len(added), 'step')}", "ok")
        self.refresh()

    def _changed(self, n: int) -> None:
        self.say(f"{plural(n, 'step')} changed", "ok")
        self.refresh()

    def refresh(self) -> None:
        df = self.local.worklist.frame()
        shown = df[list(_SHOWN)].rename(columns=_SHOWN)
        shown["Time"] = [_clock(t) for t in shown["Time"]]
        self.table.value = frame_html(shown)
        open_ = df[~df["done"].astype(bool)]
        accessions = [a for a in open_["AccessionNumber"].dropna().unique() if a]
        kept = self.chosen.value
        self.chosen.options = accessions
        self.chosen.value = kept if kept in accessions else (accessions[0] if accessions else None)
        self.done_button.disabled = self.remove_button.disabled = not accessions
