// Expected failures: a short error code, a message and (for bad data) an element path.
// One table (error_table) maps each code to an HTTP status, a FHIR issue type, an HL7 v2
// acknowledgement code and whether a retry may succeed. Thread-safe: plain values.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace passerelle {

enum class ErrorCode {
  kInvalid,               // the request or data is malformed (400)
  kNotFound,              // no such resource or type (404)
  kMethodNotAllowed,      // the interaction does not exist for this URL (405)
  kNotAcceptable,         // the requested format cannot be produced (406)
  kConflict,              // concurrent modification, duplicate target (409)
  kGone,                  // the resource was deleted (410)
  kPreconditionFailed,    // If-Match / conditional operation failed (412)
  kTooLarge,              // body over the configured limit (413)
  kUnsupportedMediaType,  // Content-Type not handled (415)
  kUnprocessable,         // well-formed but breaks a rule (422)
  kUnavailable,           // shutting down, database busy (503)
  kInternal,              // broken invariant or I/O failure (500)
  kUnauthorized,          // no valid identity (401)
  kForbidden,             // identity known, access refused (403)
  kTimeout,               // stopped at its deadline, or its client went away (503)
  kStorageFull,           // the disk is full: nothing was written (507)
};

struct ErrorInfo {
  int httpStatus;
  const char* fhirIssueCode;  // from http://hl7.org/fhir/issue-type
  const char* hl7AckCode;     // AE (application error) or AR (rejected)
  bool retryable;
};

// The one table from error codes to protocol answers.
const ErrorInfo& errorInfo(ErrorCode code);

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  std::string location;  // FHIRPath of the element at fault, when the data is at fault
  std::string outcome;   // a whole OperationOutcome (JSON) when the data has several problems
};

inline Error makeError(ErrorCode code, std::string message, std::string location = {}) {
  Error e;
  e.code = code;
  e.message = std::move(message);
  e.location = std::move(location);
  return e;
}

// Holds either a value or an Error. Use ok() before value().
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  T& value() { assert(ok()); return std::get<0>(v_); }
  const T& value() const { assert(ok()); return std::get<0>(v_); }
  const Error& error() const { assert(!ok()); return std::get<1>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : e_(std::move(error)) {}
  bool ok() const { return !e_.has_value(); }
  const Error& error() const { assert(!ok()); return *e_; }

 private:
  std::optional<Error> e_;
};

}  // namespace passerelle
