"""DICOMweb as a client: QIDO-RS queries, WADO-RS retrieves and STOW-RS stores, over
dicomweb-client."""
