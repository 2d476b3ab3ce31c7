// fuse_probe: system calls the FUSE test needs and the shell lacks.
//
//   fuse_probe erofs FILE DIR   every way of changing FILE or creating in
//                               DIR must fail with EROFS; prints each
//                               result, exits 0 only if all did
//   fuse_probe holes FILE       walks FILE with SEEK_DATA/SEEK_HOLE, checks
//                               that the holes read as zeroes; prints
//                               "data D hole H segments N", exits 1 on error
//   fuse_probe map FILE         prints each data segment SEEK_DATA and
//                               SEEK_HOLE find as "START END", one a line
//   fuse_probe eio FILE CHUNK   reads FILE in CHUNK-byte pieces; prints
//                               "eio E ok K other O"
//   fuse_probe damage FILE      flips byte 100 of every 4 KiB block of FILE
//                               (a diff-area segment: every record breaks)
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

int Erofs(const std::string& file, const std::string& dir) {
  std::string fresh = dir + "/probe-new";
  errno = 0;
  std::vector<std::pair<const char*, int>> results;
  auto record = [&](const char* what, int rc) {
    results.push_back({what, rc < 0 ? errno : 0});
  };
  record("open O_WRONLY", ::open(file.c_str(), O_WRONLY));
  record("open O_RDWR", ::open(file.c_str(), O_RDWR));
  record("truncate", ::truncate(file.c_str(), 0));
  record("create", ::open(fresh.c_str(), O_CREAT | O_WRONLY, 0644));
  record("mkdir", ::mkdir(fresh.c_str(), 0755));
  record("unlink", ::unlink(file.c_str()));
  record("rename", ::rename(file.c_str(), fresh.c_str()));
  record("chmod", ::chmod(file.c_str(), 0666));
  int bad = 0;
  for (const auto& [what, err] : results) {
    std::printf("%s: %s\n", what, err ? std::strerror(err) : "succeeded");
    bad += err != EROFS;
  }
  return bad == 0 ? 0 : 1;
}

int Holes(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return std::perror(file.c_str()), 1;
  off_t size = ::lseek(fd, 0, SEEK_END);
  off_t data_bytes = 0, hole_bytes = 0, segments = 0;
  std::vector<char> buf(1 << 16);
  for (off_t pos = 0; pos < size;) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0 && errno != ENXIO) return std::perror("SEEK_DATA"), 1;
    if (data < 0) data = size;
    // [pos, data) is a hole: it must read as zeroes.
    for (off_t at = pos; at < data;) {
      size_t n = static_cast<size_t>(std::min<off_t>(data - at, buf.size()));
      if (::pread(fd, buf.data(), n, at) != static_cast<ssize_t>(n)) {
        return std::perror("pread"), 1;
      }
      for (size_t i = 0; i < n; ++i) {
        if (buf[i] != 0) {
          std::fprintf(stderr, "byte %lld of a hole is not zero\n",
                       static_cast<long long>(at + i));
          return 1;
        }
      }
      at += n;
    }
    hole_bytes += data - pos;
    if (data >= size) break;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0 || hole <= data) return std::perror("SEEK_HOLE"), 1;
    data_bytes += hole - data;
    ++segments;
    pos = hole;
  }
  std::printf(
      "data %lld hole %lld segments %lld\n", static_cast<long long>(data_bytes),
      static_cast<long long>(hole_bytes), static_cast<long long>(segments));
  ::close(fd);
  return 0;
}

int Map(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return std::perror(file.c_str()), 1;
  off_t size = ::lseek(fd, 0, SEEK_END);
  for (off_t pos = 0; pos < size;) {
    off_t data = ::lseek(fd, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;
    if (data < 0) return std::perror("SEEK_DATA"), 1;
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole <= data) return std::perror("SEEK_HOLE"), 1;
    std::printf("%lld %lld\n", static_cast<long long>(data),
                static_cast<long long>(hole));
    pos = hole;
  }
  ::close(fd);
  return 0;
}

int Eio(const std::string& file, size_t chunk) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || chunk == 0) {
    std::fprintf(stderr, "%s: not a regular file\n", file.c_str());
    return 1;
  }
  int fd = ::open(file.c_str(), O_RDONLY);
  if (fd < 0) return std::perror(file.c_str()), 1;
  off_t size = ::lseek(fd, 0, SEEK_END);
  std::vector<char> buf(chunk);
  long eio = 0, ok = 0, other = 0;
  for (off_t at = 0; at < size; at += static_cast<off_t>(chunk)) {
    ssize_t n = ::pread(fd, buf.data(), chunk, at);
    if (n >= 0) {
      ++ok;
    } else if (errno == EIO) {
      ++eio;
    } else {
      ++other;
    }
  }
  std::printf("eio %ld ok %ld other %ld\n", eio, ok, other);
  ::close(fd);
  return 0;
}

int Damage(const std::string& file) {
  int fd = ::open(file.c_str(), O_RDWR);
  if (fd < 0) return std::perror(file.c_str()), 1;
  off_t size = ::lseek(fd, 0, SEEK_END);
  for (off_t at = 100; at < size; at += 4096) {
    char b;
    if (::pread(fd, &b, 1, at) != 1) return std::perror("pread"), 1;
    b = static_cast<char>(b ^ 0xff);
    if (::pwrite(fd, &b, 1, at) != 1) return std::perror("pwrite"), 1;
  }
  ::close(fd);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "erofs" && argc == 4) return Erofs(argv[2], argv[3]);
  if (cmd == "holes" && argc == 3) return Holes(argv[2]);
  if (cmd == "map" && argc == 3) return Map(argv[2]);
  if (cmd == "eio" && argc == 4)
    return Eio(argv[2], std::strtoul(argv[3], nullptr, 0));
  if (cmd == "damage" && argc == 3) return Damage(argv[2]);
  std::fprintf(stderr,
               "usage: fuse_probe erofs FILE DIR | holes FILE | map FILE"
               " | eio FILE CHUNK"
               " | damage FILE\n");
  return 2;
}
