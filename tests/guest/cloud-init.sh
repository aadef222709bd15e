#!/usr/bin/env bash
# Unpack Debian's cloud-init package for the seed tests, without installing it.
#
#   tests/guest/cloud-init.sh [OUT_DIR]
#
# OUT_DIR defaults to ${VMAN_CLOUD_INIT_DIR:-$HOME/.cache/vman/cloud-init}. On
# success the script prints OUT_DIR (and nothing else) on stdout, so a test can do
#   CI_DIR=$(tests/guest/cloud-init.sh)
#   PYTHONPATH=$CI_DIR/python /usr/bin/python3 -m cloudinit.cmd.main schema --config-file user-data
# Diagnostics go to stderr.
#
# Installing cloud-init on the host would enable its systemd units, which
# reconfigure the machine at the next boot; so the package is fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` instead. Its Python
# dependencies (python3-yaml, python3-jsonschema, …) are ordinary Debian
# packages that scripts/setup installs; they work only with Debian's own
# interpreter, /usr/bin/python3, not another python3 earlier on PATH.
#
# Artefacts in OUT_DIR:
#   python/          cloud-init's Python package (the `cloudinit` module)
#   cloud-init.info  key=value: package and version
#
# Skipped when OUT_DIR/.stamp matches (a hash of this file). Concurrent callers
# serialise on OUT_DIR/.lock.
set -euo pipefail

log() { printf '[cloud-init.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=tests/guest/lib.sh
. "$(dirname "$SCRIPT")/lib.sh"
OUT=${1:-${VMAN_CLOUD_INIT_DIR:-$HOME/.cache/vman/cloud-init}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
PYTHON=/usr/bin/python3
# cloud-init's Depends that are Python modules (apt-cache show cloud-init).
MODULES=(yaml jsonschema jinja2 configobj jsonpatch requests netifaces serial oauthlib)

STAMP="vman-cloud-init script=$(cat "$SCRIPT" "$(dirname "$SCRIPT")/lib.sh" | sha256sum | cut -d' ' -f1)"

is_built() {
    [[ -d $OUT/python/cloudinit && -f $OUT/.stamp ]] && [[ $(cat "$OUT/.stamp") == "$STAMP" ]]
}

check_python() {
    [[ -x $PYTHON ]] || die "$PYTHON is missing (run scripts/setup)"
    local missing=()
    for m in "${MODULES[@]}"; do
        "$PYTHON" -c "import $m" 2>/dev/null || missing+=("$m")
    done
    [[ ${#missing[@]} -eq 0 ]] || die "$PYTHON cannot import: ${missing[*]} (run scripts/setup)"
}

if is_built; then
    check_python
    echo "$OUT"
    exit 0
fi

exec 9>"$OUT/.lock"
flock 9
if is_built; then
    check_python
    echo "$OUT"
    exit 0
fi
check_python
for tool in apt-get dpkg-deb sha256sum flock; do
    command -v "$tool" >/dev/null || die "missing host tool: $tool"
done

make_work_dir

fetch() { (cd "$DL" && apt-get download -q cloud-init >&2); }
fetch_or_refresh "cloud-init"

DEB=$(ls "$DL"/cloud-init_*.deb)
dpkg-deb -x "$DEB" "$WORK/root"
SITE=$WORK/root/usr/lib/python3/dist-packages
[[ -d $SITE/cloudinit ]] || die "cloud-init's package has no $SITE/cloudinit"
VERSION=$(dpkg-deb -f "$DEB" Version)
printf 'package=cloud-init\nversion=%s\n' "$VERSION" >"$WORK/cloud-init.info"

rm -f "$OUT/.stamp"
rm -rf "$OUT/python"
mv "$SITE" "$OUT/python"
mv -f "$WORK/cloud-init.info" "$OUT/cloud-init.info"
echo "$STAMP" >"$OUT/.stamp.tmp" && mv -f "$OUT/.stamp.tmp" "$OUT/.stamp"
log "unpacked cloud-init $VERSION into $OUT"
echo "$OUT"
