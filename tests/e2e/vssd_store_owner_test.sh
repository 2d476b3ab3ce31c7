#!/usr/bin/env bash
# vssd acts for a store's owner with the owner's rights only.
#
# A store whose directory or catalog is group- or world-writable is
# refused (anyone could rewrite the catalog). Then, as root: a store owned
# by `nobody` whose catalog was edited by its owner to point a volume's
# path at a root-only 0600 file outside the store, with a revert journaled
# and the shadow made non-persistent (so vssd opens the volume at start,
# and recovery would write the shadow's bytes into that file). Root starts
# vssd on it: vssd must become `nobody` before it opens anything of the
# store, say so, fail to open the root-only file with a clear error, and
# leave the file unchanged. Its control socket is then `nobody`'s, 0660.
#
# usage: vssd_store_owner_test.sh VSSCTL VSSD
# The ownership part needs root and sqlite3: exits 77 (skipped) without
# them, after the refusal checks, which any user can run.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VSSCTL=$(realpath "$1")
VSSD=$(realpath "$2")
make_work vssd-owner
daemon=
cleanup() { stop_pid "$daemon"; }
at_exit cleanup
cd "$work" || exit 1
S=$work/store
v() { "$VSSCTL" --store "$S" "$@"; }
finish() {
  echo "vssd_store_owner_test: $checks checks, $failures failures"
  [[ $failures -eq 0 ]] || exit 1
  exit "${1:-0}"
}
# refused WHAT: vssd exits 1 at once with one line naming WHAT.
refused() {
  local rc
  timeout 20 "$VSSD" --store "$S" --no-fsfreeze 2>refused.err </dev/null
  rc=$?
  [[ $rc -eq 1 && $(wc -l <refused.err) -eq 1 ]] && grep -q -- "$1" refused.err ||
    { echo "exit $rc: $(cat refused.err)"; return 1; }
}

v volume create "$S/v.img" --size 1M --name v >/dev/null || { echo "volume create failed"; exit 1; }
chmod 0700 "$S"

# ------------------------------------------- writable by others: refused
chmod g+w "$S"
ok "a group-writable store directory is refused, naming it" refused "$S: .*group-writable"
chmod 0700 "$S"
chmod o+w "$S/catalog.db"
ok "a world-writable catalog is refused, naming it" refused "$S/catalog.db: .*world-writable"
chmod 0600 "$S/catalog.db"

if ((EUID != 0)); then
  echo "SKIP: the store-owned-by-another-user part needs root"
  finish 77
fi
command -v sqlite3 >/dev/null || { echo "SKIP: sqlite3 is not installed"; finish 77; }

# -------------------------- a store owned by nobody, served by root's vssd
chmod 0755 "$work"  # nobody must reach its store
secret=$work/secret.bin
head -c 1M /dev/zero | tr '\0' 'S' >"$secret"
chmod 0600 "$secret"
secret_sum=$(sha256sum <"$secret")

v volume write v --offset 0 --pattern 0x41 --length 1M >/dev/null || exit 1
shadow=$(v shadow create v --json | jq -r '.shadows[0].shadow_id // .shadow_id // empty')
[[ -n $shadow ]] || { echo "shadow create failed"; exit 1; }
v volume write v --offset 0 --pattern 0x42 --length 256K >/dev/null || exit 1
volume=$(v volume list --json | jq -r '.[0].id // .[0].volume_id')
# What the owner can do to his own catalog: the volume's image is now
# root's file, a revert to the shadow is journaled, and the shadow is
# non-persistent so that vssd opens the volume at start.
sqlite3 "$S/catalog.db" \
  "UPDATE volumes SET path = '$secret' WHERE id = '$volume';
   INSERT INTO journal VALUES ('$volume', 'revert', '$shadow');
   UPDATE shadows SET persistent = 0 WHERE id = '$shadow';" ||
  { echo "editing the catalog failed"; exit 1; }
chown -R nobody: "$S"

"$VSSD" --store "$S" --no-fsfreeze 2>vssd.err &
daemon=$!
wait_for_vssd vssd.err "$daemon" 0 120
ok "vssd starts on nobody's store: $(cat vssd.err)" \
  eval '[[ $(control_socket_lines vssd.err) -gt 0 ]]'
ok "vssd says, in one line, that it runs as the store's owner" \
  eval '[[ $(grep -c "runs as uid 65534" vssd.err) -eq 1 ]]'
ok "vssd runs as nobody: $(grep '^Uid' "/proc/$daemon/status")" \
  eval '[[ $(awk "/^Uid:/ {print \$2 \$3 \$4 \$5}" /proc/$daemon/status) == 65534655346553465534 ]]'
ok "vssd keeps no supplementary group of root" \
  eval '! awk "/^Groups:/" /proc/$daemon/status | grep -qw 0'
ok "the root-only file is not opened: a clear error names it" \
  grep -q "$secret.*[Pp]ermission denied" vssd.err
ok "the root-only file is unchanged" eval '[[ $(sha256sum <"$secret") == "$secret_sum" ]]'
ok "the control socket belongs to nobody" test "$(stat -c %U "$S/vssd.sock")" = nobody
ok "the control socket is mode 0660" test "$(stat -c %a "$S/vssd.sock")" = 660
ok "root may still talk to it" eval 'v writers list --json >/dev/null'
kill -TERM "$daemon"
wait "$daemon"
ok "vssd stops with exit 0" test $? -eq 0
daemon=
ok "the root-only file is still unchanged" eval '[[ $(sha256sum <"$secret") == "$secret_sum" ]]'

finish
