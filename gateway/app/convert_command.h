// `passerelle convert --from FORMAT --to FORMAT [FILE|-]`: offline conversions.
#pragma once

#include <string>

namespace passerelle::app {

// Reads a command's input: the file, or standard input for "-". False (after saying so on stderr,
// naming `command`) when the file cannot be read.
bool readCommandInput(const std::string& command, const std::string& file, std::string& text);

// argv[1] is "convert". Returns the process exit status.
int convertCommand(int argc, char** argv);

}  // namespace passerelle::app
