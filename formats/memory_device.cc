#include "vss/formats/memory_device.h"

#include <algorithm>
#include <cstring>

#include "extent_builder.h"

namespace vss {
namespace {

constexpr uint64_t kPage = MemoryDevice::kPageSize;

bool AllZero(const std::vector<uint8_t>& page) {
  return std::all_of(page.begin(), page.end(),
                     [](uint8_t b) { return b == 0; });
}

}  // namespace

MemoryDevice::MemoryDevice(uint64_t size, std::string name, bool read_only)
    : BlockDevice(std::move(name), size, read_only) {}

uint64_t MemoryDevice::allocated_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return pages_.size() * kPage;
}

Status MemoryDevice::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done;
    uint64_t in_page = pos % kPage;
    uint64_t n = std::min<uint64_t>(kPage - in_page, buf.size() - done);
    auto it = pages_.find(pos / kPage);
    if (it == pages_.end()) {
      std::memset(buf.data() + done, 0, n);
    } else {
      std::memcpy(buf.data() + done, it->second.data() + in_page, n);
    }
    done += n;
  }
  return Status();
}

Status MemoryDevice::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t done = 0;
  while (done < buf.size()) {
    uint64_t pos = offset + done;
    uint64_t in_page = pos % kPage;
    uint64_t n = std::min<uint64_t>(kPage - in_page, buf.size() - done);
    std::vector<uint8_t>& page = pages_[pos / kPage];
    if (page.empty()) page.assign(kPage, 0);
    std::memcpy(page.data() + in_page, buf.data() + done, n);
    done += n;
  }
  return Status();
}

// Whole pages in the range are freed; partial pages are zero-filled and freed
// if nothing else is left in them. Only allocated pages are visited, so the
// cost follows the data, not the length of the range.
Status MemoryDevice::DoWriteZeroes(uint64_t offset, uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t end = offset + length;
  auto it = pages_.lower_bound(offset / kPage);
  while (it != pages_.end() && it->first * kPage < end) {
    uint64_t page_start = it->first * kPage;
    uint64_t from = std::max(offset, page_start) - page_start;
    uint64_t to = std::min(end, page_start + kPage) - page_start;
    std::fill(it->second.begin() + from, it->second.begin() + to, 0);
    if (AllZero(it->second)) {
      it = pages_.erase(it);
    } else {
      ++it;
    }
  }
  return Status();
}

Status MemoryDevice::DoDiscard(uint64_t offset, uint64_t length) {
  return DoWriteZeroes(offset, length);
}

StatusOr<std::vector<Extent>> MemoryDevice::DoExtents(uint64_t offset,
                                                      uint64_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t end = offset + length;
  ExtentBuilder builder;
  uint64_t pos = offset;
  for (auto it = pages_.lower_bound(offset / kPage);
       it != pages_.end() && it->first * kPage < end; ++it) {
    uint64_t begin = std::max(pos, it->first * kPage);
    uint64_t stop = std::min(end, it->first * kPage + kPage);
    builder.Add(pos, begin - pos, false);
    builder.Add(begin, stop - begin, true);
    pos = stop;
  }
  builder.Add(pos, end - pos, false);
  return builder.Take();
}

}  // namespace vss
