// The FUSE servers behind `vssctl mount` and `vssctl attach`. Each runs in
// the background process made by fuse::StartInBackground: it opens the
// store itself, sets up its devices and the FUSE mount, calls `ready` with
// a JSON report (below), serves until unmounted, and then clears what it
// recorded.
//
// Devices come from one of two places:
//   - through vssd, when STORE/nbd.sock accepts a connection: vssd holds a
//     volume open (and locked) while any client uses one of its exports, so
//     going through its NBD exports (shadow/<id>, live/<volume>) is the only
//     way to share a volume with a VM or another client it serves;
//   - in-process otherwise, as every vssctl command works: the store's
//     engine opens the volume and holds its lock until the server exits.
//
// Mount layout (DIR):
//   <volume>@<YYYYMMDDTHHMMSSZ>.img      the whole shadow, creation time UTC
//   <volume>@<YYYYMMDDTHHMMSSZ>-pN.img   partition N of its MBR/GPT table
//   <volume>@<YYYYMMDDTHHMMSSZ>[-pN]/    with --filesystem: an empty
//                                        directory per candidate image (each
//                                        partition, or the whole image when
//                                        there is no table) to mount it on
//   .<volume>@<YYYYMMDDTHHMMSSZ>[-pN].replay
//                                        with --filesystem, for each such
//                                        image holding XFS: a hidden
//                                        writable overlay of it to replay
//                                        the log into (host_mounts.h);
//                                        writes stay in this server's memory
// '/' in a volume name becomes '_'. When two shadows of one volume in the
// same mount share a creation second, the later ones get "_e<epoch>" after
// the time ("disk@20260125T100000Z_e4.img").
//
// Reports (one JSON object):
//   mount:  {"mountpoint", "via": "vssd"|"in-process", "warnings": [...],
//            "files": [{"name", "shadow_id", "volume", "size", "partition"
//            (0 for the whole image), "type", "mount_dir" and
//            "replay_file" (optional)}]}
//   attach: {"file", "volume", "size", "via"}
#pragma once

#include <string>
#include <vector>

#include "fuse/background.h"
#include "vss/base/status.h"

namespace vss::tools {

struct MountRequest {
  std::string store_dir;
  std::string shadow;  // exactly one of shadow, set, volume
  std::string set;
  std::string volume;
  std::string dir;  // absolute
  bool filesystem = false;
};

struct AttachRequest {
  std::string store_dir;
  std::string volume;
  std::string file;  // absolute
};

Status ServeMount(const MountRequest& req, const fuse::ReadyFn& ready);
Status ServeAttach(const AttachRequest& req, const fuse::ReadyFn& ready);

}  // namespace vss::tools
