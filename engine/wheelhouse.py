"""A wheelhouse: a folder of the wheels the engine's environment needs, so that the plugin's Engine
set-up works offline (``python -m engine wheelhouse --out DIR --flavour cpu|cuda|directml``, or
scripts/build_wheelhouse.sh).

On a connected machine the wheels come from the package index (``pip download``, for another
platform with ``--platform win_amd64 --python-version 3.12``). ``--from-installed`` writes them from
the distributions installed in this environment instead (no network: a copy of a working
environment for machines of the same platform); a requirement not installed here is listed with the
command that adds its wheel. The engine itself is not in the wheelhouse: the plugin zip carries it.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from engine.errors import EngineError

ENGINE_DISTRIBUTION = "rs-ai-toolbox"
FLAVOURS = ("cpu", "cuda", "directml")  # the pyproject extras that choose the onnxruntime package
NOT_REPACKED = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}  # written by the installer, not the wheel


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def engine_requirements(flavour: str) -> list[str]:
    """The engine's requirements with the onnxruntime flavour ``flavour`` (pyproject's extras)."""
    from packaging.requirements import Requirement

    if flavour not in FLAVOURS:
        raise EngineError(f"flavour must be one of {', '.join(FLAVOURS)}; got {flavour!r}")
    chosen = []
    for line in importlib.metadata.requires(ENGINE_DISTRIBUTION) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": flavour}):
            requirement.marker = None
            chosen.append(str(requirement))
    return chosen


def download(out: Path, flavour: str, platform: str | None = None, python_version: str | None = None) -> list[str]:
    """``pip download`` the engine's requirements into ``out`` (binary wheels only when for another platform)."""
    command = [sys.executable, "-m", "pip", "download", "--dest", str(out), *engine_requirements(flavour)]
    if platform or python_version:
        command += ["--only-binary", ":all:", *(["--platform", platform] if platform else []),
                    *(["--python-version", python_version] if python_version else [])]
    if subprocess.run(command).returncode != 0:
        raise EngineError("pip download failed (see its output above): check the connection or the package index")
    return sorted(path.name for path in out.glob("*.whl"))


def installed_closure(requirements: list[str]) -> tuple[list[importlib.metadata.Distribution], list[str]]:
    """The installed distributions that ``requirements`` need, transitively, and those not installed."""
    from packaging.requirements import Requirement

    found: dict[str, importlib.metadata.Distribution] = {}
    missing, seen = [], set()
    pending = [(Requirement(line), "") for line in requirements]
    while pending:
        requirement, context_extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": context_extra}):
            continue
        name = canonical(requirement.name)
        try:
            dist = found.get(name) or importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        found[name] = dist
        for extra in ["", *requirement.extras]:
            if (name, extra) not in seen:
                seen.add((name, extra))
                pending += [(Requirement(line), extra) for line in dist.requires or []]
    return list(found.values()), sorted(set(missing))


def wheel_tag(dist: importlib.metadata.Distribution) -> str:
    """The compressed tag of the wheel the distribution came from (its WHEEL file's Tag lines)."""
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags:
        raise EngineError(f"{dist.metadata['Name']} was not installed from a wheel (no WHEEL file): it cannot be "
                          "written back as one; download its wheel into the wheelhouse instead")
    parts = [sorted({tag.split("-")[i] for tag in tags}) for i in range(3)]
    return "-".join(".".join(part) for part in parts)


def repack(dist: importlib.metadata.Distribution, out: Path) -> Path:
    """Write an installed distribution back as a wheel (its files under site-packages, a new RECORD)."""
    name, version = dist.metadata["Name"], dist.version
    files = dist.files
    if files is None:
        raise EngineError(f"{name} {version} has no RECORD (installed by the system's package manager): download "
                          f"its wheel into the wheelhouse instead (pip download --no-deps {name}=={version})")
    dist_info = f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    wheel = out / f"{re.sub(r'[-_.]+', '_', name)}-{version}-{wheel_tag(dist)}.whl"
    partial = wheel.with_name(f".{wheel.name}.partial")
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in files:
            parts = Path(file).parts
            if parts[0] == ".." or "__pycache__" in parts or file.suffix == ".pyc":
                continue  # scripts outside site-packages are made again by the installer; caches are not shipped
            if parts[0].endswith(".dist-info") and (parts[-1] in NOT_REPACKED or len(parts) < 2):
                continue
            arcname = "/".join((dist_info, *parts[1:])) if parts[0].endswith(".dist-info") else file.as_posix()
            data = Path(dist.locate_file(file)).read_bytes()
            archive.writestr(arcname, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            writer.writerow([arcname, f"sha256={digest}", len(data)])
        writer.writerow([f"{dist_info}/RECORD", "", ""])
        archive.writestr(f"{dist_info}/RECORD", record.getvalue())
    partial.replace(wheel)
    return wheel


def wheel_requirements(wheel: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) from a wheel's METADATA."""
    from email.parser import Parser

    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
    return metadata["Name"], metadata["Version"], metadata.get_all("Requires-Dist") or []


def from_installed(out: Path, flavour: str, find_links: Path | None = None) -> tuple[list[str], list[str]]:
    """Wheels of the installed distributions the engine needs with ``flavour``, plus the wheels in
    ``find_links`` of what is not installed here (and their own needs); and what is still missing."""
    from packaging.requirements import Requirement

    dists, missing = installed_closure(engine_requirements(flavour))
    available = {canonical(wheel_requirements(w)[0]): w for w in sorted((find_links or out).glob("*.whl"))}
    still_missing, copied = [], []
    for line in missing:
        requirement = Requirement(line)
        wheel = available.get(canonical(requirement.name))
        if wheel is None or wheel_requirements(wheel)[1] not in requirement.specifier:
            still_missing.append(line)
            continue
        if wheel.parent.resolve() != out.resolve():
            (out / wheel.name).write_bytes(wheel.read_bytes())
        copied.append(wheel.name)
        needs, needs_missing = installed_closure(wheel_requirements(wheel)[2])
        dists += needs
        still_missing += needs_missing
    unique = {canonical(dist.metadata["Name"]): dist for dist in dists}
    written = [repack(dist, out).name for name, dist in unique.items() if name != ENGINE_DISTRIBUTION]
    return sorted(written + copied), still_missing


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="the wheelhouse folder (created)")
    parser.add_argument("--flavour", default="cpu", choices=FLAVOURS,
                        help="onnxruntime flavour: cpu (and CoreML on macOS), cuda (NVIDIA), directml (Windows GPUs)")
    parser.add_argument("--from-installed", dest="from_installed", action="store_true",
                        help="write the wheels from this environment's installed distributions (no network)")
    parser.add_argument("--find-links", dest="find_links", type=Path,
                        help="--from-installed: a folder of wheels for what is not installed here (e.g. another "
                             "onnxruntime flavour)")
    parser.add_argument("--platform", help="pip platform tag of the target machine, e.g. win_amd64, macosx_11_0_arm64")
    parser.add_argument("--python-version", dest="python_version", help="the target's Python, e.g. 3.12")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if args.from_installed:
            written, missing = from_installed(args.out, args.flavour, args.find_links)
        else:
            written, missing = download(args.out, args.flavour, args.platform, args.python_version), []
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} wheels in {args.out}")
    if missing:
        print("not installed here, add their wheels to the wheelhouse (pip download --no-deps -d "
              f"{args.out} ...): {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
