"""Model directories uploaded as archives (.zip, .tar.gz, .tgz, .tar), unpacked safely.

An archive comes from whoever registers a version, so nothing in it may land outside the
target directory: absolute names, ``..`` segments, links and device files are refused,
and the unpacked size and member count are bounded (archive bombs).
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath

from openmaas.domain.errors import BadRequest
from openmaas.runtimes.base import invalid_artifact

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")
MAX_UNPACKED_BYTES = 64 * 1024**3
MAX_MEMBERS = 10_000


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _checked_name(name: str) -> PurePosixPath:
    member = PurePosixPath(name.replace("\\", "/"))
    if member.is_absolute() or ".." in member.parts or name.startswith(("/", "\\")):
        raise BadRequest(f"archive member {name!r} escapes its directory", code="unsafe_archive")
    if member.parts and ":" in member.parts[0]:
        raise BadRequest(f"archive member {name!r} names a drive", code="unsafe_archive")
    return member


def _check_totals(count: int, size: int) -> None:
    if count > MAX_MEMBERS:
        raise BadRequest(f"the archive has more than {MAX_MEMBERS} files", code="unsafe_archive")
    if size > MAX_UNPACKED_BYTES:
        raise BadRequest("the archive unpacks to more than 64 GiB", code="unsafe_archive")


def _unpack_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        infos = bundle.infolist()
        _check_totals(len(infos), sum(info.file_size for info in infos))
        for info in infos:
            member = _checked_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadRequest(
                    f"archive member {info.filename!r} is a link", code="unsafe_archive"
                )
            destination = target.joinpath(*member.parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)


def _unpack_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as bundle:
        members = bundle.getmembers()
        _check_totals(len(members), sum(m.size for m in members))
        for member in members:
            _checked_name(member.name)
            if not (member.isfile() or member.isdir()):
                raise BadRequest(
                    f"archive member {member.name!r} is a link or a device", code="unsafe_archive"
                )
        # The "data" filter repeats the checks above inside tarfile itself.
        bundle.extractall(target, members=members, filter="data")


def unpack(archive: Path, target: Path) -> Path:
    """Unpack ``archive`` into ``target`` (once) and return ``target``.

    Unpacks into a fresh sibling first and renames it into place, so a reader never sees a
    half-written directory and two concurrent loads do not collide.
    """
    if target.is_dir():
        return target
    scratch = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    scratch.mkdir(parents=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _unpack_zip(archive, scratch)
        else:
            _unpack_tar(archive, scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise invalid_artifact("not a readable archive", exc) from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def model_root(directory: Path, markers: tuple[str, ...]) -> Path:
    """The directory holding the model: the archive's root, or its one top-level folder."""
    if any((directory / marker).is_file() for marker in markers):
        return directory
    children = [child for child in directory.iterdir() if not child.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir():
        return model_root(children[0], markers)
    raise BadRequest(
        f"the model directory has none of {', '.join(markers)}", code="invalid_artifact"
    )
