"""The OHIF viewer: the prebuilt ``@ohif/app`` from the npm registry, unpacked into a
cache folder (never vendored), served at the root of a LocalPACS's web port with an
``app-config.js`` of our own that points at that port's own DICOMweb root.

``install()`` (``make viewer``, ``dicomlab viewer install``) runs ``npm pack`` for the
pinned version (npm checks the registry's integrity hash), checks the package's name
and version, and unpacks its ``dist/`` with tarfile's ``data`` filter into
``$XDG_CACHE_HOME/dicomlab/ohif/<version>/dist``, atomically.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from dicomlab.errors import ConfigError

__all__ = ["OHIF_VERSION", "app_config", "dist", "install"]

log = logging.getLogger(__name__)

OHIF_VERSION = "3.13.2"
_PACKAGE = "@ohif/app"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dicomlab" / "ohif"


def _dist_path() -> Path:
    override = os.environ.get("DICOMLAB_OHIF_DIST")
    if override:
        return Path(override)
    return cache_root() / OHIF_VERSION / "dist"


def dist() -> Path | None:
    """The viewer's folder when it is installed (it holds index.html), else None."""
    path = _dist_path()
    return path if (path / "index.html").is_file() else None


def require() -> Path:
    found = dist()
    if found is None:
        raise ConfigError(
            f"the OHIF viewer ({_PACKAGE} {OHIF_VERSION}) is not installed in {_dist_path()}",
            hint="run `make viewer` or `dicomlab viewer install` (npm and its registry)",
        )
    return found


def install(force: bool = False) -> Path:
    """Download and unpack the pinned viewer (a no-op when it is there)."""
    target = cache_root() / OHIF_VERSION
    if dist() is not None and not force and not os.environ.get("DICOMLAB_OHIF_DIST"):
        return target / "dist"
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError("npm is not installed", hint="apt-get install npm (Debian), then retry")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        done = subprocess.run(
            [npm, "pack", f"{_PACKAGE}@{OHIF_VERSION}", "--silent", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigError(
                f"npm pack {_PACKAGE}@{OHIF_VERSION} failed: {done.stderr.strip()[-500:]}"
            )
        tarball = next(Path(tmp).glob("*.tgz"))
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarball) as tar:
            tar.extractall(unpacked, filter="data")
        meta = json.loads((unpacked / "package" / "package.json").read_text())
        if meta.get("name") != _PACKAGE or meta.get("version") != OHIF_VERSION:
            raise ConfigError(
                f"npm gave {meta.get('name')} {meta.get('version')}, not {_PACKAGE} {OHIF_VERSION}"
            )
        staged = Path(tmp) / "staged"
        staged.mkdir()
        (unpacked / "package" / "dist").rename(staged / "dist")
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    log.info("OHIF viewer %s installed in %s", OHIF_VERSION, target)
    return target / "dist"


def app_config(dicomweb_path: str = "/dicom-web") -> str:
    """The viewer's configuration: one DICOMweb data source on the page's own origin
    (so no CORS and no request to any other host), nothing else enabled."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomlab",
        "configuration": {
            "friendlyName": "dicomlab LocalPACS",
            "name": "dicomlab",
            "qidoSupportsIncludeField": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "defaultDataSourceName": "dicomlab",
        "dataSources": [source],
    }
    root = json.dumps(dicomweb_path)
    return (
        "/* written by dicomlab: the LocalPACS's own DICOMweb root, same origin */\n"
        f"window.config = {json.dumps(config, indent=1)};\n"
        "(function (c) {\n"
        f"  var root = window.location.origin + {root};\n"
        "  var s = c.dataSources[0].configuration;\n"
        "  s.qidoRoot = root; s.wadoRoot = root; s.wadoUriRoot = root;\n"
        "})(window.config);\n"
    )
