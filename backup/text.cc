#include "backup/text.h"

#include <cstdint>
#include <cstdio>

namespace cowbackup {

namespace {

// The code point of the valid sequence of `n` bytes at s[i].
uint32_t CodePoint(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return uint32_t(static_cast<unsigned char>(s[i + k])); };
  switch (n) {
    case 1: return b(0);
    case 2: return (b(0) & 0x1f) << 6 | (b(1) & 0x3f);
    case 3: return (b(0) & 0x0f) << 12 | (b(1) & 0x3f) << 6 | (b(2) & 0x3f);
    default: return (b(0) & 0x07) << 18 | (b(1) & 0x3f) << 12 | (b(2) & 0x3f) << 6 | (b(3) & 0x3f);
  }
}

bool IsControl(uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

void AppendHexByte(std::string* out, unsigned char c) {
  char buf[8];
  snprintf(buf, sizeof buf, "\\x%02x", c);
  *out += buf;
}

// TerminalSafe and EscapeText: `reversible` also escapes '\' and `also`.
std::string Escape(std::string_view s, bool reversible, std::string_view also) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {  // not UTF-8: this one byte
      AppendHexByte(&out, c);
      i++;
      continue;
    }
    const uint32_t cp = CodePoint(s, i, n);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (IsControl(cp) || (n == 1 && reversible && also.find(char(c)) != also.npos)) {
      for (size_t k = 0; k < n; k++) AppendHexByte(&out, static_cast<unsigned char>(s[i + k]));
    } else if (c == '\\' && reversible) {
      out += "\\\\";
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out;
}

}  // namespace

size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    n = 2;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
  } else {
    return 0;
  }
  if (n > s.size() - i) return 0;
  for (size_t k = 1; k < n; k++) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  // Overlong forms, surrogates and values past U+10FFFF are invalid.
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  const uint32_t cp = CodePoint(s, i, n);
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

bool IsPlainText(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0 || IsControl(CodePoint(s, i, n))) return false;
    i += n;
  }
  return true;
}

std::string TerminalSafe(std::string_view s) { return Escape(s, false, {}); }

std::string EscapeText(std::string_view s, std::string_view also) { return Escape(s, true, also); }

std::string JsonQuote(std::string_view s) {
  std::string out = "\"";
  out.reserve(s.size() + 2);
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\\ufffd";
      i++;
      continue;
    }
    const uint32_t cp = CodePoint(s, i, n);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (IsControl(cp)) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", unsigned(cp));
      out += buf;
    } else {
      out.append(s, i, n);
    }
    i += n;
  }
  return out + "\"";
}

}  // namespace cowbackup
