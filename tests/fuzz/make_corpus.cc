// Writes the fuzzer's seed corpus: small valid archives of both variants
// (pages only; pages then overlays), each source kind, with and without
// metadata, and cut or flipped copies of them. Usage: make_corpus DIR
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "image_kind.h"
#include "backup/archive_writer.h"
#include "backup/output.h"
#include "engine/posix_file.h"

using namespace cowbackup;

namespace {

std::vector<uint8_t> Archive(uint32_t page_size, uint64_t pages, bool overlays,
                             format::SourceKind kind, const std::string& meta) {
  struct Buffer final : ByteOutput {
    std::vector<uint8_t>* out;
    std::string name_ = "<buffer>";
    Status append(const uint8_t* d, size_t n) override {
      out->insert(out->end(), d, d + n);
      return Status::OK();
    }
    Status commit() override { return Status::OK(); }
    void abandon() noexcept override {}
    const std::string& name() const override { return name_; }
  };
  std::vector<uint8_t> bytes;
  auto buffer = std::make_unique<Buffer>();
  buffer->out = &bytes;
  format::Header h;
  h.source_kind = kind;
  h.page_size = page_size;
  h.page_count = pages;
  h.created_unix_us = 1700000000000000;
  h.metadata = meta;
  ArchiveWriter writer(h, std::move(buffer));
  std::vector<uint8_t> page(page_size);
  // Reverse order for variety: the copy queue may reorder pages.
  for (uint64_t i = 0; i < pages; i++) {
    const uint64_t p = overlays ? i : pages - 1 - i;
    for (uint32_t b = 0; b < page_size; b++) page[b] = uint8_t(p * 31 + b);
    test::StampImageKind(kind, page_size, p, page.data());
    if (!writer.put_run(p, page.data(), 1).ok()) abort();
  }
  Progress final;
  if (overlays) {
    for (uint64_t p = 0; p < pages; p += 2) {
      page.assign(page_size, uint8_t(0xa0 + p));
      test::StampImageKind(kind, page_size, p, page.data());
      if (!writer.put_overlay(p, page.data()).ok()) abort();
      final.pages_preserved++;
    }
  }
  if (!writer.finish(final).ok()) abort();
  return bytes;
}

void Write(const std::string& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = dir + "/" + name;
  FILE* f = fopen(path.c_str(), "wb");
  if (!f || fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || fclose(f) != 0) {
    perror(path.c_str());
    exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  ::mkdir(dir.c_str(), 0700);
  int n = 0;
  for (const bool overlays : {false, true}) {
    for (const auto kind : {format::SourceKind::kRaw, format::SourceKind::kSqlite,
                            format::SourceKind::kLmdb}) {
      for (const uint64_t pages : {0, 1, 3}) {
        const std::string meta = pages == 3 ? format::MetaLine("source", "/db/x.sqlite") +
                                                  format::MetaLine("change_counter", "42")
                                            : "";
        const auto a = Archive(512, pages, overlays, kind, meta);
        const std::string base = std::string(overlays ? "overlay" : "pages") + "-" +
                                 format::SourceKindName(kind) + "-" + std::to_string(pages);
        Write(dir, base, a);
        n++;
        if (pages != 3) continue;
        // Truncations (incomplete) and one flip (corrupt) of the larger ones.
        for (const size_t cut : {size_t(10), size_t(70), a.size() / 2, a.size() - 1}) {
          Write(dir, base + "-cut" + std::to_string(cut),
                std::vector<uint8_t>(a.begin(), a.begin() + long(cut)));
          n++;
        }
        auto flipped = a;
        flipped[a.size() / 3] ^= 0x10;
        Write(dir, base + "-flip", flipped);
        n++;
      }
    }
  }
  // One with a larger page size.
  Write(dir, "pages-raw-4096x2", Archive(4096, 2, false, format::SourceKind::kRaw, ""));
  n++;
  printf("make_corpus: %d inputs in %s\n", n, dir.c_str());
  return 0;
}
