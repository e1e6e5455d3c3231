# SPDX-License-Identifier: Apache-2.0
"""Release check of trustpool's distributions (``tox -e dist``).

From the git checkout this file lives in (pbr computes the version from
git, so a clean clone works and an unpacked tarball does not):

1. build the sdist and the wheel with ``python -m build`` into a
   temporary directory (the wheel is built from the sdist, as pip would);
2. ``twine check --strict`` both;
3. the wheel holds the ``trustpool`` packages and its dist-info only (no
   tests/, benchmarks/, ...), and every module the sdist ships under
   ``trustpool/``; the sdist holds no ``.venv`` or ``.tox``;
4. the wheel's Requires-Dist are exactly pyproject.toml's
   ``dependencies`` plus its ``optional-dependencies`` behind their extra
   markers (no test requirements leak in);
5. the wheel and Nova, pinned by tests/requirements/nova-34-constraints.txt,
   are installed into a fresh venv, where every entry point of the groups
   trustpool declares is loaded from the installed copy (and used the way
   its consumer uses it), the declared and installed entry points match,
   ``oslo-config-generator --namespace trustpool`` runs, and the console
   script ``trustpool --help`` runs.

Prints a short summary; exits 1 with a message naming the failed check.
``--keep`` keeps the temporary directory for a look afterwards.
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = ROOT / "tests" / "requirements" / "nova-34-constraints.txt"
DIST_NAME = "trustpool"
# The entry point groups trustpool declares; console_scripts is run, not
# loaded.
GROUPS = (
    "oslo.config.opts",
    "trustpool.attestation.backends",
    "nova.api.extra_spec_validators",
    "trustpool.filters",
)


class CheckFailed(Exception):
    pass


def run(cmd, *, what, cwd=None, env=None):
    """Run ``cmd``; on failure raise with its output, else return stdout."""
    proc = subprocess.run(  # noqa: S603 - our own argv
        [str(c) for c in cmd], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise CheckFailed(
            f"{what} failed (exit {proc.returncode}): "
            f"{' '.join(str(c) for c in cmd)}\n{proc.stdout[-6000:]}")
    return proc.stdout


def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


# -- 1. build -----------------------------------------------------------

def build(outdir: Path) -> tuple[Path, Path]:
    try:
        subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],  # noqa: S603,S607
                       check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise CheckFailed(
            f"{ROOT} is not a git checkout with a commit: pbr computes the "
            "version from git, run this from a clone") from e
    # build's isolated environments (pbr, setuptools; one for the sdist,
    # one for the wheel built from it) made by uv when tox's dist env has
    # it: seconds where pip takes most of a minute; the backend is the same
    installer = (["--installer", "uv"]
                 if importlib.util.find_spec("uv") else [])
    run([sys.executable, "-m", "build", *installer, "--outdir", outdir,
         ROOT], what="python -m build")
    sdists = sorted(outdir.glob("*.tar.gz"))
    wheels = sorted(outdir.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise CheckFailed(
            f"expected one sdist and one wheel in {outdir}, got "
            f"{[p.name for p in outdir.iterdir()]}")
    return sdists[0], wheels[0]


# -- 3. contents --------------------------------------------------------

def check_contents(sdist: Path, wheel: Path) -> tuple[int, str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    dist_info = {n.split("/", 1)[0] for n in names
                 if n.split("/", 1)[0].endswith(".dist-info")}
    if len(dist_info) != 1:
        raise CheckFailed(f"wheel has dist-info directories {dist_info}")
    (dist_info,) = dist_info
    stray = sorted(n for n in names
                   if not n.startswith(("trustpool/", dist_info + "/")))
    if stray:
        raise CheckFailed(
            "the wheel holds files outside trustpool/ and its dist-info "
            "(packaging must include trustpool* only):\n  "
            + "\n  ".join(stray[:30]))

    with tarfile.open(sdist) as tf:
        members = [m.name.split("/", 1)[1] for m in tf.getmembers()
                   if "/" in m.name]
    junk = sorted(m for m in members
                  if m.split("/", 1)[0] in (".venv", ".tox"))
    if junk:
        raise CheckFailed(f"the sdist holds local environments: {junk}")
    shipped = {m for m in members
               if m.startswith("trustpool/") and m.endswith(".py")}
    missing = sorted(shipped - set(names))
    if missing:
        raise CheckFailed(
            "modules in the sdist are missing from the wheel (a package "
            "without __init__.py?):\n  " + "\n  ".join(missing))
    modules = sum(1 for n in names if n.endswith(".py"))
    return modules, dist_info


# -- 4. requirements ----------------------------------------------------

def _key(req: Requirement, marker: Marker | None):
    return (canonicalize_name(req.name), tuple(sorted(req.extras)),
            str(req.specifier), str(marker) if marker else "")


def _with_extra(req: Requirement, extra: str) -> Marker:
    if req.marker is None:
        return Marker(f'extra == "{extra}"')
    return Marker(f'({req.marker}) and extra == "{extra}"')


def check_requirements(wheel: Path) -> tuple[int, int]:
    project = pyproject()
    expected = {}
    for spec in project.get("dependencies", []):
        req = Requirement(spec)
        expected[_key(req, req.marker)] = spec
    extras = project.get("optional-dependencies", {})
    for extra, specs in extras.items():
        for spec in specs:
            req = Requirement(spec)
            expected[_key(req, _with_extra(req, extra))] = \
                f"{spec} [extra {extra}]"

    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist()
                        if n.endswith(".dist-info/METADATA")]
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
    actual = {}
    for spec in meta.get_all("Requires-Dist") or []:
        req = Requirement(spec)
        actual[_key(req, req.marker)] = spec

    problems = []
    for key in sorted(set(actual) - set(expected)):
        problems.append(f"  in the wheel, not in pyproject.toml: "
                        f"{actual[key]}")
    for key in sorted(set(expected) - set(actual)):
        problems.append(f"  in pyproject.toml, not in the wheel: "
                        f"{expected[key]}")
    provided = set(meta.get_all("Provides-Extra") or [])
    if provided != set(extras):
        problems.append(f"  Provides-Extra {sorted(provided)} != "
                        f"optional-dependencies {sorted(extras)}")
    if problems:
        raise CheckFailed("the wheel's Requires-Dist differ from "
                          "pyproject.toml:\n" + "\n".join(problems))
    return len(project.get("dependencies", [])), len(extras)


# -- 5. install and load ------------------------------------------------

# Runs in the fresh venv with -I (no cwd, no user site, no PYTHONPATH), so
# trustpool comes from the installed wheel and never from the checkout.
LOADER = textwrap.dedent("""
    import json, sys, traceback
    from importlib.metadata import distribution

    groups = set(json.loads(sys.argv[1]))
    dist = distribution("trustpool")
    out = {"version": dist.version, "loaded": [], "errors": [],
           "console_scripts": []}
    import trustpool
    out["trustpool_file"] = trustpool.__file__

    def use(group, obj):
        # Load it the way its consumer does.
        if group == "oslo.config.opts":
            pairs = list(obj())
            n = sum(len(list(opts)) for _, opts in pairs)
            return f"{len(pairs)} groups, {n} options"
        if group == "nova.api.extra_spec_validators":
            validators = obj.register()
            return ", ".join(v.name for v in validators)
        if group == "trustpool.filters":
            from nova.scheduler import filters
            if not issubclass(obj, filters.BaseHostFilter):
                raise TypeError(f"{obj!r} is not a BaseHostFilter")
            return "a nova BaseHostFilter"
        if group == "trustpool.attestation.backends":
            if not isinstance(obj, type):
                raise TypeError(f"{obj!r} is not a class")
            return "a class"
        return type(obj).__name__

    for ep in dist.entry_points:
        if ep.group == "console_scripts":
            out["console_scripts"].append(ep.name)
            continue
        entry = {"group": ep.group, "name": ep.name, "value": ep.value}
        if ep.group not in groups:
            out["errors"].append(dict(entry, error="undeclared group"))
            continue
        try:
            entry["use"] = use(ep.group, ep.load())
        except BaseException:
            out["errors"].append(dict(entry, error=traceback.format_exc()))
        else:
            out["loaded"].append(entry)
    print(json.dumps(out))
