// `passerelle token issue|client-cert`: development bearer tokens and client certificates, both
// refused when deployment=production.
#pragma once

namespace passerelle::identity {

// argv[0] is "passerelle", argv[1] "token", argv[2] the subcommand. Returns the exit status: 0 done,
// 1 refused or failed, 2 bad usage.
int tokenCommand(int argc, char** argv);

}  // namespace passerelle::identity
