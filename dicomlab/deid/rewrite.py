"""One data set de-identified: PS3.15 Table E.1-1's action on every attribute, in every
nested sequence (pure, given the keyed functions of :class:`Keys`).

``U`` gives the same new UID for the same UID and secret (``2.25.`` and 128 bits of an
HMAC), so series, frames of reference and references (ReferencedSOPInstanceUID in a
SEG, an SR or a KOS) still link. The patient's ID and name become their pseudonym;
under Retain Longitudinal Temporal Information with Modified Dates every date of a
patient moves by the same number of days. Private attributes are removed unless
kept by (creator, element). The markers the standard asks for are set:
PatientIdentityRemoved, DeidentificationMethod and its code sequence (CID 7050),
LongitudinalTemporalInformationModified.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomlab.deid.table import BASIC_CODE, OPTIONS, Table

__all__ = ["Identity", "Keys", "Outcome", "rewrite"]

_PATIENT_ID, _PATIENT_NAME = 0x00100020, 0x00100010
_MARKERS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)
_TEXT_VRS = frozenset({"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UT"})
_DUMMY = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000D",
    "PN": "ANONYMIZED",
    "CS": "ANONYMIZED",
    "AE": "ANONYMIZED",
    "UR": "",
}
_NUMBERS = frozenset({"DS", "IS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"})


@dataclass(frozen=True, slots=True)
class Keys:
    """The keyed functions of one secret (pure: the same secret, the same answers)."""

    secret: bytes = field(repr=False)
    max_shift_days: int = 3650

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """A new UID for ``uid``: ``2.25.`` and 128 bits (PS3.5 B.2)."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        digest = self._digest("patient", patient_id)
        return "DL" + digest[:6].hex().upper()

    def shift_days(self, patient_id: str) -> int:
        """Days every date of this patient moves back (1 to ``max_shift_days``)."""
        digest = self._digest("shift", patient_id)
        return 1 + int.from_bytes(digest[:4], "big") % self.max_shift_days


@dataclass(frozen=True, slots=True)
class Identity:
    """What identified the source patient, for the residual scan (kept in memory only)."""

    patient_id: str
    texts: tuple[str, ...]  # name parts, IDs, the birth date

    @classmethod
    def of(cls, ds: Dataset) -> Identity:
        values = {k: [str(v) for v in _values(ds.get(k))] for k in _NAMES + _IDS}
        others = [
            str(v)
            for item in ds.get("OtherPatientIDsSequence") or []
            for v in _values(item.get("PatientID"))
        ]
        return cls.of_values(values, others, str(ds.get("PatientID", "") or ""))

    @classmethod
    def of_values(
        cls, values: dict[str, list[str]], other_ids: list[str], patient_id: str | None = None
    ) -> Identity:
        """From the patient's attributes as texts (keyword -> values) and the IDs of
        OtherPatientIDsSequence."""
        texts: list[str] = []
        for keyword in _NAMES:
            for value in values.get(keyword, []):
                texts += [p for p in re.split(r"[\^=\s,]+", value) if len(p) >= 3]
        for keyword in _IDS:
            texts += [v for v in values.get(keyword, []) if len(v) >= 3]
        texts += [v for v in other_ids if len(v) >= 3]
        unique = sorted(set(texts), key=lambda t: (-len(t), t))
        if patient_id is None:
            patient_id = (values.get("PatientID") or [""])[0]
        return cls(patient_id, tuple(unique))


_NAMES = ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName")
_IDS = ("PatientID", "OtherPatientIDs", "PatientBirthDate", "MedicalRecordLocator")


def _many(value: object) -> bool:
    """A multi-valued element's value (a list, or pydicom's MultiValue; a PersonName,
    though iterable, is one value)."""
    return isinstance(value, list | tuple | MultiValue)


