// `passerelle convert --from FORMAT --to FORMAT [FILE|-]`: offline conversions.
#pragma once

namespace passerelle::app {

// argv[1] is "convert". Returns the process exit status.
int convertCommand(int argc, char** argv);

}  // namespace passerelle::app
