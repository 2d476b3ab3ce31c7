#include "vss/api/shadow_properties.h"

#include <unistd.h>

#include <charconv>
#include <map>

namespace vss {
namespace {

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "localhost";
  return buf;
}

// Splits "key=value" lines; a line without '=' is ignored.
std::map<std::string, std::string, std::less<>> Fields(std::string_view text) {
  std::map<std::string, std::string, std::less<>> out;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) out[std::string(line.substr(0, eq))] = line.substr(eq + 1);
  }
  return out;
}

Status ParseInt(const std::string& key, const std::string& text, int32_t* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  if (ec != std::errc() || end != text.data() + text.size())
    return CorruptionError("shadow property " + key + " is not a number: '" + text + "'");
  return OkStatus();
}

}  // namespace

Guid SoftwareProviderId() { return *Guid::Parse(kSoftwareProviderId); }

std::string EncodeShadowProperties(const ShadowProperties& p) {
  std::string out = "context=" + std::to_string(p.context) +
                    "\nattributes=" + std::to_string(p.attributes) +
                    "\nstate=" + std::to_string(static_cast<int32_t>(p.state)) +
                    "\nprovider_id=" + p.provider_id.ToString();
  if (!p.device_object.empty()) out += "\ndevice_object=" + p.device_object;
  out += "\noriginating_machine=" + p.originating_machine;
  out += "\nservice_machine=" + p.service_machine;
  return out;
}

StatusOr<ShadowProperties> DecodeShadowProperties(std::string_view text) {
  ShadowProperties p;
  auto fields = Fields(text);
  if (auto it = fields.find("context"); it != fields.end())
    VSS_RETURN_IF_ERROR(ParseInt(it->first, it->second, &p.context));
  if (auto it = fields.find("attributes"); it != fields.end())
    VSS_RETURN_IF_ERROR(ParseInt(it->first, it->second, &p.attributes));
  if (auto it = fields.find("state"); it != fields.end()) {
    int32_t state = 0;
    VSS_RETURN_IF_ERROR(ParseInt(it->first, it->second, &state));
    p.state = static_cast<VSS_SNAPSHOT_STATE>(state);
  }
  if (auto it = fields.find("provider_id"); it != fields.end()) {
    std::optional<Guid> id = Guid::Parse(it->second);
    if (!id) return CorruptionError("shadow property provider_id is not an id: '" + it->second + "'");
    p.provider_id = *id;
  }
  if (auto it = fields.find("device_object"); it != fields.end()) p.device_object = it->second;
  if (auto it = fields.find("originating_machine"); it != fields.end())
    p.originating_machine = it->second;
  if (auto it = fields.find("service_machine"); it != fields.end()) p.service_machine = it->second;
  return p;
}

void DescribeSoftwareShadows(int32_t context, engine::CreateSetRequest* req) {
  ShadowProperties p;
  p.context = context & kContextBitsMask;
  p.attributes = context | VSS_VOLSNAP_ATTR_DIFFERENTIAL;
  p.originating_machine = Hostname();
  p.service_machine = p.originating_machine;
  req->persistent = (p.attributes & VSS_VOLSNAP_ATTR_PERSISTENT) != 0;
  req->properties = EncodeShadowProperties(p);
}

StatusOr<ShadowProperties> PropertiesOf(const engine::ShadowInfo& s) {
  if (!s.properties.empty()) return DecodeShadowProperties(s.properties);
  // Made through the engine alone: described as the engine's defaults were.
  ShadowProperties p;
  p.context = s.persistent ? VSS_CTX_CLIENT_ACCESSIBLE : VSS_CTX_BACKUP;
  p.attributes = p.context | VSS_VOLSNAP_ATTR_DIFFERENTIAL;
  return p;
}

StatusOr<SnapshotProp> SnapshotPropOf(const engine::ShadowInfo& s) {
  VSS_ASSIGN_OR_RETURN(ShadowProperties props, PropertiesOf(s));
  SnapshotProp p;
  p.snapshot_id = s.id;
  p.snapshot_set_id = s.set_id;
  p.snapshots_count = static_cast<int32_t>(s.count_in_set);
  p.snapshot_device_object =
      props.device_object.empty() ? "vss:shadow/" + s.id.ToString() : props.device_object;
  p.original_volume_name = s.volume_name;
  p.originating_machine = props.originating_machine;
  p.service_machine = props.service_machine;
  p.exposed_name = s.exposed_name;
  p.exposed_path = s.exposed_path;
  p.provider_id = props.provider_id;
  p.snapshot_attributes = props.attributes & ~VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY;
  if (!s.exposed_name.empty() || !s.exposed_path.empty())
    p.snapshot_attributes |= VSS_VOLSNAP_ATTR_EXPOSED_LOCALLY;
  p.creation_timestamp = s.created;
  p.status = props.state;
  return p;
}

StatusOr<int32_t> ContextOf(const engine::ShadowInfo& shadow) {
  VSS_ASSIGN_OR_RETURN(ShadowProperties props, PropertiesOf(shadow));
  return props.context;
}

}  // namespace vss
