#include "sql/json_options.h"

#include <sqlite3.h>

#include <cmath>
#include <cstring>
#include <set>

#include "backup/options.h"

namespace cowbackup::sql {

namespace {

// A private in-memory connection; closed on scope exit.
struct MemDb {
  sqlite3* db = nullptr;
  ~MemDb() { sqlite3_close_v2(db); }
};
struct Stmt {
  sqlite3_stmt* stmt = nullptr;
  ~Stmt() { sqlite3_finalize(stmt); }
};

bool Fail(std::string* error, const std::string& key, const std::string& what) {
  *error = "option " + key + ": " + what;
  return false;
}

// One key of the object: `type` is json_each's type column.
bool ApplyOption(const std::string& key, const std::string& type, sqlite3_stmt* row,
                 BackupOptions* o, std::string* error) {
  const int kValue = 2;
  auto text = [&](std::string* out) {
    if (type != "text") return false;
    const char* p = reinterpret_cast<const char*>(sqlite3_column_text(row, kValue));
    const int n = sqlite3_column_bytes(row, kValue);
    if (p == nullptr || int(strlen(p)) != n) return false;  // "\u0000" inside
    out->assign(p, size_t(n));
    return true;
  };
  auto boolean = [&](bool* out) {
    if (type != "true" && type != "false") return false;
    *out = type == "true";
    return true;
  };
  // A number, checked by the one options validator (backup/options.h)
  // before it is narrowed into its field; a wrong type gets the same
  // message as a wrong value.
  auto number = [&](bool integral, double* out) {
    double v = NAN;
    if (type == "integer") {
      v = double(sqlite3_column_int64(row, kValue));
    } else if (type == "real" && !integral) {
      v = sqlite3_column_double(row, kValue);
    }
    const Status s = ValidateBackupOption(key.c_str(), v, OptionSpelling::kField);
    if (!s.ok()) *error = s.message();
    *out = v;
    return s.ok();
  };
  if (key == "format") {
    std::string v;
    if (!text(&v) || (v != "archive" && v != "plain")) {
      return Fail(error, key, "must be \"archive\" or \"plain\"");
    }
    o->format = v == "plain" ? BackupOptions::Format::kPlain : BackupOptions::Format::kArchive;
  } else if (key == "variant") {
    std::string v;
    if (!text(&v) || (v != "snapshot_first" && v != "overlay_at_end")) {
      return Fail(error, key, "must be \"snapshot_first\" or \"overlay_at_end\"");
    }
    o->variant = v == "overlay_at_end" ? Variant::kOverlayAtEnd : Variant::kSnapshotFirst;
  } else if (key == "segment_pages") {
    double v = 0;
    if (!number(true, &v)) return false;
    o->segment_pages = uint32_t(v);
  } else if (key == "busy_timeout_ms") {
    double v = 0;
    if (!number(true, &v)) return false;
    o->busy_timeout_ms = uint32_t(v);
  } else if (key == "max_rate_mb") {
    if (!number(false, &o->max_rate_mb)) return false;
  } else if (key == "pace") {
    if (!number(false, &o->pace)) return false;
  } else if (key == "snapshot_dir") {
    std::string v;
    if (!text(&v) || v.empty()) return Fail(error, key, "must be a non-empty path without NUL bytes");
    o->snapshot_dir = v;
  } else if (key == "overwrite") {
    if (!boolean(&o->overwrite)) return Fail(error, key, "must be true or false");
  } else if (key == "hot_first") {
    if (!boolean(&o->hot_first)) return Fail(error, key, "must be true or false");
  } else if (key == "yield_to_commits") {
    if (!boolean(&o->yield_to_commits)) return Fail(error, key, "must be true or false");
  } else {
    *error = "unknown option \"" + key +
             "\" (known: format, variant, segment_pages, max_rate_mb, snapshot_dir, overwrite, "
             "busy_timeout_ms, hot_first, yield_to_commits, pace)";
    return false;
  }
  return true;
}

}  // namespace

bool ParseOptionsJson(const std::string& json, BackupOptions* options, std::string* error) {
  // json_each() cuts a string at an escaped NUL ("a\u0000b" reads as "a"),
  // which would silently turn one path into another: refuse the escape.
  // (A literal backslash followed by "u0000" is refused too; harmless.)
  for (size_t i = json.find("\\u"); i != std::string::npos; i = json.find("\\u", i + 1)) {
    if (json.compare(i + 2, 4, "0000") == 0) {
      *error = "options_json: NUL characters (\\u0000) are not allowed in option values";
      return false;
    }
  }
  MemDb mem;
  if (sqlite3_open_v2(":memory:", &mem.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, nullptr) !=
      SQLITE_OK) {
    *error = "options: cannot open a parser connection";
    return false;
  }
  Stmt check;
  if (sqlite3_prepare_v2(mem.db, "SELECT json_valid(?1), json_type(?1)", -1, &check.stmt, nullptr) !=
      SQLITE_OK) {
    *error = std::string("options: ") + sqlite3_errmsg(mem.db);
    return false;
  }
  sqlite3_bind_text(check.stmt, 1, json.data(), int(json.size()), SQLITE_STATIC);
  if (sqlite3_step(check.stmt) != SQLITE_ROW || sqlite3_column_int(check.stmt, 0) != 1) {
    *error = "options_json is not valid JSON";
    return false;
  }
  const char* top = reinterpret_cast<const char*>(sqlite3_column_text(check.stmt, 1));
  if (top == nullptr || strcmp(top, "object") != 0) {
    *error = "options_json must be a JSON object, e.g. {\"format\":\"plain\"}";
    return false;
  }
  Stmt each;
  if (sqlite3_prepare_v2(mem.db, "SELECT key, type, atom FROM json_each(?1)", -1, &each.stmt,
                         nullptr) != SQLITE_OK) {
    *error = std::string("options: ") + sqlite3_errmsg(mem.db);
    return false;
  }
  sqlite3_bind_text(each.stmt, 1, json.data(), int(json.size()), SQLITE_STATIC);
  BackupOptions parsed = *options;
  std::set<std::string> seen;
  int rc;
  while ((rc = sqlite3_step(each.stmt)) == SQLITE_ROW) {
    const char* k = reinterpret_cast<const char*>(sqlite3_column_text(each.stmt, 0));
    const char* t = reinterpret_cast<const char*>(sqlite3_column_text(each.stmt, 1));
    const std::string key = k ? std::string(k, size_t(sqlite3_column_bytes(each.stmt, 0))) : "";
    if (!seen.insert(key).second) {
      *error = "option " + key + " is given twice";
      return false;
    }
    if (!ApplyOption(key, t ? t : "", each.stmt, &parsed, error)) return false;
  }
  if (rc != SQLITE_DONE) {
    *error = std::string("options: ") + sqlite3_errmsg(mem.db);
    return false;
  }
  *options = parsed;
  return true;
}

}  // namespace cowbackup::sql
