// A data file built into the binary (schemas, mapping definitions): see cmake/embed_files.cmake.
#pragma once

#include <string_view>
#include <vector>

namespace passerelle {

struct EmbeddedFile {
  std::string_view name;      // path relative to the embedding's base folder, e.g. "cied.schema.json"
  std::string_view contents;
};

}  // namespace passerelle