""")


def declared_entry_points() -> set[tuple[str, str]]:
    project = pyproject()
    return {(group, name)
            for group, eps in project.get("entry-points", {}).items()
            for name in eps}


def check_installed(wheel: Path, tmp: Path) -> tuple[dict, str]:
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], what="python -m venv")
    bindir = venv / "bin"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV",
                        "PIP_USER", "PYTHONSTARTUP")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    run([bindir / "python", "-m", "pip", "install", "-q",
         "--disable-pip-version-check", "-c", CONSTRAINTS, wheel, "nova"],
        what="installing the wheel with nova (nova-34 constraints)",
        cwd=tmp, env=env)

    declared = declared_entry_points()
    out = run([bindir / "python", "-I", "-c", LOADER,
               json.dumps(sorted({g for g, _ in declared}))],
              what="loading the entry points in the venv", cwd=tmp, env=env)
    result = json.loads(out.strip().splitlines()[-1])
    problems = []
    if not Path(result["trustpool_file"]).resolve().is_relative_to(
            venv.resolve()):
        problems.append(f"trustpool was imported from "
                        f"{result['trustpool_file']}, not from the venv")
    for err in result["errors"]:
        problems.append(f"{err['group']}: {err['name']} = {err['value']}:"
                        f"\n{textwrap.indent(err['error'], '    ')}")
    loaded = {(e["group"], e["name"]) for e in result["loaded"]}
    failed = {(e["group"], e["name"]) for e in result["errors"]}
    missing = declared - loaded - failed
    if missing:
        problems.append(f"declared in pyproject.toml, not installed: "
                        f"{sorted(missing)}")
    extra = loaded - declared
    if extra:
        problems.append(f"installed, not declared in pyproject.toml: "
                        f"{sorted(extra)}")
    if set(GROUPS) != {g for g, _ in declared}:
        problems.append(f"pyproject.toml declares the groups "
                        f"{sorted({g for g, _ in declared})}; this check "
                        f"knows {sorted(GROUPS)}: update GROUPS")
    scripts = set(pyproject().get("scripts", {}))
    if set(result["console_scripts"]) != scripts:
        problems.append(f"console scripts {result['console_scripts']} != "
                        f"declared {sorted(scripts)}")
    if problems:
        raise CheckFailed("entry points in the installed wheel:\n"
                          + "\n".join(problems))

    sample = run([bindir / "oslo-config-generator", "--namespace",
                  "trustpool"], what="oslo-config-generator --namespace "
                  "trustpool in the venv", cwd=tmp, env=env)
    if "[trusted_computing]" not in sample:
        raise CheckFailed("oslo-config-generator --namespace trustpool "
                          "printed no [trusted_computing] section")
    for script in sorted(scripts):
        help_text = run([bindir / script, "--help"],
                        what=f"{script} --help in the venv", cwd=tmp,
                        env=env)
        if "usage:" not in help_text:
            raise CheckFailed(f"{script} --help printed no usage:\n"
                              f"{help_text}")
    nova = run([bindir / "python", "-I", "-c",
                "from importlib.metadata import version; "
                "print(version('nova'))"], what="nova version", env=env)
    return result, nova.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="trustpool-dist-"))
    step = "start"
    try:
        step = "build"
        sdist, wheel = build(tmp / "dist")
        print(f"built    {sdist.name}, {wheel.name}")
        step = "twine check"
        run([sys.executable, "-m", "twine", "check", "--strict", sdist,
             wheel], what="twine check --strict")
        print("twine    check --strict passed for both")
        step = "wheel contents"
        modules, dist_info = check_contents(sdist, wheel)
        print(f"wheel    trustpool/ ({modules} modules, all the sdist "
              f"ships) and {dist_info} only")
        step = "requirements"
        ndeps, nextras = check_requirements(wheel)
        print(f"requires Requires-Dist = pyproject.toml's {ndeps} "
              f"dependencies + {nextras} extra(s), nothing else")
        step = "install"
        result, nova = check_installed(wheel, tmp)
        print(f"venv     wheel {result['version']} + nova {nova} "
              f"(nova-34 constraints) in a fresh venv")
        for e in result["loaded"]:
            print(f"  loaded {e['group']}: {e['name']} = {e['value']}"
                  f" ({e['use']})")
        print("  ran    oslo-config-generator --namespace trustpool, "
              + ", ".join(f"{s} --help"
                          for s in result["console_scripts"]))
    except CheckFailed as e:
        print(f"\ndist check FAILED at {step}: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("dist check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
