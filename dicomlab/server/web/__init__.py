"""LocalPACS on the web: a DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) over the archive,
the OHIF viewer at the root of its port, zip downloads, web users and share links.

Layers: :mod:`.dicomjson`, :mod:`.multipart` and :mod:`.zipstream` are conversions;
:mod:`.access` holds users and tokens; :mod:`.app` maps HTTP onto the archive (Starlette);
:mod:`.runner` owns the uvicorn server thread a LocalPACS starts and stops.
"""
