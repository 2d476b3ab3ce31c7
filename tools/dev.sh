#!/usr/bin/env bash
# tools/dev.sh demo|test|fuzz: the one developer script.
#
#   demo  install missing Debian packages, build Release in build/, run
#         tools/demo.sh
#   test  the same set-up, run every test in build/, then build with
#         sanitizers (-DVSS_SANITIZE=ON) in build-asan/ and run them there,
#         then build the fuzz targets with clang (-DVSS_FUZZ=ON) in
#         build-fuzz/ and run each for $VSS_FUZZ_SECONDS (default 10) s
#   fuzz [SECONDS [TARGET...]]
#         build build-fuzz/ and run each fuzz target (or the TARGETs named,
#         e.g. nbd_reply) for SECONDS (default 300) s, one after another;
#         a crash stops the run and its input is kept in build-fuzz/crashes/
#
# Run it as yourself or as root, without sudo: it asks for sudo itself,
# only when packages are missing and it is not root.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config libzstd-dev libxxhash-dev libsqlite3-dev
          libgtest-dev libgmock-dev libcli11-dev nlohmann-json3-dev jq
          qemu-utils libnbd-bin libfuse3-dev fuse3 fio xfsprogs dosfstools
          fdisk qemu-system-common libgnutls28-dev gnutls-bin clang
          libclang-rt-14-dev zlib1g-dev libqcow-utils qemu-system-x86
          qemu-guest-agent linux-image-amd64 busybox-static e2fsprogs cpio
          libvhdi-utils libvmdk-utils)
jobs=$(nproc 2>/dev/null || echo 2)

install_missing() {
  if ! command -v dpkg-query >/dev/null; then
    echo "dev.sh: not a Debian system; install these yourself: ${packages[*]}" >&2
    return
  fi
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return
  # Only the installation runs as root; the build and the tests run as the
  # user who ran dev.sh.
  local as_root=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "dev.sh: missing packages: ${missing[*]}; sudo is not installed:" \
           "install them as root (apt-get install ${missing[*]}), then run dev.sh again" >&2
      exit 1
    fi
    as_root=(sudo DEBIAN_FRONTEND=noninteractive)
    echo "dev.sh: installing ${missing[*]} (with sudo)"
  else
    echo "dev.sh: installing ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -q
  "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() {  # build DIR [CMAKE_ARGS...]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$dir" -j"$jobs"
}

case ${1:-} in
  demo)
    install_missing
    build build
    tools/demo.sh build/tools/vssctl
    ;;
  test)
    install_missing
    build build
    ctest --test-dir build --output-on-failure -j2
    build build-asan -DVSS_SANITIZE=ON
    ctest --test-dir build-asan --output-on-failure -j2
    # libFuzzer targets: seeds replayed, then a short run each
    # (tests/fuzz/run_fuzz.sh).
    CC=clang CXX=clang++ build build-fuzz -DVSS_FUZZ=ON \
      -DVSS_FUZZ_SECONDS="${VSS_FUZZ_SECONDS:-10}"
    ctest --test-dir build-fuzz --output-on-failure -j2
    ;;
  fuzz)
    # A longer run than the test step's: every target (or those named) for
    # SECONDS each, over a copy of testdata/fuzz/NAME/. A crash's input
    # stays in build-fuzz/crashes/NAME/; once fixed, it becomes a seed.
    seconds=${2:-300}
    install_missing
    CC=clang CXX=clang++ build build-fuzz -DVSS_FUZZ=ON
    targets=("${@:3}")
    if ((${#targets[@]} == 0)); then
      for t in build-fuzz/tests/fuzz/*_fuzz; do
        t=${t##*/}
        targets+=("${t%_fuzz}")
      done
    fi
    for t in "${targets[@]}"; do
      tests/fuzz/run_fuzz.sh "build-fuzz/tests/fuzz/${t}_fuzz" \
        "testdata/fuzz/$t" "$seconds"
    done
    ;;
  *)
    echo "usage: tools/dev.sh demo|test|fuzz [SECONDS [TARGET...]]" >&2
    exit 2
    ;;
esac