def _values(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if _many(value):
        return [v for v in value if v not in (None, "")]  # type: ignore[attr-defined]
    return [value]


@dataclass
class Outcome:
    """What was done to one data set."""

    counts: Counter[str] = field(default_factory=Counter)
    uids: dict[str, str] = field(default_factory=dict)  # original -> new
    patient: tuple[str, str] | None = None  # (original ID, pseudonym)
    shift_days: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The settings of a rewrite."""

    keys: Keys
    table: Table
    options: tuple[str, ...]
    pseudonym_of: Callable[[str], str]
    keep_private: frozenset[tuple[str, int]] = frozenset()
    method: str = ""
    _actions: dict[int, str | None] = field(default_factory=dict, compare=False, repr=False)
    _encoded_markers: dict[tuple[bool, bool], tuple[tuple[int, bytes], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def content_action(self, scheme: str, code: str) -> str | None:
        """The action on a content item of this concept name (Table E.3.4-1)."""
        rule = self.table.content.get((scheme, code))
        return None if rule is None else rule.action(self.options)

    def action(self, tag: int) -> str | None:
        """The action on a standard attribute under this plan's options (``None``: not in
        the table); looked up once per tag."""
        try:
            return self._actions[tag]
        except KeyError:
            rule = self.table.rule(tag)
            found = self._actions[tag] = None if rule is None else rule.action(self.options)
            return found


def rewrite(ds: Dataset, plan: Plan) -> tuple[Dataset, Outcome, Identity]:
    """``ds`` de-identified in place (and returned), what was done, and who it was."""
    identity = Identity.of(ds)
    out = Outcome()
    original_id = identity.patient_id
    pseudonym = plan.pseudonym_of(original_id)
    out.patient = (original_id, pseudonym)
    shift = None
    if "retain_longitudinal_modified_dates" in plan.options:
        shift = plan.keys.shift_days(original_id)
        out.shift_days = shift
    scrub = _scrubber(identity)
    _walk(ds, plan, out, shift, scrub)
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym
    out.counts["replaced"] += 2
    _mark(ds, plan, shift)
    if getattr(ds, "file_meta", None) is not None:
        meta: FileMetaDataset = ds.file_meta
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformation",
            "PrivateInformationCreatorUID",
        ):
            if keyword in meta:
                del meta[keyword]
    return ds, out, identity


def _scrubber(identity: Identity) -> Callable[[str], str]:
    """Replaces every identifying text of the patient inside a free text (pure)."""
    if not identity.texts:
        return lambda text: text
    pattern = _pattern(identity.texts)
    return lambda text: pattern.sub("XXXX", text)


@lru_cache(maxsize=256)
def _pattern(texts: tuple[str, ...]) -> re.Pattern[str]:
    """One patient's texts as one case-blind pattern (compiled once per patient)."""
    return re.compile("|".join(re.escape(t) for t in texts), re.IGNORECASE)


def _walk(
    ds: Dataset, plan: Plan, out: Outcome, shift: int | None, scrub: Callable[[str], str]
) -> None:
    # Elements are looked at by tag, and decoded only where an action needs their value:
    # pydicom keeps the others raw, and writes them back as they came.
    tags: list[BaseTag] = list(ds.keys())
    creators = _private_creators(ds, tags)
    for tag in tags:
        if tag.group == 0x0002 or int(tag) in _MARKERS:
            continue
        if tag.is_private:
            _private(ds, tag, plan, out, creators)
            continue
        action = plan.action(int(tag))
        if action is None:  # not in the table: kept, its sequences cleaned
            out.counts["kept"] += 1
            if _vr(ds, tag) == "SQ":
                _items(ds[tag], plan, out, shift, scrub)
            continue
        if int(tag) in (_PATIENT_ID, _PATIENT_NAME):
            continue  # the pseudonym, set after
        if action == "X":
            del ds[tag]
            out.counts["removed"] += 1
            continue
        if action == "K" and _vr(ds, tag) != "SQ":
            out.counts["kept"] += 1
            continue
        _act(ds, ds[tag], action, plan, out, shift, scrub)


def _vr(ds: Dataset, tag: BaseTag) -> str:
    """An element's VR without decoding its value (implicit VR: the dictionary's)."""
    raw = ds.get_item(tag)
    vr = getattr(raw, "VR", None)
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _items(
    elem: DataElement, plan: Plan, out: Outcome, shift: int | None, scrub: Callable[[str], str]
) -> None:
    kept = []
    for item in elem.value or []:
        if _content(item, plan, out, shift, scrub):
            _walk(item, plan, out, shift, scrub)
            kept.append(item)
    if len(kept) != len(elem.value or []):
        elem.value = Sequence(kept)


_CONTENT_VALUE = {
    "TEXT": "TextValue",
    "PNAME": "PersonName",
    "DATE": "Date",
    "TIME": "Time",
    "DATETIME": "DateTime",
    "UIDREF": "UID",
}
"""Where a content item of each value type holds its value (PS3.3 C.17.3)."""


def _content(
    item: Dataset, plan: Plan, out: Outcome, shift: int | None, scrub: Callable[[str], str]
) -> bool:
    """An SR content item whose concept name is in Table E.3.4-1 gets that row's action
    on its value; False when the item is to be removed (X)."""
    if "ValueType" not in item or not item.get("ConceptNameCodeSequence"):
        return True
    concept = item.ConceptNameCodeSequence[0]
    action = plan.content_action(
        str(concept.get("CodingSchemeDesignator", "")), str(concept.get("CodeValue", ""))
    )
    if action is None or action == "K":
        return True
    if action == "X":
        out.counts["removed"] += 1
        return False
    keyword = _CONTENT_VALUE.get(str(item.ValueType))
    if keyword is None or keyword not in item:
        return True  # references and codes: their UIDs are remapped as anywhere else
    _act(item, item[keyword], action, plan, out, shift, scrub)
    return True


