// JsonObject: the one JSON object a subcommand prints with --json.
//
// Members keep insertion order; values are encoded as they are added, so
// the object is only a list of (key, encoded value) pairs. Strings go
// through JsonQuote (backup/text.h), the escaper the SQL functions use too:
// bytes that are not valid UTF-8 (a path may hold any bytes) become U+FFFD
// and control characters \u00XX, so the output always parses.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace cowbackup::cli {

class JsonObject {
 public:
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add(const std::string& key, const char* value) { return add(key, std::string(value)); }
  JsonObject& add(const std::string& key, uint64_t value);
  JsonObject& add(const std::string& key, uint32_t value) { return add(key, uint64_t{value}); }
  JsonObject& add(const std::string& key, double value);
  JsonObject& add(const std::string& key, bool value);
  JsonObject& add(const std::string& key, const JsonObject& value);
  // An array of objects: [{...}, ...].
  JsonObject& add(const std::string& key, const std::vector<JsonObject>& values);
  JsonObject& add_null(const std::string& key);
  // `value` when non-empty, else null (an "error" member, for example).
  JsonObject& add_or_null(const std::string& key, const std::string& value);

  // {"key": value, ...} on one line.
  std::string str() const;

 private:
  std::vector<std::pair<std::string, std::string>> members_;
};

}  // namespace cowbackup::cli
