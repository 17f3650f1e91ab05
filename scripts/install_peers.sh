#!/usr/bin/env bash
# Installs the real peers the interoperability and browser tests talk to: Debian's dcmtk,
# orthanc and chromium (the browser Playwright drives; never `playwright install`), and
# dicom3tools (dciodvfy, the standard's IOD validator the synthetic studies are checked with),
# and orthanc-dicomweb (Orthanc's DICOMweb plugin, the DICOMweb client's real peer), and curl
# (the out-of-process HTTP client of the web benchmarks).
# As root it uses apt-get; otherwise it says what is missing and how to install it.
# In CI (CI=true) a peer that cannot be installed is an error.
set -u
need=()
command -v storescp >/dev/null 2>&1 || need+=(dcmtk)
command -v Orthanc  >/dev/null 2>&1 || need+=(orthanc)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v curl     >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -eq 0 ]; then
  echo "peers: dcmtk, orthanc (with its DICOMweb plugin), chromium and dicom3tools are installed"
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "peers: installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=600 \
    && apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null \
    && { echo "peers: installed ${need[*]}"; exit 0; }
  echo "peers: apt-get install ${need[*]} failed" >&2
else
  echo "peers: not root (or no apt-get): cannot install ${need[*]}." >&2
  echo "peers: run 'sudo apt-get install -y ${need[*]}' to enable the interoperability tests." >&2
fi
if [ "${CI:-}" = "true" ]; then
  echo "peers: CI=true and peers are missing: failing" >&2
  exit 1
fi
echo "peers: continuing; tests needing ${need[*]} will be skipped (they fail under CI=true)" >&2
exit 0
