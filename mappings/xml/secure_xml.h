// What every XML reader of the project shares (the network documents' XML form, CDA): xerces-c
// started once, SAX2 readers set up safely (no DTD loaded, no entity resolved, no schema fetched
// from a schemaLocation hint: only the grammars given), UTF-16 to UTF-8, the checks made before any
// parsing (a DOCTYPE, an encoding other than UTF-8), and the messages of a grammar load.
// Included by .cpp files that link xerces-c only. Thread-safety: plain functions; start() once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <xercesc/sax/SAXParseException.hpp>
#include <xercesc/sax2/DefaultHandler.hpp>
#include <xercesc/sax2/SAX2XMLReader.hpp>
#include <xercesc/sax2/XMLReaderFactory.hpp>
#include <xercesc/util/PlatformUtils.hpp>
#include <xercesc/util/XMLException.hpp>
#include <xercesc/util/XMLString.hpp>
#include <xercesc/util/XMLUni.hpp>

#include "mappings/common/utf8.h"

namespace passerelle::xml {

namespace xc = XERCES_CPP_NAMESPACE;

// Starts xerces-c (once per process); "" or why it cannot.
inline const std::string& start() {
  static const std::string error = [] {
    try {
      xc::XMLPlatformUtils::Initialize();
      return std::string();
    } catch (...) {
      return std::string("xerces-c cannot start");
    }
  }();
  return error;
}

// UTF-16 (xerces) to UTF-8; unpaired surrogates become U+FFFD.
inline void appendUtf8(std::string& out, const XMLCh* s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      c = 0xFFFD;
    }
    utf8::append(out, c);
  }
}

inline std::string utf8(const XMLCh* s) {
  std::string out;
  if (s != nullptr) appendUtf8(out, s, xc::XMLString::stringLen(s));
  return out;
}

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool containsNoCase(std::string_view text, std::string_view needle) {
  if (needle.size() > text.size()) return false;
  for (std::size_t i = 0; i + needle.size() <= text.size(); ++i) {
    std::size_t k = 0;
    while (k < needle.size() && lower(text[i + k]) == lower(needle[k])) ++k;
    if (k == needle.size()) return true;
  }
  return false;
}

// "" when the input may be parsed as UTF-8, else why not.
inline std::string encodingProblem(std::string_view xml) {
  std::string_view s = xml;
  if (s.substr(0, 3) == "\xEF\xBB\xBF") s.remove_prefix(3);
  if (s.size() >= 2 && (s[0] == '\0' || s[1] == '\0' || static_cast<unsigned char>(s[0]) >= 0xFE))
    return "the document is not UTF-8 (UTF-16 or UTF-32?): only UTF-8 is accepted";
  if (s.substr(0, 5) != "<?xml") return "";
  auto end = s.find("?>");
  std::string_view decl = s.substr(0, end == std::string_view::npos ? std::min<std::size_t>(s.size(), 200) : end);
  auto at = decl.find("encoding");
  if (at == std::string_view::npos) return "";
  auto q = decl.find_first_of("\"'", at);
  if (q == std::string_view::npos) return "";
  auto q2 = decl.find(decl[q], q + 1);
  std::string name(decl.substr(q + 1, q2 == std::string_view::npos ? std::string_view::npos : q2 - q - 1));
  for (char& c : name) c = lower(c);
  if (name == "utf-8" || name == "utf8") return "";
  return "the document declares the encoding '" + name + "': only UTF-8 is accepted";
}

// A SAX2 reader that loads nothing from outside: namespaces on, no external DTD, no entity
// resolution, schemaLocation hints ignored. `validate`: against the grammars of its pool, with no
// grammar an error.
inline void configureSecure(xc::SAX2XMLReader& r, bool validate) {
  r.setFeature(xc::XMLUni::fgSAX2CoreNameSpaces, true);
  r.setFeature(xc::XMLUni::fgSAX2CoreNameSpacePrefixes, false);
  r.setFeature(xc::XMLUni::fgSAX2CoreValidation, validate);
  r.setFeature(xc::XMLUni::fgXercesDynamic, false);
  r.setFeature(xc::XMLUni::fgXercesSchema, validate);
  r.setFeature(xc::XMLUni::fgXercesSchemaFullChecking, false);
  r.setFeature(xc::XMLUni::fgXercesLoadSchema, false);  // schemaLocation hints are ignored
  r.setFeature(xc::XMLUni::fgXercesLoadExternalDTD, false);
  r.setFeature(xc::XMLUni::fgXercesSkipDTDValidation, true);
  r.setFeature(xc::XMLUni::fgXercesDisableDefaultEntityResolution, true);
  r.setFeature(xc::XMLUni::fgXercesValidationErrorAsFatal, false);
}

// A reader that only checks well-formedness (xerces-c's WFXMLScanner: no grammar is ever used, and
// it is much the fastest scanner), configured as above without validation.
inline std::unique_ptr<xc::SAX2XMLReader> newWellFormednessReader() {
  std::unique_ptr<xc::SAX2XMLReader> r(xc::XMLReaderFactory::createXMLReader());
  r->setProperty(xc::XMLUni::fgXercesScannerName, const_cast<XMLCh*>(xc::XMLUni::fgWFXMLScanner));
  configureSecure(*r, false);
  return r;
}

// Collects the messages of a grammar load ("line L, column C: ...").
class LoadErrors : public xc::DefaultHandler {
 public:
  void error(const xc::SAXParseException& e) override { note(e); }
  void fatalError(const xc::SAXParseException& e) override { note(e); }
  std::string text;

 private:
  void note(const xc::SAXParseException& e) {
    if (!text.empty()) text += "; ";
    text += "line " + std::to_string(e.getLineNumber()) + ", column " + std::to_string(e.getColumnNumber()) + ": " + utf8(e.getMessage());
  }
};

}  // namespace passerelle::xml
