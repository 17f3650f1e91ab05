"""The fast path, private to :mod:`dicomlab.net.dimse` and :mod:`dicomlab.net.transport`:
event-driven reactors for pynetdicom associations, and the direct operations on them.

The one place dicomlab changes pynetdicom's threads.

pynetdicom 3.0 runs two polling loops per association:

* the DUL thread checks the socket and the queue of outgoing primitives, and
  sleeps 1 ms whenever a pass found nothing to do;
* the association thread sleeps 1 ms at the top of every pass, then looks for an
  incoming DIMSE message to serve.

Each request/response pair therefore waits on the order of a millisecond or two in
sleeps on each side; with large instances over loopback that is most of the time
(measured: plain pynetdicom ~180-290 instances/s where dcmtk does ~700/s). Its
reactor pause is also racy (pynetdicom issue #875: a response can be taken by the
reactor and lost), which :func:`dicomlab.net.transport.quiesce` works around at a
cost of a few milliseconds per message.

:func:`install` (:mod:`.reactor`) adapts one association before it starts, without touching any
class or global state:

* the DUL's idle pass blocks in ``select()`` on the peer's socket and a wake-up
  socket that is poked whenever a primitive is queued for sending (so both
  incoming PDUs and outgoing requests are handled at once, and an idle
  association costs no CPU);
* each DIMSE message is encoded into its P-DATA-TF PDUs by the sending thread and
  handed to the DUL as one block written with one ``sendall`` (pynetdicom queues
  every 16 KB PDU separately, ~70 us of hand-offs each); blocks are capped at
  4 MB so a large file is still streamed;
* socket reads ask for 256 KB at a time and serve PDUs from that buffer, instead of
  pynetdicom's 4 KB pieces and two reads per PDU;
* P-DATA-TF PDUs that only continue a data set being received are written into
  it directly (no PDU objects, no state-machine pass); the PDU that ends a message
  and every other PDU go through pynetdicom;
* the association's reactor waits on an event set when a DIMSE message or a
  release/abort arrives, instead of sleeping, and pauses without the race: it only
  reports itself paused while it is blocked, and checks the pause request again
  after every wake-up, before it touches the message queue.

One pynetdicom option is set for the whole process when this module is imported:
``_config.STORE_SEND_CHUNKED_DATASET`` (a C-STORE of a file path streams the file's
bytes as stored instead of decoding and re-encoding the dataset; dicomlab only sends
a path when the peer accepted the file's own transfer syntax).

Plain C-STORE messages go further (:mod:`.store`): the DUL thread
serves a whole incoming C-STORE-RQ itself, and ``dl.store`` parks the DUL thread
(:class:`.state.Park`, checked at the top of each transport check)
while it writes requests and reads responses on the socket from its own thread.

C-FIND, C-GET and C-MOVE responses are read the same way (:mod:`.qr`). Each
association's state is one :class:`.state.FastState`. Everything else (state machine,
PDU codec, other DIMSE services, handlers) is pynetdicom's own.

Every private pynetdicom member this relies on is listed in :mod:`.privates`;
if one is missing the fast path stays off.
The behaviour is covered by the interoperability tests (dcmtk and Orthanc, both
roles), which all run through this module. Set ``DICOMLAB_FASTPATH=0`` to turn it off
(then pynetdicom runs as shipped, with :func:`quiesce` guarding the race).
"""

from dicomlab.net._fast.channel import Reply
from dicomlab.net._fast.qr import Querier, Request, prepare
from dicomlab.net._fast.reactor import enabled, install, is_ending, is_installed
from dicomlab.net._fast.reads import shutdown_and_close
from dicomlab.net._fast.store import FileRead, Sender, read_file

__all__ = [
    "FileRead",
    "Querier",
    "Reply",
    "Request",
    "Sender",
    "enabled",
    "install",
    "is_ending",
    "is_installed",
    "prepare",
    "read_file",
    "shutdown_and_close",
]
