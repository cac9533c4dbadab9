// HPRIM, the file formats French GP software imports and exports (DOMAIN.md §3.B):
//   HPRIM Net ("HPRIM Médecins"): per document twelve header lines (1 document reference, 2 surname,
//     3 first name, 4-5 address, 6 postcode and city, 7 birth date, 8 social-security number,
//     9 request number, 10 date, 11 sender "code name", 12 recipient "code name"), free text, then
//     optionally `****LAB****` and one `RES|` line per result, `****FIN****` closing the document;
//     `****FINFICHIER****` closes the file. Read and written.
//   HPRIM Santé 2.x: records H (header, with the delimiters), P (patient), OBR (request), OBX
//     (result), C (comment), L (end); `A|` continues the record before it. Read. Fields are
//     numbered from the record type (H-1 is the delimiters, P-5 the name, OBX-5 the value).
// Text is held as UTF-8; files are read as UTF-8 when they are valid UTF-8 (a BOM is dropped), else
// as ISO 8859-1, and written in the encoding asked for. No sockets, no database, no Poco.
// Thread-safety: plain functions and values.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace passerelle::hprim {

enum class Encoding { kUtf8, kLatin1 };

// "UTF-8" or "ISO-8859-1"; parseEncoding accepts those and "latin1", "8859-1" (false otherwise).
const char* encodingName(Encoding e);
bool parseEncoding(std::string_view name, Encoding& e);

// A problem found while reading: where ("line 8", "record 4 (OBX) field 5"), what, and whether it
// makes the file unusable (an error) or only loses a detail (a warning).
struct Issue {
  bool error = true;
  std::string where;
  std::string message;
};

// One result: a RES line of HPRIM Net, or an OBX of HPRIM Santé.
struct Result {
  std::string label;
  std::string code;
  std::string codeSystem;  // HPRIM Santé OBX-3's third component ("L" local, "LN" LOINC...); empty for RES
  std::string type;        // RES: N numeric, A alphanumeric, T text; OBX: NM, ST, TX, CE, FT...
  std::string value;
  std::string unit;
  std::string low, high;   // reference range
  std::string flag;        // L, H, LL, HH, N (or A, abnormal, in HPRIM Santé)
  std::string status;      // F final, P partial/preliminary, C corrected, ...
  std::string value2, unit2, low2, high2;  // RES: the same result in a second unit
  std::string date;        // OBX-14, as written (YYYYMMDD[HHMM[SS]])
  std::vector<std::string> comments;  // C records after the result
};

// One HPRIM Net document.
struct NetDocument {
  std::string reference;                 // line 1
  std::string family, given;             // lines 2, 3
  std::string address1, address2;        // lines 4, 5
  std::string postcodeCity;              // line 6
  std::string birthDate;                 // line 7, as written (DD/MM/YYYY)
  std::string nir;                       // line 8, as written
  std::string requestNumber;             // line 9
  std::string date;                      // line 10, as written (DD/MM/YYYY)
  std::string sender, recipient;         // lines 11, 12 ("code name")
  std::string text;                      // the free text (lines joined by '\n')
  std::vector<Result> results;           // the ****LAB**** section
  std::size_t firstLine = 0;             // where the document starts in the file (1-based)
};

struct NetFile {
  Encoding encoding = Encoding::kUtf8;
  std::vector<NetDocument> documents;
  bool finFichier = false;               // the file ended with ****FINFICHIER****
};

// Reads a HPRIM Net file. False (with errors in `issues`) when no document could be read whole:
// fewer than twelve header lines, a RES line outside ****LAB****, a missing ****FIN**** before the
// next header... Dates and the social-security number are checked (warnings for what is odd but
// usable, errors for what is wrong).
bool readNet(std::string_view bytes, NetFile& file, std::vector<Issue>& issues);

// Writes documents as a HPRIM Net file (CRLF line ends, ****FINFICHIER**** at the end) in the
// encoding asked for; characters the encoding cannot hold become '?' and are counted in `*lost`.
// Field separators inside RES values are replaced by '/' (the format has no escape).
std::string writeNet(const std::vector<NetDocument>& docs, Encoding encoding, std::size_t* lost = nullptr);

// An HPRIM Santé patient with its requests and results.
struct SantePatient {
  std::string seq;
  std::string requesterId, labId;        // P-2, P-3
  std::string family, given;             // P-5 (NOM^PRENOM)
  std::string birthName;                 // P-6
  std::string birthDate;                 // P-7 (YYYYMMDD)
  std::string sex;                       // P-8 (M, F, U)
  std::string street, city, postcode;    // P-10 (street^^city^^postcode)
  struct Request {
    std::string placerId, fillerId;      // OBR-2, OBR-3
    std::string code, label;             // OBR-4
    std::string date;                    // OBR-7
    std::vector<Result> results;
    std::vector<std::string> comments;   // C records before the first result
  };
  std::vector<Request> requests;
};

struct SanteMessage {
  Encoding encoding = Encoding::kUtf8;
  char field = '|', component = '^', repetition = '~', escape = '\\', subcomponent = '&';
  std::string fileName;                  // H-2
  std::string senderCode, senderName;    // H-4
  std::string type;                      // H-6 (ORU, ADM, ...)
  std::string receiverCode, receiverName;  // H-9
  std::string processing;                // H-11 (P production, T test, D debug)
  std::string version;                   // H-12 first component (H2.1, H2.2...)
  std::string date;                      // H-13 (YYYYMMDDHHMMSS)
  std::vector<SantePatient> patients;
  bool ended = false;                    // an L record closed it
};

// Reads a HPRIM Santé message (one H ... L). False with errors in `issues` when it cannot be
// used: no H record first, delimiters missing or repeated, a record before its parent (OBX before
// any OBR, OBR before any P), a record type it does not know is a warning and is skipped.
bool readSante(std::string_view bytes, SanteMessage& msg, std::vector<Issue>& issues);

// Which HPRIM a file holds: a first line starting with "H" and a delimiter is HPRIM Santé;
// otherwise HPRIM Net when it carries ****LAB****, ****FIN**** or ****FINFICHIER****, or (a file
// cut before its markers) a date DD/MM/YYYY on line 7 or 10; else unknown.
enum class Flavour { kUnknown, kNet, kSante };
Flavour detect(std::string_view bytes);

// The social-security number (NIR) checks: 13 characters (digits, with 2A/2B for Corsica in
// positions 6-7) and, when given, a two-digit key equal to 97 - (number mod 97) (2A read as 19,
// 2B as 18). Spaces are ignored. Returns the 15 characters (number and key) or "" when invalid;
// `why` says what is wrong.
std::string checkedNir(std::string_view written, std::string& why);

// DD/MM/YYYY (HPRIM Net) or YYYYMMDD[...] (HPRIM Santé) to YYYY-MM-DD; "" when not a real date.
std::string netDateToIso(std::string_view written);
std::string santeDateToIso(std::string_view written);

}  // namespace passerelle::hprim
