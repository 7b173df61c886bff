// Text that leaves cowbackup: bytes from an archive or a path, made safe
// for a terminal, for JSON and for the archive's own metadata.
//
// A Linux path is any bytes but NUL, and a hostile archive's metadata is
// whatever its writer chose: an escape sequence printed raw can retitle the
// terminal ("\x1b]0;pwned\x07"), erase and fake lines ("\r", "\x1b[2K") or
// make it answer a query into our stdin ("\x1b[6n"). So every byte string
// that reaches a terminal, a JSON document or a metadata line goes through
// one of the three functions below, which share one UTF-8 decoder:
//
//   TerminalSafe("a\x1b[2Kb")  ->  a\x1b[2Kb    (backslash, 'x', '1', 'b')
//   EscapeText("C:\\db\n")     ->  C:\\db\n     (reversible: FORMAT.md)
//   JsonQuote("p\xff\x1b")     ->  "p\ufffd\u001b"
//
// A control character is C0 (U+0000..U+001F), DEL (U+007F) or C1
// (U+0080..U+009F, which some terminals obey as ESC sequences). Valid UTF-8
// that is not a control character passes unchanged, so ordinary text and
// paths in any script read as they are.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cowbackup {

// Length (1..4) of the valid UTF-8 sequence starting at s[i], or 0 if none
// starts there (a stray continuation byte, an overlong form, a surrogate, a
// value past U+10FFFF, a sequence cut short). Requires i < s.size().
size_t Utf8SequenceLength(std::string_view s, size_t i);

// True if `s` is valid UTF-8 holding no control character.
bool IsPlainText(std::string_view s);

// `s` for a terminal: "\n", "\r", "\t" for those, "\xNN" (lowercase hex)
// for every byte of any other control character and for every byte that is
// not part of valid UTF-8. A backslash is left as it is, so a message that
// holds an already escaped value is not escaped twice (the function is
// idempotent).
std::string TerminalSafe(std::string_view s);

// TerminalSafe() that can be undone: a backslash is also written "\\", and
// every byte of `also` as "\xNN". The result is plain text (IsPlainText).
std::string EscapeText(std::string_view s, std::string_view also = {});

// `s` as a JSON string literal, quotes included (RFC 8259). Control
// characters become \n, \r, \t or \u00XX (C1 and DEL too, so the JSON is
// safe to print); a byte that is not part of valid UTF-8 becomes U+FFFD, so
// the result is always valid UTF-8 JSON.
std::string JsonQuote(std::string_view s);

}  // namespace cowbackup
