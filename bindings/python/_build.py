"""A minimal PEP 517 build backend for this pure-Python package.

`pip install --no-build-isolation bindings/python` has to work offline in a fresh
virtual environment, which has pip and setuptools but not `wheel` (so setuptools cannot
build a wheel there). A pure-Python package needs nothing but a zip file with the right
names in it, so it is written here, with the standard library alone.
"""

import base64
import hashlib
import os
import tarfile
import zipfile

NAME = "tandem"
VERSION = "0.1.0"
HERE = os.path.dirname(os.path.abspath(__file__))
METADATA = """Metadata-Version: 2.1
Name: {name}
Version: {version}
Summary: Tandem, an embeddable offline-first sync engine: Python binding over libtandem (ctypes)
Requires-Python: >=3.9
""".format(name=NAME, version=VERSION)
WHEEL = """Wheel-Version: 1.0
Generator: tandem-build
Root-Is-Purelib: true
Tag: py3-none-any
"""


def _package_files():
    root = os.path.join(HERE, NAME)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for f in sorted(filenames):
            if f.endswith(".py"):
                full = os.path.join(dirpath, f)
                yield full, os.path.relpath(full, HERE).replace(os.sep, "/")


def _digest(data):
    h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "sha256=" + h


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist_info = "{}-{}.dist-info".format(NAME, VERSION)
    filename = "{}-{}-py3-none-any.whl".format(NAME, VERSION)
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w",
                         zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data):
            z.writestr(arcname, data)
            record.append("{},{},{}".format(arcname, _digest(data), len(data)))
        for full, arcname in _package_files():
            with open(full, "rb") as f:
                add(arcname, f.read())
        add(dist_info + "/METADATA", METADATA.encode())
        add(dist_info + "/WHEEL", WHEEL.encode())
        record.append(dist_info + "/RECORD,,")
        z.writestr(dist_info + "/RECORD", "\n".join(record) + "\n")
    return filename


def build_sdist(sdist_directory, config_settings=None):
    base = "{}-{}".format(NAME, VERSION)
    filename = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, filename), "w:gz") as t:
        for name in ("pyproject.toml", "_build.py"):
            t.add(os.path.join(HERE, name), arcname=base + "/" + name)
        for full, arcname in _package_files():
            t.add(full, arcname=base + "/" + arcname)
        pkg_info = os.path.join(sdist_directory, "PKG-INFO")
        with open(pkg_info, "w") as f:
            f.write(METADATA)
        t.add(pkg_info, arcname=base + "/PKG-INFO")
        os.remove(pkg_info)
    return filename
