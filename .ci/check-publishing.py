#!/usr/bin/env python3
"""Checks of .ci/run for the crates as published (P6) and the MSRV (P9), from the manifests.

P6: every workspace crate is either publishable or `publish = false` (only the test-support
and bench crates); each publishable one has a README of its own (`readme = "README.md"`, the
file present), docs.rs metadata documenting all features, `include` limited to its sources,
examples and README, a description, licence and repository, and no source file that includes
or names a file outside the crate (`include_str!`, `include_bytes!`, `#[path]`).
`cargo publish --dry-run --workspace` (run by .ci/run after this) then packages and builds them.

P9: the MSRV is stated once: the workspace's `rust-version`, which every member inherits; no
clippy configuration sets another `msrv` and nothing allows `clippy::incompatible_msrv` (so
clippy, run with -D warnings, refuses a newer standard library API); and every locked dependency
built on this platform declares a rust-version within it (so that Rust 1.88 can build the lock).
"""

import json
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOT_PUBLISHED = {"mta-sts-matrix", "mta-sts-benches"}
ALLOWED_INCLUDE = {"/src", "/examples", "/README.md"}
INCLUDES = re.compile(r'(?:include_str!|include_bytes!)\s*\(\s*"([^"]+)"|#\[path\s*=\s*"([^"]+)"\]')

problems = []


def problem(text):
    problems.append(text)


def version(text):
    parts = [int(p) for p in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def cargo_metadata(*args):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", *args],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
msrv = workspace["workspace"]["package"].get("rust-version")
if msrv is None:
    problem("Cargo.toml: [workspace.package] has no rust-version")
    msrv = "0"

meta = cargo_metadata("--no-deps")
members = {p["id"] for p in meta["packages"]}
published = 0
for package in meta["packages"]:
    name = package["name"]
    manifest_path = pathlib.Path(package["manifest_path"])
    crate_dir = manifest_path.parent
    manifest = tomllib.loads(manifest_path.read_text())
    pkg = manifest["package"]
    where = manifest_path.relative_to(ROOT)

    if pkg.get("rust-version") != {"workspace": True}:
        problem(f"{where}: rust-version must be `rust-version.workspace = true` (stated once)")

    if package["publish"] == []:
        if name not in NOT_PUBLISHED:
            problem(f"{where}: publish = false, but {name} is meant for the registry")
        continue
    if name in NOT_PUBLISHED:
        problem(f"{where}: {name} is test support or benches: it needs publish = false")
        continue
    published += 1

    readme = package.get("readme")
    if readme is None or (crate_dir / readme).resolve() != (crate_dir / "README.md").resolve():
        problem(f"{where}: readme must be the crate's own README.md, not {readme!r}")
    elif not (crate_dir / "README.md").is_file():
        problem(f"{where}: README.md is missing")
    for key in ("description", "license", "repository"):
        if not package.get(key):
            problem(f"{where}: no {key}")
    docs_rs = ((package.get("metadata") or {}).get("docs") or {}).get("rs") or {}
    if docs_rs.get("all-features") is not True:
        problem(f"{where}: [package.metadata.docs.rs] all-features = true is missing")
    include = pkg.get("include")
    if include is None or not set(include) <= ALLOWED_INCLUDE or "/src" not in include:
        problem(f"{where}: include must list /src and README.md (and /examples), not {include!r}")
    if "/README.md" not in (include or []):
        problem(f"{where}: include must list /README.md")

    for directory in ("src", "examples"):
        if directory == "examples" and "/examples" not in (include or []):
            continue
        for source in sorted((crate_dir / directory).rglob("*.rs")):
            for match in INCLUDES.finditer(source.read_text()):
                target = (source.parent / (match.group(1) or match.group(2))).resolve()
                if crate_dir.resolve() not in target.parents:
                    problem(
                        f"{source.relative_to(ROOT)}: includes {match.group(1) or match.group(2)!r}, outside the crate, "
                        "so the published crate would not build"
                    )

if published == 0:
    problem("no publishable crate found")

for config in list(ROOT.rglob("clippy.toml")) + list(ROOT.rglob(".clippy.toml")):
    if "target" in config.relative_to(ROOT).parts:
        continue
    if "msrv" in tomllib.loads(config.read_text()):
        problem(f"{config.relative_to(ROOT)}: sets msrv (the workspace's rust-version is the one)")
for source in ROOT.glob("**/*.rs"):
    parts = source.relative_to(ROOT).parts
    if "target" in parts or parts[0].startswith("."):
        continue
    if "incompatible_msrv" in source.read_text():
        problem(f"{source.relative_to(ROOT)}: names clippy::incompatible_msrv (the MSRV lint must stay on)")

host = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
host = re.search(r"^host: (\S+)", host, re.M).group(1)
for directory in (ROOT, ROOT / "fuzz"):
    full = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features",
         "--filter-platform", host],
        cwd=directory, check=True, capture_output=True, text=True,
    ).stdout)
    used = {node["id"] for node in full["resolve"]["nodes"]}
    for package in full["packages"]:
        wanted = package.get("rust_version")
        if package["id"] in used and wanted and version(wanted) > version(msrv):
            problem(
                f"{directory.relative_to(ROOT) or '.'}/Cargo.lock: {package['name']} "
                f"{package['version']} needs Rust {wanted}, above the MSRV {msrv} "
                f"(cargo update -p {package['name']} picks one within it: resolver 3)"
            )

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{published} publishable crates: own README, docs.rs metadata, sources only; "
      f"MSRV {msrv} stated once, every locked dependency within it")
