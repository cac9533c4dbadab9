// HL7 v2 acknowledgements: which one a message asks for and how it is written.
//
// Original mode (MSH-15 and MSH-16 empty): one acknowledgement after processing, MSA-1 AA (accepted),
// AE (error: the message was understood but not processed) or AR (rejected: it could not be read, or
// its type or version is not handled). Enhanced mode (MSH-15 or MSH-16 given): the accept
// acknowledgement sent once the message is safely stored, MSA-1 CA, CE or CR, when MSH-15 asks
// for it (AL always, NE never, ER on an error only, SU on success only); the application
// acknowledgement (MSH-16) follows the same conditions with AA/AE/AR.
// Each problem becomes an ERR segment: ERR-2 (v2.5+) or ERR-1 (earlier versions) points at the
// segment, field, repetition and component; ERR-3 carries the code of table 0357; ERR-4 the
// severity; ERR-8 the text.
// Thread-safety: plain functions.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mappings/hl7v2/message.h"

namespace passerelle::hl7v2 {

enum class AckResult { kAccept, kError, kReject };

struct AckOptions {
  std::string sendingApplication;  // MSH-3 of the acknowledgement (empty: the received MSH-5, the application addressed)
  std::string sendingFacility;     // MSH-4 (empty: the received MSH-6)
  std::string controlId;                           // MSH-10 of the acknowledgement
  std::string timestamp;                           // MSH-7, YYYYMMDDHHMMSS
};

// Whether `received` asks for an acknowledgement of this result now: `commit` is the accept
// (transport) acknowledgement, sent once the message is stored; otherwise the application one.
// Original mode asks for the application acknowledgement only.
bool wantsAck(const Message& received, AckResult result, bool commit);
// True when MSH-15 or MSH-16 is given.
bool enhancedMode(const Message& received);

// The acknowledgement of `received` (nullptr: a message that could not be read; `rawHeader` is then
// whatever first line came, used for MSA-2 and the version when they can be found). `commit`: an
// accept acknowledgement (CA/CE/CR) rather than an application one (AA/AE/AR). Encoded with the
// received delimiters and character set (UTF-8 as text; encode it with Message::encodeInCharset of
// the parsed result for the wire).
std::string buildAck(const Message* received, std::string_view rawHeader, AckResult result, bool commit,
                     const std::vector<Issue>& issues, const AckOptions& options);

}  // namespace passerelle::hl7v2
