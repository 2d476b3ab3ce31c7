#include "vss/engine/volume.h"

#include "store_internal.h"
#include "volume_state.h"

namespace vss::engine {
namespace {

// A read-only view of one shadow. Valid while its volume is open.
class ShadowDevice final : public BlockDevice {
 public:
  ShadowDevice(VolumeState* v, Guid id)
      : BlockDevice("shadow " + id.ToString(), v->size(), /*read_only=*/true),
        v_(v), id_(id) {}

 protected:
  Status DoRead(uint64_t offset, std::span<uint8_t> buf) override {
    return v_->ReadShadow(id_, buf, offset);
  }
  Status DoWrite(uint64_t, std::span<const uint8_t>) override { return ReadOnly(); }
  Status DoWriteZeroes(uint64_t, uint64_t) override { return ReadOnly(); }
  Status DoDiscard(uint64_t, uint64_t) override { return ReadOnly(); }
  Status DoFlush() override { return OkStatus(); }
  StatusOr<std::vector<Extent>> DoExtents(uint64_t offset, uint64_t length) override {
    return v_->ShadowExtents(id_, offset, length);
  }

 private:
  Status ReadOnly() { return FailedPreconditionError(name() + " is read-only"); }
  VolumeState* v_;
  Guid id_;
};

}  // namespace

Volume::Volume(std::unique_ptr<VolumeState> state)
    : BlockDevice(state->row().name, state->size(), false), state_(std::move(state)) {}

Volume::~Volume() = default;

const Guid& Volume::id() const { return state_->row().id; }
VolumeInfo Volume::info() const { return ToVolumeInfo(state_->row()); }
uint32_t Volume::chunk_size() const { return state_->chunk_size(); }

StatusOr<std::unique_ptr<BlockDevice>> Volume::OpenShadow(const Guid& shadow_id) {
  if (!state_->FindShadow(shadow_id))
    return NotFoundError("shadow " + shadow_id.ToString() + " is not a shadow of volume " +
                         name());
  return std::unique_ptr<BlockDevice>(new ShadowDevice(state_.get(), shadow_id));
}

StatusOr<std::vector<ChangedExtent>> Volume::ChangedExtents(const Guid& from,
                                                            std::optional<Guid> to) {
  return state_->ChangedExtents(from, to);
}

StatusOr<VerifyReport> Volume::Verify(const Guid& shadow_id) {
  return state_->Verify(shadow_id);
}

VolumeStats Volume::Stats() { return state_->Stats(); }

Status Volume::DoRead(uint64_t offset, std::span<uint8_t> buf) {
  return state_->ReadLive(offset, buf);
}
Status Volume::DoWrite(uint64_t offset, std::span<const uint8_t> buf) {
  return state_->Modify(offset, buf.size(), VolumeState::ModKind::kWrite, buf);
}
Status Volume::DoWriteZeroes(uint64_t offset, uint64_t length) {
  return state_->Modify(offset, length, VolumeState::ModKind::kZeroes, {});
}
Status Volume::DoDiscard(uint64_t offset, uint64_t length) {
  return state_->Modify(offset, length, VolumeState::ModKind::kDiscard, {});
}
Status Volume::DoFlush() { return state_->Flush(); }
StatusOr<std::vector<Extent>> Volume::DoExtents(uint64_t offset, uint64_t length) {
  return state_->LiveExtents(offset, length);
}

}  // namespace vss::engine
