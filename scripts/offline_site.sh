#!/usr/bin/env bash
# Run the project on a machine without network access whose Python already has torch (say, a GPU
# node of a cluster), from a checkout and a folder of wheels, installing nothing into its Python.
#
#   on a machine with the package registry:
#     bash scripts/offline_site.sh download WHEELS      # the wheels of what a torch image often lacks
#   on the machine without it, from the checkout:
#     bash scripts/offline_site.sh install WHEELS SITE  # wheels into SITE, plus this project's entry points
#     export PYTHONPATH=SITE:$PWD                       # then python -m methods.tdm.train ... as usual
#
# `download` takes the packages in $PACKAGES (default: the diffusers and peft versions this project is
# tested with, and ftfy and wcwidth), without their dependencies: the machine is assumed to have torch,
# transformers, accelerate and safetensors; name more in $PACKAGES if it does not.
# `install` unpacks every wheel of WHEELS into SITE (pip --target, no index, no dependencies) and writes
# a tdm_harness .dist-info there with the entry points of pyproject.toml, so that the small worlds are
# found by name (methods/common/worlds.py) although the project itself is on PYTHONPATH, not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
case "${1:-}" in
  download)
    WHEELS="${2:?usage: offline_site.sh download WHEELS}"
    PACKAGES="${PACKAGES:-diffusers==0.42.1 peft==0.21.2 ftfy wcwidth}"
    mkdir -p "$WHEELS"
    # shellcheck disable=SC2086
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WHEELS" $PACKAGES
    ls "$WHEELS"
    ;;
  install)
    WHEELS="${2:?usage: offline_site.sh install WHEELS SITE}"
    SITE="${3:?usage: offline_site.sh install WHEELS SITE}"
    mkdir -p "$SITE"
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl
    "$PY" - "$SITE" <<'EOF'
import re
import sys
from pathlib import Path

text = Path("pyproject.toml").read_text()
try:
    import tomllib  # Python 3.11+
    project = tomllib.loads(text)["project"]
except ImportError:  # 3.10: the three things needed, read from the file's own simple layout
    project = {key: re.search(rf'^{key} = "([^"]+)"', text, re.M).group(1) for key in ("name", "version")}
    project["entry-points"] = {
        group: dict(re.findall(r'^([\w.-]+) = "([^"]+)"', body, re.M))
        for group, body in re.findall(r'^\[project\.entry-points\."([^"]+)"\]\n((?:[^\[\n].*\n?)*)', text, re.M)}
site = Path(sys.argv[1])
info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
info.mkdir(exist_ok=True)
(info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
groups = project.get("entry-points", {})
(info / "entry_points.txt").write_text("".join(
    f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
    for group, entries in groups.items()))
print(f"wrote {info} ({', '.join(f'{g}: {len(e)}' for g, e in groups.items())})")
EOF
    echo "now: export PYTHONPATH=$SITE:$PWD"
    ;;
  *)
    echo "usage: bash scripts/offline_site.sh download WHEELS | install WHEELS SITE" >&2
    exit 2
    ;;
esac