def _act(
    ds: Dataset,
    elem: DataElement,
    action: str,
    plan: Plan,
    out: Outcome,
    shift: int | None,
    scrub: Callable[[str], str],
) -> None:
    vr = elem.VR
    if action == "X":
        del ds[elem.tag]
        out.counts["removed"] += 1
    elif action == "Z":
        elem.value = Sequence([]) if vr == "SQ" else None
        out.counts["emptied"] += 1
    elif action == "D":
        if vr == "SQ":
            _items(elem, plan, out, shift, scrub)
        elif vr == "UI":
            elem.value = _remap(elem.value, plan.keys, out)
        else:
            elem.value = _dummy(vr)
        out.counts["replaced"] += 1
    elif action == "U":
        if vr == "UI" and elem.value:
            elem.value = _remap(elem.value, plan.keys, out)
            out.counts["remapped"] += 1
        elif vr == "SQ":
            _items(elem, plan, out, shift, scrub)
    elif action == "C":
        _clean(elem, plan, out, shift, scrub)
        out.counts["cleaned"] += 1
    else:  # K
        if vr == "SQ":
            _items(elem, plan, out, shift, scrub)
        out.counts["kept"] += 1


def _clean(
    elem: DataElement, plan: Plan, out: Outcome, shift: int | None, scrub: Callable[[str], str]
) -> None:
    """C: dates moved by the patient's shift; free text with the patient's names, IDs and
    birth date replaced; sequences cleaned item by item."""
    vr = elem.VR
    if vr == "SQ":
        _items(elem, plan, out, shift, scrub)
    elif vr in ("DA", "DT") and elem.value:
        elem.value = _shifted(elem.value, vr, shift) if shift else elem.value
    elif vr in _TEXT_VRS and elem.value:
        if elem.VM > 1:
            elem.value = [scrub(str(v)) for v in elem.value]
        else:
            elem.value = scrub(str(elem.value))


def _shifted(value: object, vr: str, days: int) -> object:
    def one(text: str) -> str:
        text = str(text)
        if len(text) < 8 or not text[:8].isdigit():
            return text
        try:
            moved = date(int(text[:4]), int(text[4:6]), int(text[6:8])) - timedelta(days=days)
        except ValueError:
            return text
        return moved.strftime("%Y%m%d") + text[8:]

    if _many(value):
        return [one(str(v)) for v in value]  # type: ignore[attr-defined]
    return one(str(value))


def _remap(value: object, keys: Keys, out: Outcome) -> object:
    def one(uid: str) -> str:
        uid = str(uid)
        if uid.startswith("1.2.840.10008."):  # a UID of the standard (a class, a syntax)
            return uid
        new = out.uids.get(uid)
        if new is None:
            new = out.uids[uid] = keys.uid(uid)
        return new

    if _many(value):
        return [one(str(v)) for v in value]  # type: ignore[attr-defined]
    return one(str(value))


def _dummy(vr: str) -> object:
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _NUMBERS:
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    return "ANONYMIZED"


def _private_creators(ds: Dataset, tags: list[BaseTag]) -> dict[tuple[int, int], str]:
    """(group, block) -> private creator of the private blocks of ``ds``."""
    found: dict[tuple[int, int], str] = {}
    for tag in tags:
        if tag.is_private and 0x0010 <= tag.element <= 0x00FF:
            found[(tag.group, tag.element)] = str(ds[tag].value).strip()
    return found


def _private(
    ds: Dataset,
    tag: BaseTag,
    plan: Plan,
    out: Outcome,
    creators: dict[tuple[int, int], str],
) -> None:
    if 0x0010 <= tag.element <= 0x00FF:  # a creator: kept while any of its block is
        block = (tag.group, tag.element)
        keeps = any(c == creators.get(block) for c, _ in plan.keep_private)
        if not keeps:
            del ds[tag]
            out.counts["private_removed"] += 1
        return
    creator = creators.get((tag.group, tag.element >> 8), "")
    if (creator, tag.element & 0xFF) in plan.keep_private:
        out.counts["kept"] += 1
        return
    del ds[tag]
    out.counts["private_removed"] += 1
    out.counts["removed"] += 1


def _mark(ds: Dataset, plan: Plan, shift: int | None) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = plan.method[:64]
    codes = [BASIC_CODE, *(OPTIONS[o] for o in plan.options)]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if "retain_longitudinal_full_dates" in plan.options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif shift is not None:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def describe(options: Iterable[str], edition: str) -> str:
    """DeidentificationMethod's text (pure)."""
    named = ", ".join(OPTIONS[o][1].removesuffix(" Option") for o in options)
    return f"dicomlab, PS3.15 {edition} Basic Profile" + (f"; {named}" if named else "")
