"""``dl.Deidentifier``: PS3.15 de-identification with consistent pseudonyms, new UIDs
and date shifts, an encrypted map back to the originals, and a check that nothing of
the source patient survived.

One secret drives it all: the same patient gets the same pseudonym, the same UID the
same new UID and the same patient the same date shift on every run, and the map's
originals open only with that secret. Where it is used: ``d.apply(files, out=...)``
offline, ``dl.LocalPACS(..., deidentify=d)`` on everything it receives (before
anything is written), ``dl.retrieve(..., deidentify=d)`` and ``dl.store(...,
deidentify=d)``.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from dicomlab.core.nodebook import home
from dicomlab.core.outcomes import DEIDENTIFIED
from dicomlab.deid import scan
from dicomlab.deid.encode import encode as _encode
from dicomlab.deid.fast import rewrite_file
from dicomlab.deid.mapping import MapStore
from dicomlab.deid.rewrite import Keys, Outcome, Plan, describe, rewrite
from dicomlab.deid.table import OPTIONS, table
from dicomlab.errors import BurnedInAnnotationWarning, DeidentificationError, ValidationError

__all__ = ["Deidentifier"]

log = logging.getLogger(__name__)

Files = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
_NUMBERS = ("removed", "emptied", "replaced", "remapped", "cleaned", "kept", "private_removed")
_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_DATA_LE = b"\xe0\x7f\x10\x00"
_PREFIX = 64 * 1024  # where a header is looked for before the whole file is joined
_ALIASES = {"retain_longitudinal": "retain_longitudinal_modified_dates"}


class Deidentifier:
    """De-identifies DICOM data sets by PS3.15 Annex E (the Basic Application Level
    Confidentiality Profile and its options).

    Parameters
    ----------
    secret
        The key of everything (text or bytes, 16 characters at least): pseudonyms, new
        UIDs and date shifts are HMACs of it, and the map's originals are encrypted with
        a key derived from it. Keep it: the same secret gives the same results next
        time, and only it re-identifies.
    options
        PS3.15 options by name: ``retain_uids``, ``retain_device_identity``,
        ``retain_institution_identity``, ``retain_patient_characteristics``,
        ``retain_longitudinal_full_dates``, ``retain_longitudinal_modified_dates`` (alias
        ``retain_longitudinal``: every date of a patient moves back by the same 1 to
        ``max_shift_days`` days), ``clean_descriptors``, ``clean_structured_content``,
        ``clean_graphics``, ``retain_safe_private``.
    pseudonyms
        A table PatientID -> pseudonym (a DataFrame with those two columns, or a
        mapping); a patient not in it is refused. Without it, pseudonyms are derived
        from the secret (``DL`` and 12 hex digits).
    keep_private
        Private attributes to keep, as (private creator, element byte) pairs, e.g.
        ``[("SIEMENS CSA HEADER", 0x10)]``; every other private attribute is removed.
    map_dir
        The folder of the pseudonym map (default: ``deid-map`` in dicomlab's home).
    """

    def __init__(
        self,
        secret: str | bytes,
        options: Iterable[str] = (),
        *,
        pseudonyms: pd.DataFrame | Mapping[str, str] | None = None,
        keep_private: Iterable[tuple[str, int]] = (),
        map_dir: str | os.PathLike[str] | None = None,
        max_shift_days: int = 3650,
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ValidationError(
                "a de-identification secret needs 16 characters at least",
                hint="e.g. secrets.token_urlsafe(32), kept where only you can read it",
            )
        chosen = []
        for option in options:
            name = _ALIASES.get(option, option)
            if name not in OPTIONS:
                raise ValidationError(
                    f"unknown de-identification option {option!r}",
                    hint=f"one of {', '.join([*OPTIONS, *_ALIASES])}",
                )
            if name not in chosen:
                chosen.append(name)
        keep_private = list(keep_private)
        if "retain_safe_private" in chosen and not keep_private:
            raise ValidationError(
                "retain_safe_private needs keep_private=: the standard's list of safe "
                "private attributes (Table E.3.10-1) is not shipped, so name the ones to keep",
                hint='e.g. keep_private=[("SIEMENS CSA HEADER", 0x10)]',
            )
        dates = {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"}
        if dates <= set(chosen):
            raise ValidationError("retain dates either in full or modified, not both")
        if isinstance(max_shift_days, bool) or not 1 <= int(max_shift_days) <= 36500:
            raise ValidationError(f"max_shift_days={max_shift_days!r} must be 1 to 36500")
        self.options: tuple[str, ...] = tuple(chosen)
        self._keys = Keys(key, int(max_shift_days))
        self._table = _pseudonym_table(pseudonyms)
        self.keep_private = frozenset((str(c), int(e)) for c, e in keep_private)
        if map_dir is None:
            map_dir = home() / "deid-map"
        self.map = MapStore(Path(map_dir).expanduser(), key)
        profile = table()
        self._plan = Plan(
            self._keys,
            profile,
            self.options,
            self._pseudonym,
            self.keep_private,
            describe(self.options, profile.edition),
        )
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"Deidentifier(options={list(self.options)}, map_dir={str(self.map.folder)!r})"

    def new_uid(self, uid: str) -> str:
        """The UID ``uid`` becomes (a UID of the standard itself stays as it is)."""
        return uid if uid.startswith("1.2.840.10008.") else self._keys.uid(uid)

    def pseudonym(self, patient_id: str) -> str:
        """The pseudonym of a source PatientID (refused when a table lacks it)."""
        return self._pseudonym(patient_id)

    # -- one instance -----------------------------------------------------------------
    def _pseudonym(self, patient_id: str) -> str:
        if self._table is None:
            return self._keys.pseudonym(patient_id)
        try:
            return self._table[patient_id]
        except KeyError:
            raise DeidentificationError(
                "a patient that is not in the pseudonym table was refused",
                hint="add the patient to pseudonyms=, or leave it out to derive pseudonyms",
            ) from None

    def dataset(self, ds: Dataset, source: str | None = None) -> tuple[Dataset, dict[str, Any]]:
        """A de-identified copy of ``ds`` and its DEIDENTIFIED row; raises
        DeidentificationError when identifying text would survive."""
        out, row, _ = self._one(copy.deepcopy(ds), source, None)
        return out, row

    def encoded(self, data: bytes, source: str | None = None) -> tuple[bytes, dict[str, Any]]:
        """A whole DICOM file's bytes de-identified (the same transfer syntax).

        Only the header is parsed and written again: the pixel data (and what follows
        it) is copied as it came, unless the data set is deflated."""
        fast = self._fast(data, True, source)
        if fast is not None:
            return fast[0] + fast[1], fast[2]
        # pydicom's path: where a text of the patient survives, it says in which attribute
        fp = io.BytesIO(data)
        try:
            ds = dcmread(fp, stop_before_pixels=True)
        except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
            raise DeidentificationError(f"not a DICOM file that can be rewritten: {exc}") from None
        at = fp.tell()
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
        tail = data[at:]
        if tail and (syntax == _DEFLATED or not tail.startswith(_PIXEL_DATA_LE)):
            ds = dcmread(io.BytesIO(data))  # the pixel data is not where it can be kept
            tail = b""
        _, row, head = self._one(ds, source, None)
        return head + tail, row

    def encoded_parts(
        self, chunks: Iterable[bytes | memoryview], source: str | None = None
    ) -> tuple[list[bytes | memoryview], dict[str, Any]]:
        """:meth:`encoded` for a file that arrives in pieces (as a C-STORE does): the
        de-identified file as pieces to write one after the other. The pixel data is
        not copied where the header fits in the first 64 KiB."""
        pieces = [memoryview(c) for c in chunks]
        head: list[bytes] = []
        rest: list[memoryview] = []
        size = 0
        for piece in pieces:
            if size >= _PREFIX:
                rest.append(piece)
            elif size + len(piece) > _PREFIX:
                cut = _PREFIX - size
                head.append(bytes(piece[:cut]))
                rest.append(piece[cut:])
                size = _PREFIX
            else:
                head.append(bytes(piece))
                size += len(piece)
        prefix = b"".join(head)
        fast = self._fast(prefix, not rest, source)
        if fast is not None:
            header, tail, row = fast
            return [header, tail, *rest], row
        data, row = self.encoded(b"".join(pieces), source)
        return [data], row

    def _fast(
        self, data: bytes, whole: bool, source: str | None
    ) -> tuple[bytes, memoryview, dict[str, Any]] | None:
        """The byte rewriter's header, pixel data and row; ``None`` where pydicom's path
        is needed (see :mod:`dicomlab.deid.fast`), or to say where a text survived."""
        fast = rewrite_file(data, self._plan, whole)
        if fast is None or fast.survivors():
            return None
        self._remember(fast.outcome)
        row = self._row(fast.facts, fast.outcome, source, None)
        with self._lock:
            self._rows.append(row)
        return fast.head, fast.tail, row

    def _one(
        self, ds: Dataset, source: str | None, path: str | None
    ) -> tuple[Dataset, dict[str, Any], bytes]:
        """``ds`` rewritten in place, its row and its encoded file."""
        ds, outcome, identity = rewrite(ds, self._plan)
        encoded = _encode(ds)
        left = scan.residual(ds, identity, encoded)
        if left:
            raise DeidentificationError(
                "identifying text of the patient survived in "
                f"{', '.join(left[:5])}: the instance was refused",
                attributes=tuple(left),
                hint="add clean_descriptors, or remove the attribute before sending",
            )
        self._remember(outcome)
        row = self._row(ds, outcome, source, path)
        with self._lock:
            self._rows.append(row)
        return ds, row, encoded

    def _remember(self, outcome: Outcome) -> None:
        assert outcome.patient is not None
        original, pseudonym = outcome.patient
        self.map.add("patient", original, pseudonym, pseudonym)
        for old, new in outcome.uids.items():
            self.map.add("uid", old, new, pseudonym)
        if outcome.shift_days is not None:
            self.map.add("date_shift", str(outcome.shift_days), pseudonym, pseudonym)

    @staticmethod
    def _row(
        ds: Dataset | Mapping[str, str], outcome: Outcome, source: str | None, path: str | None
    ) -> dict[str, Any]:
        c = outcome.counts
        return DEIDENTIFIED.row(
            source=source,
            path=path,
            PatientID=str(ds.get("PatientID", "")),
            StudyInstanceUID=str(ds.get("StudyInstanceUID", "")),
            SeriesInstanceUID=str(ds.get("SeriesInstanceUID", "")),
            SOPInstanceUID=str(ds.get("SOPInstanceUID", "")),
            Modality=str(ds.get("Modality", "")),
            removed=c["removed"],
            emptied=c["emptied"],
            replaced=c["replaced"],
            remapped=c["remapped"],
            cleaned=c["cleaned"],
            kept=c["kept"],
            private_removed=c["private_removed"],
            burned_in_risk=scan.burned_in_risk(ds),
            status="ok",
        )

    # -- many -------------------------------------------------------------------------
    def apply(self, what: Files, out: str | os.PathLike[str]) -> pd.DataFrame:
        """De-identify files (a file, a folder searched recursively, or a list) into
        ``out`` as ``PSEUDONYM/STUDY/SERIES/SOP.dcm`` (each written whole under a
        temporary name); one DEIDENTIFIED row per file. A file that cannot be
        de-identified is written nowhere and its row says why."""
        target = Path(out)
        rows = []
        for path in _files(what):
            try:
                encoded, row = self.encoded(path.read_bytes(), str(path))
                dest = target / _safe(row["PatientID"]) / row["StudyInstanceUID"]
                dest = dest / row["SeriesInstanceUID"] / f"{row['SOPInstanceUID']}.dcm"
                _write(dest, encoded)
                row["path"] = str(dest)
            except (InvalidDicomError, DeidentificationError, OSError, ValueError) as exc:
                row = DEIDENTIFIED.row(source=str(path), status="failed", error=str(exc))
            rows.append(row)
        self.map.flush()
        df = DEIDENTIFIED.frame(rows)
        risky = df[df.burned_in_risk.isin(["yes", "possible"])]
        if len(risky):
            message = (
                f"{len(risky)} de-identified image(s) may show identifying text in their "
                "pixels (BurnedInAnnotation, or a modality that often carries it: "
                f"{', '.join(sorted(set(risky.Modality.dropna())))}); the header is clean, "
                "the pixels are not checked"
            )
            log.warning(message)
            warnings.warn(BurnedInAnnotationWarning(message), stacklevel=2)
        return df

    def outcomes(self) -> pd.DataFrame:
        """Every instance this Deidentifier has rewritten, one DEIDENTIFIED row each."""
        with self._lock:
            return DEIDENTIFIED.frame(list(self._rows))

    def report(self, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per study: instances, and how many attributes were removed, emptied, replaced,
        remapped, cleaned and kept; failures; the burned-in risk seen."""
        df = self.outcomes() if rows is None else rows
        ok = df[df.status == "ok"]
        per = ok.groupby(["PatientID", "StudyInstanceUID"], dropna=False)
        out = per[list(_NUMBERS)].sum()
        out.insert(0, "instances", per.size())
        out["burned_in_risk"] = per.burned_in_risk.agg(_worst)
        return out.reset_index()

    # -- back -------------------------------------------------------------------------
    def reidentify(self, values: pd.DataFrame | Iterable[str] | str) -> pd.DataFrame:
        """The originals of pseudonyms and new UIDs (for the secret's holder).

        ``values``: a pseudonym or UID, a list of them, or a DataFrame whose PatientID
        and UID columns are looked up. Returns ``kind``, ``replacement``, ``original``
        (``<NA>`` for a value the map does not hold). A different secret raises
        DeidentificationError."""
        if isinstance(values, pd.DataFrame):
            wanted: list[str] = []
            for col in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
                if col in values.columns:
                    wanted += [str(v) for v in values[col].dropna()]
        elif isinstance(values, str):
            wanted = [values]
        else:
            wanted = [str(v) for v in values]
        held = self.map.read()
        held = held[held.kind.isin(["patient", "uid"])].set_index("replacement")
        rows: list[dict[str, str | None]] = []
        for value in dict.fromkeys(wanted):
            kind: str | None = None
            original: str | None = None
            if value in held.index:
                kind = str(held.at[value, "kind"])
                original = self.map.decrypt(str(held.at[value, "original"]))
            rows.append({"kind": kind, "replacement": value, "original": original})
        return pd.DataFrame(rows, columns=["kind", "replacement", "original"]).astype("string")

    def flush(self) -> None:
        """Write the map's new entries now (done every 500 entries and by ``apply``)."""
        self.map.flush()


def _worst(risks: pd.Series) -> str:
    for level in ("yes", "possible"):
        if (risks == level).any():
            return level
    return "no"


def _pseudonym_table(table_: pd.DataFrame | Mapping[str, str] | None) -> dict[str, str] | None:
    if table_ is None:
        return None
    if isinstance(table_, pd.DataFrame):
        missing = {"PatientID", "pseudonym"} - set(table_.columns)
        if missing:
            raise ValidationError(f"the pseudonym table needs the columns {sorted(missing)}")
        pairs = dict(zip(table_.PatientID.astype(str), table_.pseudonym.astype(str), strict=True))
    else:
        pairs = {str(k): str(v) for k, v in table_.items()}
    if len(set(pairs.values())) != len(pairs):
        raise ValidationError("the pseudonym table gives two patients the same pseudonym")
    return pairs


def _files(what: Files) -> list[Path]:
    """The files of ``what``: a file, a folder (searched recursively) or a list of them."""
    entries = [what] if isinstance(what, str | os.PathLike) else list(what)
    out: list[Path] = []
    for entry in entries:
        root = Path(entry)
        if root.is_dir():
            out += sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            out.append(root)
    return out


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text) or "x"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
