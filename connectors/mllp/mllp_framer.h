// The Minimal Lower Layer Protocol's framing (HL7 v2 over TCP): each message travels as
// 0x0B <bytes> 0x1C 0x0D. The decoder takes the bytes of a connection as they come (partial frames,
// several frames per read) and calls back once per complete frame; it knows nothing of HL7.
// Thread-safety: a decoder serves one connection, on one thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace passerelle::mllp {

inline constexpr char kStartBlock = 0x0B;
inline constexpr char kEndBlock = 0x1C;
inline constexpr char kCarriageReturn = 0x0D;

// The bytes of one message framed for the wire.
std::string frame(std::string_view message);

class MllpDecoder {
 public:
  enum class Problem {
    kBytesOutsideAFrame,  // data before a start block (skipped up to the next one)
    kFrameTooLarge,       // a frame grew past the limit (dropped up to its end)
    kStartInsideAFrame,   // a start block before the end of the frame (the frame is dropped, the new one begins)
    kEndWithoutReturn,    // 0x1C not followed by 0x0D (the frame is dropped)
  };
  struct Callbacks {
    std::function<void(std::string_view frame)> onFrame;  // the message, without its framing bytes
    std::function<void(Problem, std::size_t bytes)> onProblem;
  };

  MllpDecoder(std::size_t maxFrameBytes, Callbacks callbacks);
  // Takes the next bytes read from the connection.
  void feed(std::string_view bytes);
  // Bytes of an unfinished frame held (for an idle or closing connection's log line).
  std::size_t pending() const { return inFrame_ ? buffer_.size() : 0; }
  bool inFrame() const { return inFrame_; }

 private:
  void problem(Problem p, std::size_t n);

  std::size_t max_;
  Callbacks cb_;
  std::string buffer_;
  bool inFrame_ = false;
  bool sawEnd_ = false;       // the last byte of the frame was 0x1C
  bool discarding_ = false;   // dropping an oversized frame up to its end
  std::size_t skipped_ = 0;   // bytes outside a frame, not reported yet
};

}  // namespace passerelle::mllp
