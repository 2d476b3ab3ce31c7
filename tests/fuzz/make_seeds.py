#!/usr/bin/env python3
"""make_seeds.py TARGET BUILD OUT: writes the seed corpus of a fuzz target.

The seeds in testdata/fuzz/TARGET/ were made with this script, from real
data written by the programs themselves (a Release build in BUILD):

  diff_record      vssctl creates a volume (4 KiB and 64 KiB chunks), takes
                   a shadow and overwrites zeroes, text and random bytes;
                   each record (header + payload) is cut from the segment.
  nbd_reply        vssd serves a volume over its Unix NBD socket; this
                   script speaks NBD to it (with and without structured
                   replies) and keeps each reply, after the 25-byte request
                   description the fuzz target reads first.
  control_frame    strace records the frames that `vssctl backup` and a
                   `vssctl writer simulate` writer exchange with vssd; each
                   seed is one direction of one connection. Replies to the
                   calls the fuzz target makes get its call ids.
  partition_table  sfdisk, fdisk and mkfs.fat write tables on small images.

Needs strace, sfdisk, fdisk, mkfs.fat. Seeds hold fresh GUIDs and random
bytes, so a new run gives different (equivalent) files. Inputs that once
crashed are added by hand, never by this script.
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def run(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, **kw)


def write(out, name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def wait_for(path, proc):
    for _ in range(600):
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            sys.exit(f"make_seeds: {proc.args[0]} exited before making {path}")
        time.sleep(0.05)
    sys.exit(f"make_seeds: {path} never appeared")


# --- diff_record -------------------------------------------------------------

def diff_record(build, out, work):
    vssctl = os.path.join(build, "tools", "vssctl")
    env = dict(os.environ, VSS_STORE=os.path.join(work, "store"))
    text = b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % i
                    for i in range(3000))
    rnd = os.urandom(8192)
    count = 0
    for chunk in ("4K", "64K"):
        img = os.path.join(work, f"disk-{chunk}.img")
        name = f"v{chunk}"
        run(vssctl, "volume", "create", img, "--size", "1M", "--name", name,
            "--chunk-size", chunk, env=env)
        with open(os.path.join(work, "text"), "wb") as f:
            f.write(text)
        with open(os.path.join(work, "rnd"), "wb") as f:
            f.write(rnd)
        run(vssctl, "volume", "write", name, "--offset", "0", "--input",
            os.path.join(work, "text"), env=env)
        run(vssctl, "volume", "write", name, "--offset", "524288", "--input",
            os.path.join(work, "rnd"), env=env)
        run(vssctl, "shadow", "create", name, env=env)
        # Overwrite text (zstd records), random bytes (raw records) and a
        # never-written range (zero records).
        run(vssctl, "volume", "write", name, "--offset", "0", "--pattern",
            "0x5A", "--length", "65536", env=env)
        run(vssctl, "volume", "write", name, "--offset", "524288",
            "--pattern", "0x11", "--length", "8192", env=env)
        run(vssctl, "volume", "write", name, "--offset", "917504",
            "--pattern", "0x22", "--length", "4096", env=env)
        seen = {}
        for root, _, files in os.walk(os.path.join(work, "store")):
            for fn in sorted(files):
                if not fn.endswith(".vsd"):
                    continue
                data = open(os.path.join(root, fn), "rb").read()
                for pos in range(0, len(data) - 72, 4096):
                    if data[pos:pos + 8] != b"VSSDIFF1":
                        continue
                    raw_len, stored_len = struct.unpack_from("<II", data, pos + 40)
                    codec = data[pos + 48]
                    kind = {0: "zero", 1: "raw", 2: "zstd"}.get(codec, "x")
                    key = (chunk, kind)
                    seen[key] = seen.get(key, 0) + 1
                    if seen[key] > 2:  # two of a kind are enough
                        continue
                    count += 1
                    write(out, f"{kind}-{chunk.lower()}-{count}",
                          data[pos:pos + 72 + stored_len])
        run(vssctl, "volume", "remove", name, "--force", env=env)


# --- nbd_reply ---------------------------------------------------------------

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
CMDS = {"read": (0, 0), "block_status": (7, 1), "write": (1, 2),
        "flush": (3, 3), "trim": (4, 4), "write_zeroes": (6, 5)}


class Nbd:
    def __init__(self, path, export, structured):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.structured = structured
        self.context = 0
        magic, opt, _ = struct.unpack(">QQH", self.recv(18))
        assert magic == NBD_MAGIC and opt == IHAVEOPT
        self.s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
        if structured:
            self.option(8, b"")
            name = export.encode()
            q = b"base:allocation"
            self.option(10, struct.pack(">I", len(name)) + name +
                        struct.pack(">I", 1) + struct.pack(">I", len(q)) + q)
        name = export.encode()
        self.option(7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        self.handle = 1

    def recv(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def option(self, opt, data):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)
        while True:
            _, _, rep, n = struct.unpack(">QIII", self.recv(20))
            payload = self.recv(n)
            if rep == 4:  # NBD_REP_META_CONTEXT
                self.context = struct.unpack(">I", payload[:4])[0]
            if rep == 1 or rep & 0x80000000:
                assert rep == 1, f"option {opt} refused: {rep:#x}"
                return

    def request(self, cmd, offset, length, payload=b""):
        """Sends one request; returns the seed: request description, reply."""
        wire, index = CMDS[cmd]
        handle = self.handle
        self.handle += 1
        self.s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, wire, handle,
                                   offset, length) + payload)
        reply = b""
        while True:
            head = self.recv(4)
            magic = struct.unpack(">I", head)[0]
            if magic == 0x67446698:
                rest = self.recv(12)
                reply += head + rest
                error = struct.unpack(">I", rest[:4])[0]
                if cmd == "read" and error == 0:
                    reply += self.recv(length)
                break
            rest = self.recv(16)
            flags, _, _, n = struct.unpack(">HHQI", rest)
            reply += head + rest + self.recv(n)
            if flags & 1:
                break
        desc = struct.pack(">BQIQI", index | (0x80 if self.structured else 0),
                           offset, length, handle, self.context)
        return desc + reply


def nbd_reply(build, out, work):
    vssctl = os.path.join(build, "tools", "vssctl")
    vssd = os.path.join(build, "tools", "vssd", "vssd")
    store = os.path.join(work, "store")
    env = dict(os.environ, VSS_STORE=store)
    img = os.path.join(work, "disk.img")
    run(vssctl, "volume", "create", img, "--size", "1M", "--name", "disk", env=env)
    run(vssctl, "volume", "write", "disk", "--offset", "4096", "--pattern",
        "0x5A", "--length", "4096", env=env)
    d = subprocess.Popen([vssd, "--store", store], env=env,
                         stderr=subprocess.DEVNULL)
    try:
        sock = os.path.join(store, "nbd.sock")
        wait_for(sock, d)
        c = Nbd(sock, "live/disk", structured=True)
        write(out, "structured-read-data-and-holes", c.request("read", 0, 12288))
        write(out, "structured-block-status", c.request("block_status", 0, 1 << 20))
        write(out, "structured-read-past-end-error", c.request("read", (1 << 20) - 512, 1024))
        write(out, "structured-write", c.request("write", 8192, 512, b"\x33" * 512))
        write(out, "structured-flush", c.request("flush", 0, 0))
        s = Nbd(sock, "live/disk", structured=False)
        write(out, "simple-read", s.request("read", 4096, 1024))
        write(out, "simple-read-past-end-error", s.request("read", 1 << 20, 512))
        write(out, "simple-trim", s.request("trim", 16384, 4096))
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait()


# --- control_frame -----------------------------------------------------------

# The calls the fuzz target makes, by id (control_frame_fuzz.cc OurCalls()).
OUR_CALLS = {"ListWriters": 1, "ListProviders": 2, "Query": 3,
             "GetWriterMetadata": 4, "GetWriterComponents": 5,
             "WriterEvent": 6, "CreateBackupComponents": 7}
CALL_RE = re.compile(r'^(\d+\.\d+) (sendto|recvfrom)\((\d+), "((?:\\x[0-9a-f]{2})*)".* = (\d+)$')


def strace_streams(prefix):
    """{fd: {"in": bytes, "out": bytes}} from strace -ff -ttt -xx files."""
    events = []
    for fn in os.listdir(os.path.dirname(prefix)):
        path = os.path.join(os.path.dirname(prefix), fn)
        if not path.startswith(prefix + "."):
            continue
        for line in open(path):
            m = CALL_RE.match(line.strip())
            if m:
                data = bytes.fromhex(m.group(4).replace("\\x", ""))[:int(m.group(5))]
                events.append((float(m.group(1)), m.group(2), int(m.group(3)), data))
    streams = {}
    for _, call, fd, data in sorted(events, key=lambda e: e[0]):
        s = streams.setdefault(fd, {"in": b"", "out": b""})
        s["in" if call == "recvfrom" else "out"] += data
    return streams


def frames(stream):
    """The JSON frames of a control stream; None for another stream (NBD)."""
    out = []
    while len(stream) >= 4:
        n = struct.unpack(">I", stream[:4])[0]
        try:
            out.append(json.loads(stream[4:4 + n]))
        except ValueError:
            return None
        stream = stream[4 + n:]
    return out


def encode(messages):
    b = b""
    for m in messages:
        body = json.dumps(m, separators=(",", ":")).encode()
        b += struct.pack(">I", len(body)) + body
    return b


def renumber(incoming, outgoing):
    """Replies in `incoming` to the calls in `outgoing` get our call ids."""
    methods = {m["call"]: m["method"] for m in outgoing if "call" in m}
    result = []
    for m in incoming:
        if "reply" in m and methods.get(m["reply"]) in OUR_CALLS:
            m = dict(m, reply=OUR_CALLS[methods[m["reply"]]])
        result.append(m)
    return result


def control_frame(build, out, work):
    vssctl = os.path.join(build, "tools", "vssctl")
    vssd = os.path.join(build, "tools", "vssd", "vssd")
    store = os.path.join(work, "store")
    env = dict(os.environ, VSS_STORE=store)
    run(vssctl, "volume", "create", os.path.join(work, "disk.img"), "--size",
        "1M", "--name", "disk", env=env)
    os.makedirs(os.path.join(work, "disk", "db"), exist_ok=True)
    d = subprocess.Popen([vssd, "--store", store], env=env,
                         stderr=subprocess.DEVNULL)
    trace = ["strace", "-ff", "-ttt", "-xx", "-s", "10000000",
             "-e", "trace=sendto,recvfrom"]
    try:
        wait_for(os.path.join(store, "vssd.sock"), d)
        w = subprocess.Popen(trace + ["-o", os.path.join(work, "writer"), vssctl,
                                      "writer", "simulate", "--name", "db",
                                      "--component", "data:disk/db"],
                             env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        for line in w.stderr:
            if line.startswith(b"ready"):
                break
        subprocess.run(trace + ["-o", os.path.join(work, "requester"), vssctl,
                                "backup", "disk", "--to",
                                os.path.join(work, "backup")],
                       env=env, check=True, capture_output=True)
        # SIGTERM to the writer itself (strace does not pass it on): the
        # lowest pid of its trace files is its main thread.
        pids = [int(f.split(".")[1]) for f in os.listdir(work)
                if f.startswith("writer.")]
        os.kill(min(pids), signal.SIGTERM)
        w.wait()
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait()
    for who in ("requester", "writer"):
        for fd, s in strace_streams(os.path.join(work, who)).items():
            incoming, outgoing = frames(s["in"]), frames(s["out"])
            if not incoming or not outgoing:
                continue
            # What vssd sent this client, with replies renumbered to the
            # calls of the fuzz target; and what the client sent vssd.
            write(out, f"{who}-from-vssd", encode(renumber(incoming, outgoing)))
            write(out, f"{who}-to-vssd", encode(renumber(outgoing, incoming)))
            # The stream as it was, byte for byte.
            write(out, f"{who}-from-vssd-raw", s["in"])


# --- partition_table -----------------------------------------------------------

def image(work, name, size_kib, script=None, fdisk=None):
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.truncate(size_kib * 1024)
    if script is not None:
        run("sfdisk", "--no-reread", "--no-tell-kernel", path, input=script.encode())
    if fdisk is not None:
        subprocess.run(["fdisk", "-b", "4096", path], input=fdisk.encode(),
                       capture_output=True, check=True)
    return path


def partition_table(build, out, work):
    linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    seeds = {
        "mbr": (32, "label: dos\nunit: sectors\nstart=4, size=20, type=83, bootable\n"
                    "start=24, size=16, type=7\nstart=40, size=24, type=82\n"),
        "mbr-ext": (48, "label: dos\nunit: sectors\nstart=2, size=14, type=83\n"
                        "start=16, size=80, type=5\nstart=18, size=20, type=83\n"
                        "start=40, size=20, type=c\nstart=62, size=34, type=83\n"),
        "gpt": (60, f"label: gpt\nunit: sectors\nfirst-lba: 34\n"
                    f"start=34, size=20, type={linux}, name=root\n"
                    "start=54, size=30, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp\n"),
        "gpt-small": (16, f"label: gpt\nunit: sectors\ntable-length: 4\nfirst-lba: 3\n"
                          f"start=3, size=10, type={linux}\n"
                          "start=13, size=14, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\n"),
    }
    for name, (kib, script) in seeds.items():
        write(out, name, open(image(work, name, kib, script=script), "rb").read())
    # 4096-byte sectors: fdisk -b 4096, a 4-entry table, two partitions.
    path = image(work, "gpt-4k", 60, fdisk="g\nx\nl\n4\nr\nn\n1\n3\n7\nn\n2\n8\n11\nt\n2\n19\nw\n")
    write(out, "gpt-4k", open(path, "rb").read())
    # The primary header's CRC32 zeroed: the backup header is used.
    data = bytearray(open(os.path.join(out, "gpt-small"), "rb").read())
    data[528:532] = b"\0\0\0\0"
    write(out, "gpt-primary-damaged", bytes(data))
    # A whole-device FAT filesystem: sector 0 ends in 0x55aa but is no table.
    path = image(work, "fat", 64)
    run("mkfs.fat", path)
    write(out, "fat", open(path, "rb").read()[:1024])


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    target, build, out = sys.argv[1:]
    makers = {"diff_record": diff_record, "nbd_reply": nbd_reply,
              "control_frame": control_frame, "partition_table": partition_table}
    if target not in makers:
        sys.exit(f"make_seeds: no target {target}; one of {', '.join(makers)}")
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vss-seeds-") as work:
        makers[target](os.path.abspath(build), out, work)


if __name__ == "__main__":
    main()
