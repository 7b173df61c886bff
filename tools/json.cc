#include "tools/json.h"

#include <cmath>
#include <cstdio>

#include "backup/text.h"

namespace cowbackup::cli {

JsonObject& JsonObject::add(const std::string& key, const std::string& value) {
  members_.emplace_back(key, JsonQuote(value));
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, uint64_t value) {
  members_.emplace_back(key, std::to_string(value));
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, double value) {
  if (!std::isfinite(value)) return add_null(key);  // JSON has no inf or NaN
  char buf[64];
  snprintf(buf, sizeof(buf), "%.6g", value);
  members_.emplace_back(key, buf);
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, bool value) {
  members_.emplace_back(key, value ? "true" : "false");
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, const JsonObject& value) {
  members_.emplace_back(key, value.str());
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, const std::vector<JsonObject>& values) {
  std::string array = "[";
  for (size_t i = 0; i < values.size(); i++) array += (i > 0 ? ", " : "") + values[i].str();
  members_.emplace_back(key, array + "]");
  return *this;
}

JsonObject& JsonObject::add_null(const std::string& key) {
  members_.emplace_back(key, "null");
  return *this;
}

JsonObject& JsonObject::add_or_null(const std::string& key, const std::string& value) {
  return value.empty() ? add_null(key) : add(key, value);
}

std::string JsonObject::str() const {
  std::string out = "{";
  for (size_t i = 0; i < members_.size(); i++) {
    if (i > 0) out += ", ";
    out += JsonQuote(members_[i].first) + ": " + members_[i].second;
  }
  return out + "}";
}

}  // namespace cowbackup::cli
