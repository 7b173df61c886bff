// cowbackup info ARCHIVE: what an archive holds, and whether it is whole.
//
// The header is shown as soon as it decodes, even when the records after it
// are cut short or damaged; the whole archive is then read (checksums and
// all, as verify does) to count records and find the trailer.
#include <cstdio>
#include <iostream>
#include <memory>

#include "backup/archive_reader.h"
#include "tools/archive_report.h"
#include "tools/cli.h"
#include "tools/commands.h"
#include "tools/progress_bar.h"

namespace cowbackup::cli {

namespace {

void PrintText(const std::string& archive, const ArchiveReader& reader, bool have_header,
               const Status& s, uint64_t pages, uint64_t overlays) {
  const auto row = [](const char* key, const std::string& value) {
    char name[24];
    snprintf(name, sizeof name, "%-16s ", key);
    PrintLine(stdout, name + value);
  };
  row("archive", archive);
  row("state", s.ok() ? "complete" : std::string(StateWord(s)) + ": " + Describe(s));
  if (have_header) {
    const format::Header& h = reader.header();
    row("format_version", std::to_string(h.version));
    row("source_kind", format::SourceKindName(h.source_kind));
    row("page_size", std::to_string(h.page_size));
    row("page_count", std::to_string(h.page_count));
    row("database_bytes", std::to_string(h.page_count * h.page_size) + " (" +
                              ProgressBar::Bytes(double(h.page_count * h.page_size)) + ")");
    row("created", FormatUnixMicros(h.created_unix_us));
  }
  if (s.ok()) {
    const format::Trailer& t = reader.trailer();
    row("finished", FormatUnixMicros(t.finished_unix_us));
    row("preserved_pages", std::to_string(t.preserved_pages));
  }
  row("page_records", std::to_string(pages) + (s.ok() ? "" : " (read before the problem)"));
  row("overlay_records", std::to_string(overlays));
  row("archive_bytes", std::to_string(reader.offset()) + " (" +
                           ProgressBar::Bytes(double(reader.offset())) + ")" +
                           (s.ok() ? "" : " read"));
  if (have_header) {
    // The same pairs as --json's "metadata" (HeaderJson).
    const auto pairs = reader.header().meta_pairs();
    printf("metadata%s\n", pairs.empty() ? "         (none)" : "");
    for (const auto& [key, value] : pairs) PrintLine(stdout, "  " + key + "=" + value);
  }
}

}  // namespace

int RunInfo(const std::vector<std::string>& args) {
  CommonFlags flags;
  std::string archive;
  CommandLine cl("info", "info [options] ARCHIVE",
                 "Shows an archive's header (format version, source kind, page size, page\n"
                 "count, creation time), its begin-time metadata, record counts and sizes,\n"
                 "and whether it is complete. The whole archive is read and every record\n"
                 "checked, so a cut-short or damaged archive is reported as incomplete or\n"
                 "corrupt (exit status 1) after the header it still has. ARCHIVE may be '-'\n"
                 "for standard input.",
                 "  cowbackup info nightly.cbk\n"
                 "  cowbackup info --json nightly.cbk\n"
                 "  ssh host cat /backups/app.cbk | cowbackup info -");
  cl.add_common(&flags);
  cl.positional("ARCHIVE", &archive);
  int exit_code = kExitOk;
  if (!cl.Parse(args, &exit_code)) return exit_code;

  std::unique_ptr<ArchiveReader> reader;
  Status s = ArchiveReader::Open(archive, &reader);
  if (!s.ok()) {
    PrintError("info", Describe(s));
    if (flags.json) {
      PrintJson(JsonObject().add("archive", archive).add("state", StateWord(s))
                    .add("complete", false).add("error", Describe(s)).add_null("header"));
    }
    return kExitFailure;
  }
  ProgressBar bar("info", ProgressBar::Enabled(flags.progress, flags.quiet));
  bar.start(RegularFileSize(archive));
  s = reader->ReadHeader();
  const bool have_header = reader->header_size() > 0;
  uint64_t pages = 0, overlays = 0;
  while (s.ok()) {
    ArchiveReader::Record rec;
    bool done = false;
    s = reader->Next(&rec, &done);
    if (!s.ok() || done) break;
    (rec.type == format::RecordType::kPage ? pages : overlays)++;
    bar.update(reader->offset());
  }
  bar.finish(s.ok());

  if (flags.json) {
    JsonObject o;
    o.add("archive", archive).add("state", s.ok() ? "complete" : StateWord(s))
        .add("complete", s.ok()).add_or_null("error", s.ok() ? "" : Describe(s));
    if (have_header) {
      o.add("header", HeaderJson(reader->header()));
    } else {
      o.add_null("header");
    }
    if (s.ok()) {
      o.add("trailer", TrailerJson(reader->trailer()));
    } else {
      o.add_null("trailer");
    }
    o.add("page_records", pages).add("overlay_records", overlays)
        .add("archive_bytes", reader->offset());
    PrintJson(o);
  } else if (!flags.quiet) {
    PrintText(archive, *reader, have_header, s, pages, overlays);
  }
  if (!s.ok()) {
    std::cout.flush();
    PrintError("info", Describe(s));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace cowbackup::cli
