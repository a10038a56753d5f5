"""Downloads through the ordinary package clients only: `npm pack` and Debian's apt, into the cache.

apt runs with its lists, cache and sources redirected into the cache (`-o Dir::State::Lists=…` and friends), so
the system's apt state is never read for sources nor written; `.deb` files are read with `dpkg-deb --fsys-tarfile`,
never installed.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from mgte_hf.hashing import sha256_file


logger = logging.getLogger(__name__)

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SUITE = "bookworm"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_HELPER = "/usr/lib/apt/apt-helper"
# The Translation-<lang> indexes fetched with every update (the DDTP languages of SOURCES.md): one update serves
# every Debian source, and a later update never drops the translations another source needs.
DEBIAN_LANGUAGES = ("en", "de", "fr", "it", "da", "sk", "ja", "pt_BR", "uk", "ko", "pl", "ru", "es", "cs", "pt",
                    "zh_CN")


def run_command(cmd: list[str], what: str, *, cwd: Path | None = None, capture: bool = True) -> str:
    """Run `cmd`; on failure raise a RuntimeError that says what failed and how to get around it."""
    if shutil.which(cmd[0]) is None and not Path(cmd[0]).exists():
        raise RuntimeError(f"{what} needs `{cmd[0]}`, which is not installed here (a Debian/Ubuntu machine with "
                           "apt and npm has it), or point MGTE_DATA / --cache at a cache built elsewhere.")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=capture, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-800:]
        raise RuntimeError(f"{what} failed (`{' '.join(cmd[:3])} …` exited {proc.returncode}): {tail}\n"
                           "Check that the package registry is reachable, then run the build again.")
    return proc.stdout


def npm_pack(spec: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """`npm pack SPEC` into `dest` (once); returns the tarball, checked against `expected_sha256` when given."""
    name, _, version = spec.rpartition("@")
    tarball = dest / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not (tarball.is_file() and (expected_sha256 is None or sha256_file(tarball) == expected_sha256)):
        dest.mkdir(parents=True, exist_ok=True)
        logger.info("npm pack %s", spec)
        run_command(["npm", "pack", spec, "--silent", "--pack-destination", str(dest)], f"npm pack {spec}")
    if expected_sha256 is not None and sha256_file(tarball) != expected_sha256:
        raise RuntimeError(f"{tarball.name} does not have the expected sha256 {expected_sha256}.")
    return tarball


class DebianArchive:
    """A private apt setup in `root` (sources, lists, cache) for one Debian suite; the system's apt is untouched.

    Args:
        root: folder for the apt state (created).
        mirror: Debian mirror URL.
        suite: the release (its `main` component is used).
        keyring: the archive keyring that signs the release.
    """

    def __init__(self, root: Path, mirror: str = DEBIAN_MIRROR, suite: str = DEBIAN_SUITE,
                 keyring: str = DEBIAN_KEYRING):
        self.root = root
        self.mirror, self.suite, self.keyring = mirror, suite, keyring
        (root / "lists" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        (root / "sources.list").write_text(f"deb [signed-by={keyring}] {mirror} {suite} main\n")

    def options(self, languages: tuple[str, ...] = ()) -> list[str]:
        opts = {
            "Dir::State::Lists": self.root / "lists",
            "Dir::Cache": self.root / "cache",
            "Dir::Etc::SourceList": self.root / "sources.list",
            "Dir::Etc::SourceParts": self.root / "sources.list.d",  # absent: no other repositories
            "Acquire::Languages": ",".join(languages) if languages else "none",
        }
        if os.geteuid() == 0:
            opts["APT::Sandbox::User"] = "root"  # the _apt user may not read a cache under /root
        return [x for k, v in opts.items() for x in ("-o", f"{k}={v}")]

    def update(self, languages: tuple[str, ...] = DEBIAN_LANGUAGES) -> None:
        """`apt-get update` into the private lists, with the Translation-<lang> indexes of `languages`."""
        if not Path(self.keyring).is_file():
            raise RuntimeError(f"the Debian archive keyring {self.keyring} is missing; install the "
                               "debian-archive-keyring package.")
        logger.info("apt-get update (%s, languages %s)", self.suite, ",".join(languages) or "none")
        run_command(["apt-get", "update", "-q", *self.options(languages)], "apt-get update")

    def translation_file(self, lang: str) -> Path:
        """The downloaded (compressed) Translation-<lang> index."""
        prefix = f"_dists_{self.suite}_main_i18n_Translation-{lang.replace('_', '%5f')}"
        # exact language: Translation-pt must not match Translation-pt%5fBR
        found = sorted(p for p in (self.root / "lists").iterdir()
                       if re.search(re.escape(prefix) + r"(\.[a-z0-9]+)?$", p.name))
        if not found:
            raise FileNotFoundError(f"no Translation-{lang} index in {self.root / 'lists'}; run the update with "
                                    f"that language (Debian may not translate into {lang!r}).")
        return found[0]

    def package_info(self, package: str) -> dict[str, str]:
        """Version, size, sha256 and pool file name of `package` from the private lists."""
        out = run_command(["apt-cache", *self.options(), "show", "--no-all-versions", package],
                          f"apt-cache show {package}")
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and not line.startswith(" "))
        return {"version": fields["Version"], "sha256": fields["SHA256"], "bytes": int(fields["Size"]),
                "filename": fields["Filename"]}

    def download(self, package: str, dest: Path) -> tuple[Path, dict]:
        """`apt-get download PACKAGE` into `dest` (once; apt checks the signed sha256); returns the .deb and info."""
        info = self.package_info(package)
        deb = dest / Path(info["filename"]).name
        if not (deb.is_file() and sha256_file(deb) == info["sha256"]):
            dest.mkdir(parents=True, exist_ok=True)
            logger.info("apt-get download %s %s", package, info["version"])
            run_command(["apt-get", "download", "-q", *self.options(), f"{package}={info['version']}"],
                        f"apt-get download {package}", cwd=dest)
        if sha256_file(deb) != info["sha256"]:
            raise RuntimeError(f"{deb.name} does not match the sha256 of the signed Debian index.")
        return deb, info

    def has_lists(self, languages: tuple[str, ...] = DEBIAN_LANGUAGES) -> bool:
        try:
            for lang in languages:
                self.translation_file(lang)
        except FileNotFoundError:
            return False
        return any((self.root / "lists").glob(f"*_dists_{self.suite}_main_binary-*_Packages*"))

    def ensure_lists(self, refresh: bool = False) -> dict:
        """Update the private lists unless they are complete (or when `refresh`); returns the release's identity."""
        if refresh or not self.has_lists():
            self.update(DEBIAN_LANGUAGES)
        release = next((self.root / "lists").glob(f"*_dists_{self.suite}_InRelease"))
        date = next((line[6:] for line in release.read_text(errors="replace").splitlines()
                     if line.startswith("Date: ")), "")
        return {"suite": self.suite, "mirror": self.mirror, "release_date": date,
                "release_sha256": sha256_file(release)}


def apt_cat_file(path: Path) -> str:
    """Decompress an apt index (lz4, xz, gz…) with apt's own helper; returns its text."""
    return run_command([APT_HELPER, "cat-file", str(path)], f"apt-helper cat-file {path.name}")


def deb_files(deb: Path, wanted: Callable[[str], bool]) -> dict[str, bytes]:
    """The files of a .deb whose path (`usr/share/…`, no leading `./`) satisfies `wanted`, read in memory.

    `dpkg-deb --fsys-tarfile` streams the package's file system; nothing is installed or written to disk.
    """
    if shutil.which("dpkg-deb") is None:
        raise RuntimeError(f"reading {deb.name} needs `dpkg-deb` (Debian/Ubuntu).")
    proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb could not read {deb}: {proc.stderr.decode(errors='replace')[-500:]}")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and wanted(name):
                out[name] = tar.extractfile(member).read()
    return out
