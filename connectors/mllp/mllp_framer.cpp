// MLLP framing (see mllp_framer.h).
#include "connectors/mllp/mllp_framer.h"

namespace passerelle::mllp {

std::string frame(std::string_view message) {
  std::string out;
  out.reserve(message.size() + 3);
  out += kStartBlock;
  out.append(message);
  out += kEndBlock;
  out += kCarriageReturn;
  return out;
}

MllpDecoder::MllpDecoder(std::size_t maxFrameBytes, Callbacks callbacks) : max_(maxFrameBytes), cb_(std::move(callbacks)) {}

void MllpDecoder::problem(Problem p, std::size_t n) {
  if (cb_.onProblem) cb_.onProblem(p, n);
}

void MllpDecoder::feed(std::string_view bytes) {
  std::size_t i = 0;
  while (i < bytes.size()) {
    if (!inFrame_) {
      // Outside a frame: everything up to the next start block is not ours.
      std::size_t start = bytes.find(kStartBlock, i);
      std::size_t junk = (start == std::string_view::npos ? bytes.size() : start) - i;
      // A lone CR or LF between frames is common (some senders end frames with CRLF): not reported.
      for (std::size_t k = i; k < i + junk; ++k)
        if (bytes[k] != '\r' && bytes[k] != '\n') ++skipped_;
      if (start == std::string_view::npos) return;
      if (skipped_) {
        problem(Problem::kBytesOutsideAFrame, skipped_);
        skipped_ = 0;
      }
      inFrame_ = true;
      sawEnd_ = false;
      discarding_ = false;
      buffer_.clear();
      i = start + 1;
      continue;
    }
    if (sawEnd_) {
      sawEnd_ = false;
      inFrame_ = false;
      if (bytes[i] == kCarriageReturn) {
        ++i;
        if (discarding_) continue;
        if (cb_.onFrame) cb_.onFrame(buffer_);
        buffer_.clear();
      } else {
        if (!discarding_) problem(Problem::kEndWithoutReturn, buffer_.size());
        buffer_.clear();
      }
      continue;
    }
    // Inside a frame: copy up to the next control byte in one go.
    std::size_t stop = bytes.find_first_of(std::string_view("\x0B\x1C", 2), i);
    std::size_t end = stop == std::string_view::npos ? bytes.size() : stop;
    if (!discarding_) {
      if (buffer_.size() + (end - i) > max_) {
        problem(Problem::kFrameTooLarge, buffer_.size() + (end - i));
        discarding_ = true;
        buffer_.clear();
        buffer_.shrink_to_fit();
      } else {
        buffer_.append(bytes.substr(i, end - i));
      }
    }
    i = end;
    if (stop == std::string_view::npos) return;
    if (bytes[i] == kEndBlock) {
      sawEnd_ = true;
      ++i;
    } else {  // a start block before this frame ended
      if (!discarding_) problem(Problem::kStartInsideAFrame, buffer_.size());
      buffer_.clear();
      discarding_ = false;
      ++i;
    }
  }
}

}  // namespace passerelle::mllp
