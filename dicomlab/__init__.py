"""dicomlab: DICOM networking as a first-class citizen of the Jupyter notebook.

>>> import dicomlab as dl
>>> node = dl.Node("pacs", ae_title="PACS", host="127.0.0.1", port=4242)
>>> node.address
'PACS@127.0.0.1:4242'
"""

from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING as _TYPE_CHECKING

from pynetdicom import _config as _pynetdicom_config

from dicomlab import log, synth, tls
from dicomlab.cohort import Cohort
from dicomlab.core.dicomweb import DICOMweb
from dicomlab.core.findlimit import FindLimit
from dicomlab.core.nodebook import NodeBook, home
from dicomlab.core.nodes import TLS, LocalIdentity, Node
from dicomlab.core.query import Query
from dicomlab.core.status import decode_status
from dicomlab.deid import Deidentifier
from dicomlab.errors import (
    AssociationAborted,
    AssociationRejected,
    BurnedInAnnotationWarning,
    ConfigError,
    ConnectionRefused,
    ConnectTimeout,
    DeidentificationError,
    DicomlabError,
    DICOMwebError,
    DimseError,
    DimseTimeout,
    NetworkError,
    NoAcceptedContext,
    NodeBookConflict,
    NodeBookError,
    OperationRefused,
    PartialResultWarning,
    ResolveError,
    TLSError,
    ValidationError,
)
from dicomlab.front import (
    check_move,
    commit,
    echo,
    find,
    find_many,
    jobs,
    reconcile,
    resume,
    retrieve,
    store,
)
from dicomlab.log.reader import read_log
from dicomlab.net.echo import EchoResult
from dicomlab.server.gate import PendingLimits
from dicomlab.server.localpacs import LocalPACS
from dicomlab.server.web.view import view
from dicomlab.transfer.checkmove import MoveCheck
from dicomlab.transfer.job import Job

if _TYPE_CHECKING:
    from dicomlab import plot
    from dicomlab.derived import key_objects

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AssociationAborted",
    "AssociationRejected",
    "BurnedInAnnotationWarning",
    "Cohort",
    "ConfigError",
    "ConnectTimeout",
    "ConnectionRefused",
    "DICOMweb",
    "DICOMwebError",
    "DeidentificationError",
    "Deidentifier",
    "DicomlabError",
    "DimseError",
    "DimseTimeout",
    "EchoResult",
    "FindLimit",
    "Job",
    "LocalIdentity",
    "LocalPACS",
    "MoveCheck",
    "NetworkError",
    "NoAcceptedContext",
    "Node",
    "NodeBook",
    "NodeBookConflict",
    "NodeBookError",
    "OperationRefused",
    "PartialResultWarning",
    "PendingLimits",
    "Query",
    "ResolveError",
    "TLSError",
    "ValidationError",
    "__version__",
    "check_move",
    "commit",
    "decode_status",
    "echo",
    "find",
    "find_many",
    "home",
    "jobs",
    "key_objects",
    "log",
    "plot",
    "read_log",
    "reconcile",
    "resume",
    "retrieve",
    "store",
    "synth",
    "tls",
    "view",
    "widgets",
]


def __getattr__(name: str) -> object:
    # ``dl.widgets`` imports ipywidgets, ``dl.plot`` matplotlib, ``dl.key_objects``
    # highdicom, only when first used (``import dicomlab`` in a worker process, a
    # ``dicomlab serve`` or a notebook's first cell pays for none of them)
    import importlib

    if name in ("widgets", "plot"):
        return importlib.import_module(f"dicomlab.{name}")
    if name == "key_objects":
        return importlib.import_module("dicomlab.derived").key_objects
    raise AttributeError(f"module 'dicomlab' has no attribute {name!r}")


_logging.getLogger(__name__).addHandler(_logging.NullHandler())
# pynetdicom logs identifiers (patient names, IDs) at INFO/DEBUG: keep it to warnings, so
# that a notebook's logging.basicConfig(level=DEBUG) never prints patient data.
# Raise it back explicitly (logging.getLogger("pynetdicom").setLevel(...)) to debug.
_logging.getLogger("pynetdicom").setLevel(_logging.WARNING)
# ...and never formats them: it renders every C-FIND identifier for its debug log even
# when nothing logs it (a third of a LocalPACS's time answering a 2,000-step worklist).
_pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
_pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
