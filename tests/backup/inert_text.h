// A test oracle for output a terminal can trust, written independently of
// backup/text.cc so a bug there cannot hide from the tests that use it.
#pragma once

#include <string>

namespace cowbackup::test {

// True if no byte of `s` makes a terminal act: no C0 control (but '\n' when
// `newlines`), no DEL, no C1 (neither raw 0x80..0x9f bytes nor U+0080..
// U+009F), and nothing that is not valid UTF-8.
inline bool InertOnATerminal(const std::string& s, bool newlines = false) {
  const auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  for (size_t i = 0; i < s.size(); i++) {
    const unsigned char c = at(i);
    if ((c < 0x20 && !(newlines && c == '\n')) || c == 0x7f) return false;
    if (c < 0x80) continue;
    const size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; k++) {
      if ((at(i + k) & 0xc0) != 0x80) return false;
    }
    if (c == 0xc2 && at(i + 1) < 0xa0) return false;   // C1
    if (c == 0xe0 && at(i + 1) < 0xa0) return false;   // overlong
    if (c == 0xed && at(i + 1) >= 0xa0) return false;  // surrogate
    if (c == 0xf0 && at(i + 1) < 0x90) return false;   // overlong
    if (c == 0xf4 && at(i + 1) >= 0x90) return false;  // past U+10FFFF
    i += n - 1;
  }
  return true;
}

// What hostile archives and paths carry (issue 10, item 6).
inline const std::string kTitleSeq = "\x1b]0;pwned\x07";  // retitles the terminal
inline const std::string kEraseSeq = "\r\x1b[2K";         // erases the line, to fake another
inline const std::string kQuerySeq = "\x1b[6n";           // the terminal answers on stdin
inline const std::string kC1Csi = "\xc2\x9b";             // U+009B: CSI in one character
inline const std::string kBadUtf8 = "\xff\xfe\xc0\xaf\xed\xa0\x80\xe2\x82";  // stray, overlong, surrogate, cut

}  // namespace cowbackup::test
