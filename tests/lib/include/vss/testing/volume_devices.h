// Conformance devices of the engine (device_conformance.h): a store in a
// TempDir with one volume, and the volume or one of its shadows as the
// device under test. Header-only; a binary that includes it links
// vss_engine.
//
//   VolumeStore       a store in a TempDir with one created volume "disk"
//                     of kConformanceDeviceSize bytes (zeroes).
//   MakeVolumeDevice  the Volume itself (read-write); with_shadow takes a
//                     shadow of the zeroed volume first, so that every write
//                     goes through copy-on-write.
//   MakeShadowDevice  a shadow of a filled volume (read-only), opened after
//                     the volume was overwritten, discarded and written
//                     again: it must read the bytes of the shadow's instant.
//
// Thread safety: as the Store's.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "vss/base/guid.h"
#include "vss/base/status.h"
#include "vss/engine/store.h"
#include "vss/engine/volume.h"
#include "vss/testing/device_conformance.h"
#include "vss/testing/pattern.h"
#include "vss/testing/temp_dir.h"

namespace vss::testing {

class VolumeStore {
 public:
  // Opens a store in a new TempDir and creates the volume.
  static StatusOr<std::unique_ptr<VolumeStore>> Create() {
    auto made = std::unique_ptr<VolumeStore>(new VolumeStore());
    VSS_ASSIGN_OR_RETURN(
        made->store_, engine::Store::Open({.dir = made->dir_.File("store")}));
    VSS_ASSIGN_OR_RETURN(auto row, made->store_->CreateVolume(
                                       {.path = made->dir_.File("disk.img"),
                                        .size = kConformanceDeviceSize,
                                        .name = "disk"}));
    made->volume_id_ = row.id;
    return made;
  }

  // The directory holding the store ("store") and the image ("disk.img");
  // other files may be put there.
  const TempDir& dir() const { return dir_; }
  engine::Store& store() { return *store_; }
  // The id of the volume "disk".
  const Guid& volume_id() const { return volume_id_; }
  // The open volume (opened on first use). Owned by the store.
  StatusOr<engine::Volume*> Volume() { return store_->OpenVolume(volume_id_); }

  // Takes a shadow of the volume as it is now. Returns its id.
  StatusOr<Guid> TakeShadow() {
    VSS_ASSIGN_OR_RETURN(engine::CreatedSet set,
                         store_->CreateShadowSet({.volumes = {volume_id_}}));
    return set.shadows.at(0).shadow_id;
  }

  // Writes data to parts of the volume (leaving holes), takes a shadow,
  // then overwrites, discards and fills parts of what the shadow saw.
  // Returns the shadow's id; `*at_shadow` gets the volume's bytes at the
  // shadow's instant.
  StatusOr<Guid> ShadowThenChange(std::vector<uint8_t>* at_shadow) {
    VSS_ASSIGN_OR_RETURN(engine::Volume * volume, Volume());
    constexpr uint64_t kSize = kConformanceDeviceSize;
    at_shadow->assign(kSize, 0);
    for (auto [offset, length, seed] :
         {std::tuple<uint64_t, uint64_t, int>{0, 300000, 31},
          {kSize - 70000, 70000, 32}}) {
      std::vector<uint8_t> data = Pattern(length, seed);
      VSS_RETURN_IF_ERROR(volume->Write(offset, data));
      std::copy(data.begin(), data.end(), at_shadow->begin() + offset);
    }
    VSS_ASSIGN_OR_RETURN(Guid shadow, TakeShadow());
    VSS_RETURN_IF_ERROR(volume->Write(1000, Pattern(100000, 33)));
    VSS_RETURN_IF_ERROR(volume->Discard(200000, 100000));
    VSS_RETURN_IF_ERROR(volume->Write(500000, Pattern(65536, 34)));
    VSS_RETURN_IF_ERROR(volume->WriteZeroes(kSize - 5000, 5000));
    VSS_RETURN_IF_ERROR(volume->Flush());
    return shadow;
  }

 private:
  VolumeStore() = default;

  TempDir dir_;
  std::unique_ptr<engine::Store> store_;
  Guid volume_id_;
};

// The volume of a VolumeStore as the device under test.
class VolumeDevice final : public ConformanceDevice {
 public:
  BlockDevice& device() override { return *volume_; }

  static StatusOr<std::unique_ptr<ConformanceDevice>> Make(bool with_shadow) {
    auto made = std::make_unique<VolumeDevice>();
    VSS_ASSIGN_OR_RETURN(made->store_, VolumeStore::Create());
    VSS_ASSIGN_OR_RETURN(made->volume_, made->store_->Volume());
    if (with_shadow) VSS_RETURN_IF_ERROR(made->store_->TakeShadow().status());
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

 private:
  std::unique_ptr<VolumeStore> store_;
  engine::Volume* volume_ = nullptr;  // owned by the store
};

// A shadow of a changed volume (VolumeStore::ShadowThenChange) as the
// device under test.
class ShadowDevice final : public ConformanceDevice {
 public:
  BlockDevice& device() override { return *shadow_; }
  std::vector<uint8_t> InitialContents() override { return at_shadow_; }

  static StatusOr<std::unique_ptr<ConformanceDevice>> Make() {
    auto made = std::make_unique<ShadowDevice>();
    VSS_ASSIGN_OR_RETURN(made->store_, VolumeStore::Create());
    VSS_ASSIGN_OR_RETURN(Guid id,
                         made->store_->ShadowThenChange(&made->at_shadow_));
    VSS_ASSIGN_OR_RETURN(engine::Volume * volume, made->store_->Volume());
    VSS_ASSIGN_OR_RETURN(made->shadow_, volume->OpenShadow(id));
    return std::unique_ptr<ConformanceDevice>(std::move(made));
  }

 private:
  std::unique_ptr<VolumeStore> store_;
  std::vector<uint8_t> at_shadow_;
  std::unique_ptr<BlockDevice> shadow_;  // destroyed before the store
};

}  // namespace vss::testing
