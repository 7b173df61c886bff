// Text that leaves cowbackup (backup/text.h) and the metadata it writes
// (format::MetaLine, FitMetadata, Header::Validate): control characters and
// bytes that are not UTF-8 never get out raw, the metadata encoding is the
// one docs/FORMAT.md specifies, and a repeated metadata key is refused.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "backup/format.h"
#include "backup/text.h"
#include "tests/backup/inert_text.h"

namespace cowbackup::test {
namespace {

TEST(TerminalSafe, EscapesEscapeSequencesControlsAndBadBytes) {
  EXPECT_EQ(TerminalSafe(kTitleSeq), "\\x1b]0;pwned\\x07");
  EXPECT_EQ(TerminalSafe(kEraseSeq), "\\r\\x1b[2K");
  EXPECT_EQ(TerminalSafe(kQuerySeq), "\\x1b[6n");
  EXPECT_EQ(TerminalSafe(kC1Csi), "\\xc2\\x9b");
  EXPECT_EQ(TerminalSafe(kBadUtf8), "\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82");
  EXPECT_EQ(TerminalSafe(std::string("a\0b\x7f\n\t", 6)), "a\\x00b\\x7f\\n\\t");
  for (const std::string& s : {kTitleSeq, kEraseSeq, kQuerySeq, kC1Csi, kBadUtf8}) {
    EXPECT_TRUE(InertOnATerminal(TerminalSafe(s))) << TerminalSafe(s);
  }
}

TEST(TerminalSafe, LeavesTextInAnyScriptAndBackslashesAlone) {
  const std::string text = "/srv/données/データ/\xf0\x9f\x93\xa6 a\\b \xc2\xa0";  // U+00A0 is no control
  EXPECT_EQ(TerminalSafe(text), text);
  // Idempotent: a message holding an escaped value is not escaped twice.
  const std::string once = TerminalSafe(kTitleSeq + kBadUtf8);
  EXPECT_EQ(TerminalSafe(once), once);
}

TEST(EscapeText, IsTerminalSafePlusBackslashAndChosenBytes) {
  EXPECT_EQ(EscapeText("C:\\db\x1b"), "C:\\\\db\\x1b");
  EXPECT_EQ(EscapeText("a=b", "="), "a\\x3db");
  EXPECT_EQ(EscapeText("a=b"), "a=b");
  EXPECT_TRUE(IsPlainText(EscapeText(kTitleSeq + kEraseSeq + kQuerySeq + kC1Csi + kBadUtf8 + "\\")));
  EXPECT_FALSE(IsPlainText(kC1Csi));
  EXPECT_FALSE(IsPlainText("\xff"));
  EXPECT_TRUE(IsPlainText("données"));
}

TEST(JsonQuote, AlwaysValidUtf8WithControlsEscaped) {
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote(kTitleSeq), "\"\\u001b]0;pwned\\u0007\"");
  EXPECT_EQ(JsonQuote("\r\n\t\x7f" + kC1Csi), "\"\\r\\n\\t\\u007f\\u009b\"");
  EXPECT_EQ(JsonQuote("p\xff" "q"), "\"p\\ufffdq\"");
  EXPECT_EQ(JsonQuote("données"), "\"données\"");
  EXPECT_TRUE(InertOnATerminal(JsonQuote(kTitleSeq + kEraseSeq + kQuerySeq + kC1Csi + kBadUtf8)));
}

// ---- Metadata (docs/FORMAT.md, Metadata) ----

TEST(MetaLine, EscapesAPathSoTheLineIsPlainText) {
  const std::string path = "/tmp/a" + kTitleSeq + "\n" + kBadUtf8 + "\\b";
  const std::string line = format::MetaLine("source_path", path);
  EXPECT_EQ(line, "source_path=/tmp/a\\x1b]0;pwned\\x07\\n\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80\\xe2\\x82"
                  "\\\\b\n");
  EXPECT_TRUE(IsPlainText(line.substr(0, line.size() - 1)));
  // '=' in a key cannot split the line elsewhere; in a value it is kept.
  EXPECT_EQ(format::MetaLine("a=b", "c=d"), "a\\x3db=c=d\n");
}

TEST(FitMetadata, KeepsWholeLinesThatFitAndRefusesRawControls) {
  std::string out;
  const std::string big = format::MetaLine("source_path", std::string(2000, '\x1b'));  // 8 KB escaped
  const std::string lines = format::MetaLine("a", "1") + big + format::MetaLine("b", "2");
  ASSERT_TRUE(format::FitMetadata(lines, &out).ok());
  EXPECT_EQ(out, "a=1\nb=2\n");
  EXPECT_FALSE(format::FitMetadata("k=" + kTitleSeq + "\n", &out).ok());
  EXPECT_FALSE(format::FitMetadata("k=v", &out).ok());  // no newline
  EXPECT_FALSE(format::FitMetadata("k=\xff\n", &out).ok());
}

std::vector<uint8_t> Encoded(const format::Header& h) {
  std::vector<uint8_t> bytes(h.encoded_size());
  format::EncodeHeader(h, bytes.data());
  return bytes;
}

TEST(HeaderMetadata, ARepeatedKeyIsCorruptAndLeavesTheHeaderUntouched) {
  format::Header h;
  h.page_size = 4096;
  h.page_count = 1;
  h.metadata = "title=first\ntitle=second\n";
  const auto bytes = Encoded(h);
  format::Header out;
  Status s = format::DecodeHeader(bytes.data(), bytes.size(), &out);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.ToString().find("metadata key \"title\" appears more than once"), std::string::npos)
      << s.ToString();
  EXPECT_EQ(out.page_size, 0u) << "a refused header is not half decoded";
  EXPECT_TRUE(out.metadata.empty());
  // A line without '=' is the key with an empty value: "k" and "k=" repeat.
  h.metadata = "k\nk=\n";
  EXPECT_TRUE(h.Validate().IsCorruption());
  // The key as it is named in the message cannot reach a terminal raw.
  h.metadata = kTitleSeq + "=1\n" + kTitleSeq + "=2\n";
  s = h.Validate();
  EXPECT_TRUE(InertOnATerminal(s.ToString())) << s.ToString();
}

TEST(HeaderMetadata, PairsAreWhatIsStoredInOrder) {
  format::Header h;
  h.metadata = "b=2\n\na=1=x\nflag\n";
  const std::vector<std::pair<std::string, std::string>> want = {
      {"b", "2"}, {"a", "1=x"}, {"flag", ""}};
  EXPECT_EQ(h.meta_pairs(), want);
  EXPECT_EQ(h.meta("a"), "1=x");
  EXPECT_EQ(h.meta("c"), "");
}

}  // namespace
}  // namespace cowbackup::test
