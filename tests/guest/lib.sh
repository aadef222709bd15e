# Shared by the test-artefact scripts in tests/guest/ (build.sh, disk.sh,
# cloud-init.sh); sourced, not run. Each script defines log and die, and a
# `fetch` function that downloads its .debs into "$DL".

# A temporary build directory inside "$OUT" (removed on exit) as $WORK, and
# $DL in it for downloads. As root, apt drops privileges to _apt for
# downloads, so _apt may write there.
make_work_dir() {
    WORK=$(mktemp -d "$OUT/.build.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    DL=$WORK/debs
    mkdir -p "$DL"
    if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then
        chmod 755 "$WORK"
        chown _apt "$DL"
    fi
}

# Runs `fetch`; if it fails, the package lists may be missing (a fresh
# machine) or stale (a superseded security update is gone from the mirror):
# refresh them once, as root, and try again. $1 names what is fetched.
fetch_or_refresh() {
    fetch && return 0
    [[ $EUID -eq 0 ]] || die "apt-get download failed; run 'apt-get update' as root and retry"
    log "downloading $1 failed; running apt-get update once"
    apt-get update -q >&2
    rm -f "$DL"/*.deb
    fetch || die "cannot download $1"
}
