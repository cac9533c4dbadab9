// The table from error codes to HTTP status, FHIR issue type, HL7 acknowledgement and retry.
#include "gateway/common/status.h"

namespace passerelle {

const ErrorInfo& errorInfo(ErrorCode code) {
  static const ErrorInfo kTable[] = {
      /* kInvalid */ {400, "invalid", "AE", false},
      /* kNotFound */ {404, "not-found", "AE", false},
      /* kMethodNotAllowed */ {405, "not-supported", "AR", false},
      /* kNotAcceptable */ {406, "not-supported", "AR", false},
      /* kConflict */ {409, "conflict", "AE", true},
      /* kGone */ {410, "deleted", "AE", false},
      /* kPreconditionFailed */ {412, "conflict", "AE", false},
      /* kTooLarge */ {413, "too-costly", "AR", false},
      /* kUnsupportedMediaType */ {415, "not-supported", "AR", false},
      /* kUnprocessable */ {422, "processing", "AE", false},
      /* kUnavailable */ {503, "transient", "AR", true},
      /* kInternal */ {500, "exception", "AR", true},
      /* kUnauthorized */ {401, "login", "AR", false},
      /* kForbidden */ {403, "forbidden", "AR", false},
      /* kTimeout */ {503, "timeout", "AR", false},
      /* kStorageFull */ {507, "no-store", "AR", true},
  };
  return kTable[static_cast<int>(code)];
}

}  // namespace passerelle
