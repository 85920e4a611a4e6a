"""Model archives unpack inside their directory or not at all."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from openmaas.domain.errors import BadRequest
from openmaas.runtimes.archives import model_root, unpack


def _tar(path: Path, members: list[tarfile.TarInfo], payload: bytes = b"{}") -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for member in members:
            data = io.BytesIO(payload) if member.isfile() else None
            if member.isfile():
                member.size = len(payload)
            bundle.addfile(member, data)
    return path


def test_a_good_archive_unpacks_once_with_its_top_folder(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "m.tar.gz", [tarfile.TarInfo("model/config.json")])
    target = unpack(archive, tmp_path / "m.tar.gz.d")
    assert model_root(target, ("config.json",)) == target / "model"
    (target / "marker").write_text("kept")
    assert unpack(archive, target) == target and (target / "marker").exists()
    zipped = tmp_path / "m.zip"
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr("config.json", "{}")
    assert (unpack(zipped, tmp_path / "z") / "config.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["../evil.json", "/etc/evil.json", "a/../../evil.json"])
def test_names_that_escape_are_refused(tmp_path: Path, name: str) -> None:
    archive = _tar(tmp_path / "bad.tar.gz", [tarfile.TarInfo(name)])
    with pytest.raises(BadRequest) as error:
        unpack(archive, tmp_path / "out")
    assert error.value.code == "unsafe_archive"
    zipped = tmp_path / "bad.zip"
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(BadRequest):
        unpack(zipped, tmp_path / "out")
    assert not (tmp_path / "evil.json").exists() and not (tmp_path / "out").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("config.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(BadRequest):
        unpack(_tar(tmp_path / "link.tar.gz", [link]), tmp_path / "out")
    zipped = tmp_path / "link.zip"
    info = zipfile.ZipInfo("config.json")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(zipped, "w") as bundle:
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(BadRequest):
        unpack(zipped, tmp_path / "out2")


def test_garbage_is_not_an_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "x.tar.gz"
    garbage.write_bytes(b"not an archive")
    with pytest.raises(BadRequest) as error:
        unpack(garbage, tmp_path / "out")
    assert error.value.code == "invalid_artifact"
